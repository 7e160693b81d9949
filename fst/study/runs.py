"""The run plan of `fst compare` and its training: the budget every run shares, one run per (painting,
loss or recipe, temporal weight), the exact `fst fit` config of each, and training it in a fresh process unless a
finished run with the same config is already there."""

from __future__ import annotations

import argparse
import inspect
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from fst import losses
from fst.core.errors import FstError
from fst.io.configs import load_yaml, read_config_text
from fst.io.files import write_atomic
from fst.training.module import StyleTransferModule


@dataclass(frozen=True)
class Budget:
    """What every run shares: the study changes only the painting and the loss. The defaults are the
    CPU budget of docs/loss_study.md (14 runs in about 15 minutes on 2 idle cores)."""

    steps: int = 100
    batch: int = 2
    crop: int = 128
    seed: int = 0
    lr: float = 2e-3
    style_weight: float = 1.0
    content_weight: float = 1.0
    tv_weight: float = 1e-4
    style_size: int = 256
    arch: str = "vgg16"
    channels: int = 16
    n_residual: int = 3
    output: str = "linear"  # the transformer's output (fst.models.transformer)
    output_gain: float = 4.0  # the linear output's gain (fst.models.transformer)
    precision: str = "auto"  # fst.core.precision: bf16 only where the hardware has it natively
    workers: int = 0


@dataclass(frozen=True)
class Run:
    style: str  # a path or sample:NAME
    loss: str  # the column: a registered loss name, or a recipe's name (its config file's stem)
    dir: Path
    recipe: dict = field(default_factory=dict)  # model keys a baseline recipe sets over the budget's
    temporal_weight: float = 0.0  # model.temporal_weight (fst/losses/temporal.py)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def style_loss(self) -> losses.StyleLoss:
        return losses.get(self.recipe.get("style_loss", self.loss))


# Model keys the budget sets for every run, recipes included: the painting, its size, the network.
SHARED_MODEL_KEYS = ("style_image", "style_size", "arch", "channels", "n_residual")


def load_recipe(path: Path) -> dict:
    """A baseline recipe: the ``model:`` section of an `fst fit` config, less the keys the budget
    shares (`SHARED_MODEL_KEYS`); what it leaves out (lr, weights) comes from the budget too."""
    if not path.is_file():
        raise FstError(f"{path}: recipe config not found")
    config = load_yaml(read_config_text(path), path)
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or "style_loss" not in model:
        raise FstError(f"{path}: no model: section with a style_loss")
    known = set(inspect.signature(StyleTransferModule).parameters)
    unknown = sorted(set(model) - known)
    if unknown:
        raise FstError(f"{path}: unknown model keys {unknown} (see fst fit --help)")
    losses.get(model["style_loss"])
    return {k: v for k, v in model.items() if k not in SHARED_MODEL_KEYS}


def run_config(run: Run, budget: Budget, shards: str, device: str) -> dict:
    """The complete `fst fit` config of one run: everything but painting and loss comes from the budget."""
    b = budget
    return {
        "seed_everything": b.seed,
        "trainer": {
            "accelerator": "gpu" if device == "cuda" else "cpu", "devices": 1, "precision": b.precision,
            "max_steps": b.steps, "default_root_dir": str(run.dir), "log_every_n_steps": 10,
            "logger": {"class_path": "pytorch_lightning.loggers.TensorBoardLogger",
                       "init_args": {"save_dir": str(run.dir), "name": "tensorboard"}},
            "limit_val_batches": 0, "num_sanity_val_steps": 0,
            "enable_progress_bar": False, "enable_model_summary": False,
            "callbacks": [{"class_path": "fst.training.cost_meter.CostMeter",
                           "init_args": {"out": str(run.dir / "cost.json"), "warmup": min(2, b.steps - 1)}}],
        },
        "model": {
            "style_image": run.style, "style_loss": run.loss, "style_size": b.style_size, "arch": b.arch,
            "content_weight": b.content_weight, "style_weight": b.style_weight, "tv_weight": b.tv_weight,
            "channels": b.channels, "n_residual": b.n_residual, "output": b.output, "output_gain": b.output_gain, "lr": b.lr,
            **run.recipe,
            # Only when set: the configs of runs without it stay as they were (and are reused).
            **({"temporal_weight": run.temporal_weight} if run.temporal_weight else {}),
        },
        "data": {
            "train_shards": shards, "val_photos": None, "crop_size": b.crop, "batch_size": b.batch,
            "num_workers": b.workers, "resampled": True, "epoch_length": b.steps, "seed": b.seed,
        },
        "checkpoint": {"dirpath": str(run.dir / "checkpoints"), "every_n_train_steps": b.steps,
                       "save_top_k": 1, "save_last": True},
    }


def config_text(run: Run, budget: Budget, shards: str, device: str) -> str:
    """The YAML, headed by the loss's registry weight: not a config key, but it changes what is trained
    (so a weight edited in fst/losses/style.py makes the run stale)."""
    header = (f"# fst compare run {run.name}: style loss {run.style_loss.name}, registry weight "
              f"{run.style_loss.weight!r} (fst/losses/style.py)\n")
    return header + yaml.safe_dump(run_config(run, budget, shards, device), sort_keys=False)


def run_name(style_stem: str, column: str, temporal_weight: float) -> str:
    """<painting>__<loss or recipe>, plus __temporal<W> for a run with the temporal term."""
    return f"{style_stem}__{column}" + (f"__temporal{temporal_weight:g}" if temporal_weight else "")


def checkpoint_of(run: Run) -> Path:
    return run.dir / "checkpoints" / "last.ckpt"


def is_done(run: Run, config_text: str) -> bool:
    """Finished earlier with exactly this config: cost.json is written only when training completes."""
    cfg = run.dir / "config.yaml"
    return (cfg.is_file() and cfg.read_text() == config_text and (run.dir / "cost.json").is_file()
            and checkpoint_of(run).is_file())


def train(run: Run, config_text: str) -> None:
    """`fst fit --config <run>/config.yaml` in a fresh process, output to <run>/train.log."""
    if run.dir.exists():
        shutil.rmtree(run.dir)  # a stale or partial run of ours: start clean
    run.dir.mkdir(parents=True)
    write_atomic(run.dir / "config.yaml", config_text)
    log = run.dir / "train.log"
    with open(log, "w") as f:
        rc = subprocess.call([sys.executable, "-m", "fst.cli", "fit", "--config", str(run.dir / "config.yaml")],
                             stdout=f, stderr=subprocess.STDOUT)
    if rc != 0 or not (run.dir / "cost.json").is_file() or not checkpoint_of(run).is_file():
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise FstError(f"run {run.name} failed (exit {rc}): {lines[-1].strip() if lines else 'no output'} "
                       f"(full log: {log})")


def train_all(runs: list[Run], budget: Budget, args: argparse.Namespace) -> None:
    """Train each run in turn, skipping those already finished with their current config (unless --retrain)."""
    bar = tqdm(runs, desc="train", unit="run")
    for run in bar:
        bar.set_postfix_str(run.name)
        text = config_text(run, budget, args.shards, args.device)
        if args.retrain or not is_done(run, text):
            train(run, text)
