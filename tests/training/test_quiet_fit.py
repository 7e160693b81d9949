"""A newcomer's first `fst fit --ckpt_path last` (what `make demo` runs), and the same again: fst's lines
and the progress bar, nothing of Lightning's that asks nothing of the user (fst.training.console, trainer)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from fst.training.console import known_noise

from runs import TINY, fst_subprocess

# Lightning's lines on a first run, each of which asks nothing of the user.
QUIET = ('ckpt_path="last") is set, but there is no last checkpoint', "HINT: Set `ModelCheckpoint",
         "GPU available:", "TPU available:", "| Name", "Trainable params", "Total estimated model params size",
         "Seed set to", "Automatic Mixed Precision")
# The progress bar (tqdm redraws it with \r, moves up with ESC [A) and its blank lines.
BAR = re.compile(r"^\s*$|^(Epoch \d+|Validation|Training|Sanity Checking)\b.*\|")
ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def shipped_like(tmp: Path) -> Path:
    """The tiny config with the settings the shipped configs leave to their defaults left out (the
    model summary, the progress bar, the validation batch limit), two steps: one checkpoint, one
    validation."""
    keep = [line if not line.strip().startswith("max_steps") else "  max_steps: 2"
            for line in Path(TINY).read_text().splitlines()
            if not line.strip().startswith(("enable_model_summary", "enable_progress_bar", "limit_val_batches"))]
    config = tmp / "tiny.yaml"
    config.write_text("\n".join(keep) + "\n")
    return config


@pytest.mark.slow
def test_a_first_fit_with_ckpt_path_last_prints_only_fst_lines_and_the_bar(tmp_path: Path) -> None:
    run = tmp_path / "run"  # an empty folder: there is no last checkpoint to resume
    lines = fit_lines(shipped_like(tmp_path), run)
    assert [line for line in lines if any(q in line for q in QUIET)] == [], lines
    said = [line.strip() for line in lines if not BAR.match(line)]
    assert said and all(line.startswith("fst: ") or line == "`Trainer.fit` stopped: `max_steps=2` reached."
                        for line in said), said
    assert any(line.startswith("Epoch 0: 100%") for line in lines), lines  # the bar is still there
    assert (run / "checkpoints" / "last.ckpt").is_file()
    # The same command again (`make demo` twice): it resumes the finished run, and its checkpoint
    # folder being in use is no news (before: "Checkpoint directory … exists and is not empty.").
    again = [line.strip() for line in fit_lines(shipped_like(tmp_path), run) if not BAR.match(line)]
    assert [line for line in again if not line.startswith("fst: ")] == [
        f"Restoring states from the checkpoint path at {run / 'checkpoints' / 'last.ckpt'}",
        f"Restored all states from the checkpoint at {run / 'checkpoints' / 'last.ckpt'}",
        "`Trainer.fit` stopped: `max_steps=2` reached."], again


def fit_lines(config: Path, run: Path) -> list[str]:
    """What `fst fit --config config --ckpt_path last` into `run` printed, line by line, the progress
    bar's redraws as lines of their own."""
    proc = fst_subprocess(["fit", "--config", str(config), "--trainer.default_root_dir", str(run), "--ckpt_path", "last"])
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    return [ESCAPE.sub("", line) for line in re.split(r"[\r\n]", out)]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.said.append(record.getMessage())


def test_line_filters_name_one_message_of_a_logger_and_end_with_the_command() -> None:
    log, lines = logging.getLogger("pytorch_lightning.utilities.rank_zero"), Lines()
    log.addHandler(lines)  # Lightning's loggers need not propagate to the root one
    try:
        with known_noise():
            log.info("GPU available: False, used: False")
            log.info("GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`.")
        log.info("GPU available: False, used: False")
    finally:
        log.removeHandler(lines)
    assert lines.said == ["GPU available but not used. You can set it by doing `Trainer(accelerator='gpu')`.",
                          "GPU available: False, used: False"]
