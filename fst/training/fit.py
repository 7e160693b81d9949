"""`fst fit` / `fst validate`: LightningCLI over StyleTransferModule and ShardDataModule.

The typed ``__init__`` of each class is the config schema: ``fst fit --print_config`` shows every key,
``fst fit --config configs/quickstart.yaml --trainer.max_steps 50`` overrides one. A ``checkpoint:``
section configures periodic checkpoints (every N steps, keep the last K, plus ``last.ckpt``), so
``fst fit --config X --ckpt_path last`` resumes where a run stopped.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import jsonargparse
import yaml
from jsonargparse import ArgumentError, get_loader, set_loader
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities.exceptions import MisconfigurationException, SIGTERMException

from fst.artefacts.resume import read_resumable
from fst.artefacts.universal_checkpoint import load_universal
from fst.core import precision as fst_precision
from fst.core import signals
from fst.core.errors import FstError
from fst.data.datamodule import ShardDataModule
from fst.io.configs import check_yaml, load_yaml, read_config_text
from fst.training import console, run_folder, run_lock
from fst.training.module import StyleTransferModule
from fst.training.step_memory import check_fits
from fst.training.universal_module import UniversalModule
from fst.training.trainer import Trainer, resolve_precision


class FstCLI(LightningCLI):
    def __init__(self, *args: Any, locks: contextlib.ExitStack | None = None, **kwargs: Any) -> None:
        self.locks = locks  # the run lock lives until this closes (fst.training.run_lock)
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        # Resolve ``auto`` here, not only in Trainer, so the config.yaml saved with the run records
        # the precision it really trained in.
        # (An explicit precision is left to Trainer, which warns about slow bf16 once.)
        config = self.config[self.subcommand] if self.subcommand else self.config
        run_folder.follow_root(config)  # logs and checkpoints under default_root_dir unless set
        if str(config.trainer.precision) == fst_precision.AUTO:
            config.trainer.precision = resolve_precision(config.trainer.precision, config.trainer.accelerator)

    def _parse_ckpt_path(self) -> None:
        # Lightning (>= 2.5) reads --ckpt_path's hyperparameters here with torch.load; read the file
        # as data first, so a bad or crafted checkpoint is refused in one line (fst.untrusted).
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():  # every tensor's shape, dtype and layout, before any folder exists
            load_universal(ckpt_path) if self.model_class is UniversalModule else read_resumable(ckpt_path)
        given = self.config[subcommand].model.as_dict() if subcommand else {}
        super()._parse_ckpt_path()
        # Lightning rebuilds the model from the checkpoint's hyperparameters: say which settings of
        # this command that overrides, rather than let a changed painting or lr pass silently.
        kept = self.config[subcommand].model.as_dict() if subcommand else {}
        ignored = [f"{k}={given[k]!r} (resuming with {kept[k]!r})" for k in sorted(given)
                   if k in kept and given[k] != kept[k]]
        if ignored:
            fst_precision.say(f"fst: warning: resuming from {ckpt_path} rebuilds the model as it was saved; "
                              f"ignored: {', '.join(ignored)}")

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.filename": "step{step:07d}",
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.every_n_train_steps": 100,
            "checkpoint.save_top_k": 3,  # keep the last 3 periodic checkpoints...
            "checkpoint.monitor": "global_step",  # ...ranked by step, newest kept
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
            # Save at the step itself even on an epoch's last batch (else Lightning defers that save
            # to a validation run that may never come, and the periodic checkpoint is lost).
            "checkpoint.save_on_train_epoch_end": True,
        })

    def before_fit(self) -> None:
        self._check_image_sides(train=True)
        self._check_inputs()
        self._lock_checkpoint_folder()
        self._claim_log_versions()

    def _check_inputs(self) -> None:
        # What the run would otherwise find missing only after its log folder and lock exist: a
        # failed start leaves nothing behind, and retrying adds no empty version_N.
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry") and "://" not in str(ckpt_path) \
                and not Path(ckpt_path).is_file():
            raise FstError(f"{ckpt_path}: checkpoint not found")
        if not ckpt_path:  # resuming takes the style statistics from the checkpoint
            self.model.check_style_files()
        else:
            console.resuming()
        check_paintings = getattr(self.model, "check_paintings", None)  # a universal network's style corpus
        if check_paintings is not None:
            check_paintings(self.datamodule.style_shards)
        elif self.datamodule.style_shards is not None:
            raise FstError("data.style_shards is for a universal network trained with a style loss "
                           "(model.transform and model.style_weight > 0); a per-painting network takes its painting")
        self.datamodule.check_inputs()

    def _lock_checkpoint_folder(self) -> None:
        # Here, before trainer.fit creates any folder or file; rank 0 speaks for all ranks.
        dirpath = getattr(self.trainer.checkpoint_callback, "dirpath", None)
        if self.locks is None or self.trainer.global_rank != 0 or "://" in str(dirpath):
            return
        folder = Path(dirpath) if dirpath else Path(self.trainer.default_root_dir) / "checkpoints"
        self.locks.enter_context(run_lock.held(folder))

    def _claim_log_versions(self) -> None:
        # After the checks, so a run that cannot start leaves no version folder; rank 0 claims for all.
        if self.trainer.global_rank == 0:
            run_folder.claim_log_versions(self.trainer.loggers)

    def before_validate(self) -> None:
        self._check_image_sides(train=False)
        self._claim_log_versions()

    def _check_image_sides(self, train: bool) -> None:
        # The data knows the image sides, the model the smallest its VGG layers take, the trainer the
        # device: only here are all known, and still before any log or checkpoint folder exists.
        data, device = self.datamodule, self.trainer.strategy.root_device
        if train:
            self.model.check_image_side("crop_size", data.crop_size)
            check_fits("batch_size and crop_size", data.batch_size, data.crop_size, data.crop_size, device)
        if data.val_photos is not None:
            self.model.check_image_side("val_size", data.val_size)
            check_fits("batch_size and val_size", min(data.batch_size, data.val_count), data.val_size, data.val_size,
                       device)


def fit(argv: list[str]) -> int:
    """`fst fit`: train (LightningCLI's fit subcommand)."""
    return main(["fit", *argv])


def validate(argv: list[str]) -> int:
    """`fst validate`: validate a trained checkpoint (LightningCLI's validate subcommand)."""
    return main(["validate", *argv])


def main(argv: list[str]) -> int:
    """LightningCLI with fst's module, data and Trainer; `argv` starts with its subcommand."""
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 for the fp32 parts on Ampere and newer
    # Lightning's DDP launcher re-runs sys.argv in each worker; only pass args when called from Python.
    args = None if argv == sys.argv[1:] else argv
    bound_jsonargparse_yaml()
    texts = []
    for config in config_files(argv):  # small UTF-8 text of few values, else one line naming it
        texts.append(read_config_text(config))
        check_yaml(texts[-1], config)
    try:
        with contextlib.ExitStack() as locks, console.known_noise():
            FstCLI(module_class(argv, texts), ShardDataModule, trainer_class=Trainer, args=args, save_config_kwargs={"overwrite": True},
                   auto_configure_optimizers=False, parser_kwargs={"exit_on_error": False}, locks=locks)
    except ArgumentError as e:  # unknown key, bad type, missing file: one line, not a page of usage
        raise FstError(" ".join(str(e).split())) from None
    except MisconfigurationException as e:  # Lightning's word on a setting (max_steps -5, ...)
        raise FstError(" ".join(str(e).split())) from None
    except SIGTERMException as e:  # Lightning stopped after a batch (fst.training.preemption): exit 0 no more
        raise signals.Interrupted(getattr(e, "signum", signal.SIGTERM), note=getattr(e, "note", "")) from None
    return 0


def module_class(argv: list[str], config_texts: list[str]) -> type[pl.LightningModule]:
    """A `model:` with a ``transform`` (in a config or as ``--model.transform``) is a universal network
    (fst/training/universal_module.py); every other is a per-painting one."""
    if any(a == "--model.transform" or a.startswith("--model.transform=") for a in argv):
        return UniversalModule
    for text in config_texts:  # checked by check_yaml already: bounded
        with contextlib.suppress(FstError):
            config = load_yaml(text, "config")
            if isinstance(config, dict) and isinstance(config.get("model"), dict) and "transform" in config["model"]:
                return UniversalModule
    return StyleTransferModule


def config_files(argv: list[str]) -> list[Path]:
    """The files `--config` names in `argv` (``--config X`` and ``--config=X``)."""
    found = [b for a, b in zip(argv, argv[1:]) if a == "--config"]
    return [Path(p) for p in found + [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]]


def bound_jsonargparse_yaml() -> None:
    """Every YAML jsonargparse parses goes through `check_yaml` first, so aliases are refused before
    they expand: each file it reads (a config, a nested config, a sub-config a value names) read
    bounded as UTF-8 text and checked by name, and each string it loads (a --key value, a config
    given as text) checked by the loader it parses with. Installed once per process."""
    load = get_loader("yaml")
    if getattr(load, "bounded", False):
        return

    def bounded_load(stream: str, path: str = "") -> Any:
        check_yaml(stream, path or f"the YAML value {stream[:40]!r}")
        return load(stream)

    bounded_load.bounded = True  # type: ignore[attr-defined]
    set_loader("yaml", bounded_load, exceptions=(yaml.YAMLError,))
    read_text = jsonargparse.Path.read_text

    def bounded_read_text(self: jsonargparse.Path) -> str:
        if any(getattr(self, kind, False) for kind in ("_std_io", "_is_url", "_is_fsspec")):
            return read_text(self)  # stdin, URLs and fsspec, which fst never enables: as jsonargparse reads them
        text = read_config_text(Path(self.absolute))
        with contextlib.suppress(yaml.YAMLError):  # its syntax is the loader's to report
            check_yaml(text, self.absolute)
        return text

    jsonargparse.Path.read_text = bounded_read_text  # type: ignore[method-assign]
