"""A training run stopped by SIGTERM or SIGINT (a scheduler pre-empting the job, Ctrl-C) saves
last.ckpt at the step it reached, then ends with one line and a non-zero exit; ``--ckpt_path last``
resumes from there.

Lightning (2.3 up to at least 2.6) handles SIGTERM its way: its handler sets a flag, and its loops
raise SIGTERMException after the batch that was running. That exception is a SystemExit with code 0
and nothing is saved, so by itself a pre-empted run looked finished and lost up to a checkpoint
interval. fst builds on it: `fst.core.signals` hands SIGINT to the same handler and ends a wait for data
at once, `SaveOnStop` saves the state whenever the run stops at one of those safe points, and
`fst.training.fit.main` turns the stop into `fst.core.signals.Interrupted` (exit 128 + signal).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

from fst.core import signals
from fst.core.errors import FstError


class SaveOnStop(pl.Callback):
    """Defers stop signals while the training loop runs and saves last.ckpt when one stops it."""

    def __init__(self) -> None:
        self.training = False  # between on_train_start and on_train_end: the state is whole after each step

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # With several ranks, only Lightning's per-batch check stops them all at the same step.
        signals.defer(True, wait_is_safe=trainer.world_size == 1)
        self.training = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        signum = signals.pending()
        if signum is not None:  # it came during the last step: the run stops all the same
            raise signals.Interrupted(signum)
        self.training = False
        signals.defer(False)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        signum = stop_signal(exception)
        signals.defer(False)
        if signum is None or not self.training:
            return
        self.training = False
        safe = getattr(exception, "safe", True)
        exception.signum = signum  # type: ignore[attr-defined]
        exception.note = save_last(trainer) if safe else "stopped in the middle of a step, nothing saved"  # type: ignore[attr-defined]

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        signals.defer(False)


def stop_signal(exception: BaseException) -> int | None:
    """The signal that stopped the run, or None if something else did."""
    if isinstance(exception, signals.Interrupted):
        return exception.signum
    if isinstance(exception, SIGTERMException):  # SIGINT reaches Lightning as if it were SIGTERM
        return signals.pending() or signal.SIGTERM
    return None


def save_last(trainer: pl.Trainer) -> str:
    """Save the state as the checkpoint callback's last.ckpt; say what was saved, for the one line."""
    callback = trainer.checkpoint_callback
    if not isinstance(callback, ModelCheckpoint) or callback.dirpath is None:
        return "no checkpoint folder, nothing saved"
    if trainer.global_step == 0:
        return "no step trained yet, nothing saved"
    path = Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    try:
        trainer.save_checkpoint(path, weights_only=False)  # the whole state: the run resumes from it
    except FstError as e:
        return str(e)
    return f"saved {path} at step {trainer.global_step} (resume with --ckpt_path last)"
