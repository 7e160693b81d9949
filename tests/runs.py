"""Training runs for tests: the tiny config's arguments, `fst` in a subprocess, the TensorBoard events
a run wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "configs" / "tiny.yaml")


def run_args(tmp: Path, *extra: str) -> list[str]:
    return ["fit", "--config", TINY, "--trainer.default_root_dir", str(tmp),
            "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", str(tmp),
            "--trainer.logger.name", "tb", "--checkpoint.dirpath", str(tmp / "ckpt"), *extra]


def fst_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


def fst_subprocess(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fst.cli", *args], cwd=ROOT, env=fst_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def events(tmp: Path) -> EventAccumulator:
    files = sorted((tmp / "tb").rglob("events.out.tfevents.*"))
    assert files, "no TensorBoard event file written"
    acc = EventAccumulator(str(files[-1].parent), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc
