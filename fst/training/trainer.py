"""Lightning's Trainer as fst runs it: precision `auto` chosen by the hardware, checkpoints written
whole, a stop signal saving the run first, freed memory kept on the CPU."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from fst.artefacts.checkpoint_io import with_atomic_checkpoints
from fst.core import host_memory
from fst.core import precision as fst_precision
from fst.core.errors import FstError
from fst.training.monitoring import RunMonitor
from fst.training.preemption import SaveOnStop


class Trainer(pl.Trainer):
    """Lightning's Trainer, with precision ``auto`` (fst.core.precision) as the default.

    Args:
        precision: ``auto`` (default): bf16-mixed where the hardware multiplies bf16 natively (GPUs with
            bf16, CPUs with AVX512-BF16 or AMX), 16-mixed on other GPUs, 32-true on other CPUs; the
            choice and its reason are printed once. Or any Lightning precision (32-true, bf16-mixed,
            16-mixed, ...); bf16 on a CPU that only emulates it is warned about (tens of times slower).
        enable_model_summary: Lightning's table of the model's layers and sizes at the start of
            training; off by default (it asks nothing of a user; fst says what it trains). ``null``
            (what configs saved before said for Lightning's default) is the default too.
    """

    def __init__(self, *, precision: str | int | None = fst_precision.AUTO, enable_model_summary: bool | None = False,
                 **kwargs: Any) -> None:
        precision = resolve_precision(precision, kwargs.get("accelerator", "auto"))
        if fst_precision.device_type(kwargs.get("accelerator", "auto")) == "cpu":
            host_memory.keep_freed_memory()  # a CPU step otherwise pays page faults for every activation
        # Checkpoints are written whole or not at all, a stop signal saves the run first, and
        # TensorBoard gets the loss layout, quality over time and final metrics (fst.training.monitoring).
        kwargs["plugins"] = with_atomic_checkpoints(kwargs.get("plugins"))
        callbacks = kwargs.get("callbacks") or []
        kwargs["callbacks"] = [*(callbacks if isinstance(callbacks, list) else [callbacks]), SaveOnStop(), RunMonitor()]
        try:
            super().__init__(precision=precision, enable_model_summary=bool(enable_model_summary), **kwargs)
        except ValueError as e:  # Lightning's own list of precisions is the one to check against
            if f"Precision {precision!r} is invalid" in str(e):
                raise FstError(f"precision {precision!r} is not one of auto, 32-true, bf16-mixed, 16-mixed, "
                               "bf16-true, 16-true, 64-true") from None
            raise


def resolve_precision(precision: str | int | None, accelerator: str | None) -> str | int | None:
    """``auto`` made concrete for this machine, with the choice and its reason said once."""
    resolved, choice = fst_precision.resolve_training(precision, accelerator)
    if choice is not None:
        fst_precision.say(f"fst: {choice.describe('precision')}")
    else:
        warning = fst_precision.slow_bf16_warning(fst_precision.device_type(accelerator), str(precision),
                                                  "--trainer.precision auto", "32-true")
        if warning:
            fst_precision.say(f"fst: warning: {warning}")
    return resolved
