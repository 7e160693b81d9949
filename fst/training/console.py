"""What `fst fit` prints: fst's lines and Lightning's useful ones, without Lightning's known noise.

Each filter names one message by its exact text (and a warning's category) on the logger that says it,
and lives only while a command runs (`known_noise`), so a user's own Trainer, and any other warning or
line of the same loggers, is untouched. Lightning's model summary is off by default instead
(`fst.training.trainer.Trainer`): `--trainer.enable_model_summary true` shows it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator

from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch import nn

# Lightning's tree helper trips torch's own deprecation of LeafSpec: nothing fst (or a user) can change.
LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
# fst's precision line already says what trains in bf16; the summary's size estimate is a side note.
SUMMARY_PRECISION = r"Precision \S+ is not supported by the model summary"
# `--ckpt_path last` on a folder with no checkpoint yet is fst's way to start or resume: nothing to say.
NO_LAST = r'\.fit\(ckpt_path="last"\) is set, but there is no last checkpoint available'
TIP = "💡 Tip:"  # an advertisement for a cloud logger, on every run
RANK_ZERO_LOGGER = "pytorch_lightning.utilities.rank_zero"
# Lines that ask nothing of a user, by the logger that says them (either package's rank-zero logger
# may be the one in use: the one imported last sets it): fst says the precision it chose and why.
LINES: dict[str, tuple[str, ...]] = {
    RANK_ZERO_LOGGER: (re.escape(TIP), r"GPU available: \w+.*, used: \w+$", r"TPU available: \w+, using: \d+ TPU cores$",
                       r"Using (16bit|bfloat16) Automatic Mixed Precision \(AMP\)$"),
    "lightning_fabric.utilities.rank_zero": (r"Using (16-bit|bfloat16) Automatic Mixed Precision \(AMP\)$",),
    "lightning_fabric.utilities.seed": (r"(\[rank: \d+\] )?Seed set to \d+$",),
    "pytorch_lightning.accelerators.cuda": (r"LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES: \[[\d,]*\]$",),
}


class _DropLines(logging.Filter):
    """Drops the records whose whole message matches one of `patterns`."""

    def __init__(self, patterns: tuple[str, ...]):
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.match(message) for p in self.patterns)


@contextlib.contextmanager
def known_noise() -> Iterator[None]:
    """Silence Lightning's known noise while the block runs; every filter is undone after it."""
    filters = [(logging.getLogger(name), _DropLines(patterns)) for name, patterns in LINES.items()]
    for log, drop in filters:
        log.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=LEAFSPEC, category=FutureWarning,
                                    module=r"pytorch_lightning\.utilities\._pytree")
            warnings.filterwarnings("ignore", message=SUMMARY_PRECISION, category=UserWarning)
            warnings.filterwarnings("ignore", message=NO_LAST, category=UserWarning)
            yield
    finally:
        for log, drop in filters:
            log.removeFilter(drop)


def frozen_in_eval(frozen: nn.Module) -> None:
    """Say that `frozen` (the loss network) is in eval mode on purpose: Lightning warns of every module in
    eval mode at the start of training; the filter names exactly this many modules, so one more
    (a module left in eval by mistake) still gets the warning."""
    n = sum(not m.training for m in frozen.modules())
    if n:
        warnings.filterwarnings("ignore", message=rf"Found {n} module\(s\) in eval mode at the start of training",
                                category=PossibleUserWarning)


def resuming() -> None:
    """Inside `known_noise`, for a run given --ckpt_path: it writes on into its own checkpoint folder, so
    Lightning's note that the folder is not empty asks nothing (a fresh run into a used folder still
    gets it)."""
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty\.$", category=UserWarning)
