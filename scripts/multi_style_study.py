"""The multi-style study (docs/multi_style.md): one network of several paintings (conditional instance
norm) against one single-style network per painting at the same total number of training images,
per style assignment; then a further painting added to the trained network (only its norms train)
against a single-style run of it. Every run is a real `fst fit` in a fresh process (as `fst compare`),
scored with `fst compare`'s metrics on the VGG the models were not trained with.

    python scripts/multi_style_study.py --out runs/multi_style            # CPU budget of the doc
    python scripts/multi_style_study.py --out runs/multi_gpu --steps 1000 --batch 8 --crop 256 --channels 32

Writes OUT/report.md (tables), OUT/metrics.csv, OUT/grid.jpg (rows: photos; columns: each painting
by the multi-style network, then a blend) and OUT/runs/<name>/ (config.yaml, train.log, cost.json,
checkpoints/). A finished run whose config is unchanged is reused.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fst.artefacts.checkpoint import transformer_from_checkpoint  # noqa: E402
from fst.assets import resolve_style_path  # noqa: E402
from fst.core.arguments import ArgumentParser  # noqa: E402
from fst.data.photos import square_photos  # noqa: E402
from fst.io.files import write_atomic  # noqa: E402
from fst.metrics.features import OTHER_ARCH, FeatureMetrics  # noqa: E402
from fst.models.transformer import count_parameters, style_weights  # noqa: E402
from fst.study.evaluate import EVAL_CHUNK, photo_paths, score, style_vs_photo  # noqa: E402
from fst.study.report import PAD, csv_text, grid, grid_size, jpeg, machine, markdown_table, to_pil  # noqa: E402
from fst.study.runs import Budget, Run, checkpoint_of, is_done, run_config, train  # noqa: E402
from fst.training.cost_meter import fast_step_ms  # noqa: E402
from fst.training.module import load_style  # noqa: E402

PAINTINGS = ("starry_night", "the_scream", "great_wave", "udnie")
FIFTH = "cafe_terrace_at_night"
COLUMNS = ["painting", "model", "images_seen", "style_vs_photo", "content", "ssim", "color_vs_painting",
           "off_palette_pct", "clipped_pct", "parameters", "weights_mb", "checkpoint_mb", "train_s", "train_ms_per_step"]


def config_text(run: Run, budget: Budget, args: argparse.Namespace, model: dict) -> str:
    """`fst compare`'s config of a run, with `model` keys over its model section."""
    cfg = run_config(run, budget, args.shards, args.device)
    cfg["model"] = {**{k: v for k, v in cfg["model"].items() if k not in model.get("drop", ())},
                    **{k: v for k, v in model.items() if k != "drop"}}
    return f"# multi-style study run {run.name}\n" + yaml.safe_dump(cfg, sort_keys=False)


def ensure(run: Run, text: str, retrain: bool) -> None:
    if retrain or not is_done(run, text):
        print(f"training {run.name}", file=sys.stderr, flush=True)
        train(run, text)


@torch.no_grad()
def outputs(run: Run, photos: torch.Tensor, mix: dict[int, float] | None) -> torch.Tensor:
    """The run's network on the photos: its single style, or the style weights `mix` of several."""
    net = transformer_from_checkpoint(checkpoint_of(run))[0]
    return torch.cat([net(c, None if mix is None else style_weights(net.n_styles, mix, c.shape[0])).clamp(0, 1)
                      for c in photos.split(EVAL_CHUNK)])


def cost_columns(run: Run, steps: int, batch: int) -> dict:
    cost = json.loads((run.dir / "cost.json").read_text())
    net = transformer_from_checkpoint(checkpoint_of(run))[0]
    size = max(p.stat().st_size for p in (run.dir / "checkpoints").glob("step*.ckpt"))
    return {"images_seen": steps * batch, "parameters": count_parameters(net),
            "weights_mb": sum(t.numel() * t.element_size() for t in net.state_dict().values()) / 1e6,
            "checkpoint_mb": size / 1e6,
            "train_s": cost["train_s"], "train_ms_per_step": fast_step_ms(cost)}


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="multi_style_study.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--paintings", nargs="+", default=list(PAINTINGS), help="sample names or paths")
    p.add_argument("--fifth", default=FIFTH, help="the painting added to the trained network")
    p.add_argument("--loss", default="inter", help="style loss of every run")
    p.add_argument("--steps", type=int, default=100, help="steps per painting (the multi-style runs: N times this)")
    p.add_argument("--add-steps", type=int, nargs="+", default=None,
                   help="steps to add the fifth painting (default --steps); several: one run each")
    p.add_argument("--add-lr", type=float, nargs="+", default=None,
                   help="learning rates to add it with (default the budget's); several: one run each")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--n-residual", type=int, default=3)
    p.add_argument("--style-weight", type=float, default=10.0, help="as the quickstart's short runs")
    p.add_argument("--assignments", nargs="+", default=["sample", "batch"])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--shards", default="sample")
    p.add_argument("--eval-photos", type=int, default=8)
    p.add_argument("--eval-size", type=int, default=256)
    p.add_argument("--tile", type=int, default=160)
    p.add_argument("--retrain", action="store_true")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    names = [resolve_style_path(p if ":" in p or "/" in p else f"sample:{p}").stem for p in args.paintings]
    styles = [p if ":" in p or "/" in p else f"sample:{p}" for p in args.paintings]
    fifth = args.fifth if ":" in args.fifth or "/" in args.fifth else f"sample:{args.fifth}"
    n = len(styles)
    budget = Budget(steps=args.steps, batch=args.batch, crop=args.crop, channels=args.channels,
                    n_residual=args.n_residual, style_weight=args.style_weight)
    runs_dir = args.out / "runs"
    singles = {name: Run(style, args.loss, runs_dir / f"single_{name}") for name, style in zip(names, styles)}
    for run in singles.values():
        ensure(run, config_text(run, budget, args, {}), args.retrain)
    multi_budget = replace(budget, steps=n * args.steps)
    multis = {}
    for assignment in args.assignments:
        run = Run(styles[0], args.loss, runs_dir / f"multi{n}_{assignment}")
        model = {"drop": ("style_image",), "style_images": styles, "style_assignment": assignment}
        ensure(run, config_text(run, multi_budget, args, model), args.retrain)
        multis[assignment] = run
    base = multis[args.assignments[0]]
    fifth_name = resolve_style_path(fifth).stem
    adds = []  # (run, steps, lr): only the new painting's norms train
    for steps in args.add_steps or [args.steps]:
        for lr in args.add_lr or [budget.lr]:
            run = Run(fifth, args.loss, runs_dir / f"add_{fifth_name}_{steps}steps_lr{lr:g}")
            model = {"drop": ("style_image",), "style_images": [fifth], "base_checkpoint": str(checkpoint_of(base))}
            ensure(run, config_text(run, replace(budget, steps=steps, lr=lr), args, model), args.retrain)
            adds.append((run, steps, lr))
    single_fifth = Run(fifth, args.loss, runs_dir / f"single_{resolve_style_path(fifth).stem}")
    ensure(single_fifth, config_text(single_fifth, budget, args, {}), args.retrain)

    photos = square_photos(photo_paths(None, args.eval_photos), args.eval_size)
    metrics = FeatureMetrics(OTHER_ARCH[budget.arch])
    rows, columns = [], []
    for k, (name, style) in enumerate([*zip(names, styles), (resolve_style_path(fifth).stem, fifth)]):
        painting = load_style(resolve_style_path(style), budget.style_size)
        target = metrics.target(painting)
        photo_row = score(photos, photos, painting, metrics, target)
        models = ([(f"single ({args.steps} steps)", singles[name], None, cost_columns(singles[name], args.steps, args.batch))]
                  + [(f"{n} styles, {a} ({n * args.steps} steps)", run, {k: 1.0},
                      cost_columns(run, n * args.steps, args.batch)) for a, run in multis.items()]
                  if k < n else
                  [(f"single ({args.steps} steps)", single_fifth, None, cost_columns(single_fifth, args.steps, args.batch))]
                  + [(f"added to the {n}-style network ({steps} steps, lr {lr:g})", run, {n: 1.0},
                      cost_columns(run, steps, args.batch)) for run, steps, lr in adds])
        for label, run, mix, cost in models:
            y = outputs(run, photos, mix)
            row = {"painting": name, "model": label, **score(y, photos, painting, metrics, target), **cost}
            row["style_vs_photo"] = style_vs_photo(row, photo_row)
            rows.append(row)
            if run is base and mix is not None:
                columns.append((name, [to_pil(t) for t in y]))
    blend = {0: 0.5, 1: 0.5}
    columns.append((f"blend {names[0]}\n+ {names[1]}", [to_pil(t) for t in outputs(base, photos, blend)]))
    width = grid_size(len(photos), len(columns) + 1, args.tile)[0] - 2 * PAD
    band = Image.new("RGB", (width, args.tile), "white")  # each painting above its column
    for i, style in enumerate(styles):
        band.paste(to_pil(load_style(resolve_style_path(style), args.tile)[0]), ((i + 1) * (args.tile + PAD), 0))
    title = f"one network, {n} paintings ({base.name}); last column: an equal blend of the first two"
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "grid.jpg", jpeg(grid(band, title, [to_pil(t) for t in photos], columns, args.tile)))
    write_atomic(args.out / "metrics.csv", csv_text(rows, COLUMNS))
    text = ["# Multi-style study", "", f"Command: `python scripts/multi_style_study.py {' '.join(argv)}`", "",
            f"Machine: {machine(args.device)}", "", f"Loss {args.loss}; budget per painting: {args.steps} steps of "
            f"{args.batch} crops of {args.crop} px; network {args.channels} channels, {args.n_residual} residual blocks.", "",
            markdown_table(rows, COLUMNS), "![grid](grid.jpg)"]
    write_atomic(args.out / "report.md", "\n".join(text) + "\n")
    print(f"wrote {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
