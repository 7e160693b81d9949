"""What `fst fit` prints: fst's lines and Lightning's useful ones, without Lightning's known noise.

Each filter names one message by its exact text and category and lives only while a command runs
(`known_noise`), so a user's own Trainer, and any other warning, is untouched.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch import nn

# Lightning's tree helper trips torch's own deprecation of LeafSpec: nothing fst (or a user) can change.
LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
# fst's precision line already says what trains in bf16; the summary's size estimate is a side note.
SUMMARY_PRECISION = r"Precision \S+ is not supported by the model summary"
TIP = "💡 Tip:"  # an advertisement for a cloud logger, on every run
RANK_ZERO_LOGGER = "pytorch_lightning.utilities.rank_zero"


class _DropTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(TIP)


@contextlib.contextmanager
def known_noise() -> Iterator[None]:
    """Silence Lightning's known noise while the block runs; every filter is undone after it."""
    drop = _DropTip()
    log = logging.getLogger(RANK_ZERO_LOGGER)
    log.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=LEAFSPEC, category=FutureWarning,
                                    module=r"pytorch_lightning\.utilities\._pytree")
            warnings.filterwarnings("ignore", message=SUMMARY_PRECISION, category=UserWarning)
            yield
    finally:
        log.removeFilter(drop)


def frozen_in_eval(frozen: nn.Module) -> None:
    """Say that `frozen` (the loss network) is in eval mode on purpose: Lightning warns of every module in
    eval mode at the start of training; the filter names exactly this many modules, so one more
    (a module left in eval by mistake) still gets the warning."""
    n = sum(not m.training for m in frozen.modules())
    if n:
        warnings.filterwarnings("ignore", message=rf"Found {n} module\(s\) in eval mode at the start of training",
                                category=PossibleUserWarning)
