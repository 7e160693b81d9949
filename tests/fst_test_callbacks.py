"""Callbacks that tests plug into real `fst fit` runs through the config (`trainer.callbacks`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytorch_lightning as pl


class RecordKeys(pl.Callback):
    """Appends every training batch's sample keys to OUT/rank{R}.txt."""

    def __init__(self, out: str):
        self.out = Path(out)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / f"rank{trainer.global_rank}.txt", "a") as f:
            f.write("".join(f"{trainer.global_step} {k}\n" for k in batch["key"]))


class PoisonAt(pl.Callback):
    """Makes the style weight NaN from a given step on, as a diverging run would."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            pl_module.criterion.style_weight = float("nan")


class SlowDown(pl.Callback):
    """Sleeps after each step so a test can kill the process mid-run."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)
        os.sync() if hasattr(os, "sync") else None
