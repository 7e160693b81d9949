"""The benchmarks' own correctness (never their speed): the classic step bench_train divides by is
the classic recipe's objective, and the script runs end to end on a tiny size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_train  # noqa: E402


def test_classic_step_computes_the_classic_recipes_objective() -> None:
    """Only the photo's VGG pass differs (it runs to relu4_3, as the PyTorch example does): the
    value is what configs/classic.yaml trains."""
    torch.manual_seed(0)
    module = bench_train.make_module(bench_train.CLASSIC, channels_last=False, compile_=False)
    x = torch.rand(2, 3, 32, 32)
    module.criterion.add_style(x[:1])
    torch.manual_seed(1)
    classic = bench_train.classic_total(module, x)
    torch.manual_seed(1)
    y, terms = module.stylize_and_score(x)
    assert module.criterion.tv_weight == 0 and module.criterion.content_weight == 1e5
    assert torch.allclose(classic, terms["total"], rtol=1e-5)


def test_only_fst_variants_run_the_output_conv_in_channels_last() -> None:
    """The classic step keeps every layer NCHW, as its recipe runs; so does the variant that
    separates that gain."""
    def channels_last_out(name: str) -> bool:
        return bench_train.make_module(name, channels_last=False, compile_=False).transformer.cpu_channels_last_out

    assert not channels_last_out(bench_train.CLASSIC) and not channels_last_out(bench_train.CLASSIC_KEPT)
    assert not channels_last_out(bench_train.ALL_NCHW)
    assert channels_last_out("fp32 eager")


def test_bench_train_runs_and_reports_against_the_classic_step(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPTS / "bench_train.py"), "--device", "cpu", "--size", "32", "--batch", "1",
                          "--steps", "1", "--warmup", "0", "--only", bench_train.CLASSIC, "fp32 eager",
                          "fp32 eager + temporal term"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]  # header, then one per variant
    assert rows[1].startswith(f"| {bench_train.CLASSIC} |") and rows[1].endswith("| 1.00 |")
    assert rows[2].startswith("| fp32 eager |") and rows[3].startswith("| fp32 eager + temporal term |")


def test_bench_video_times_each_stage_and_the_whole(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPTS / "bench_video.py"), "--size", "64x48", "--frames", "5"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    head, in_turn, threads, stages = out.stdout.strip().splitlines()[-4:]
    assert head.startswith("64x48, 5 frames, fp32, cpu")
    assert in_turn.strip().startswith("in turn") and "frames/s" in in_turn
    assert threads.strip().startswith("threads") and "the default" in threads
    assert all(f"{stage} " in stages for stage in ("decode", "network", "encode")) and "their sum" in stages
