"""The TensorBoard logger of an fst run: its folder follows the run's root, and its HPARAMS entry
carries the run's real final metrics (written by fst.training.monitoring) instead of Lightning's
``hp_metric`` −1 placeholder, so runs can be sorted by them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import TensorBoardLogger


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger with ``save_dir`` optional.

    Args:
        save_dir: folder of the logs; unset, ``trainer.default_root_dir`` (fst.training.run_folder fills
            it in before the logger is built; the working directory when there is no root either).
        name: sub-folder of save_dir for this logger's versions.
        version: version folder (default: the next ``version_N``).
        default_hp_metric: write Lightning's ``hp_metric`` −1 placeholder at the start; off, the
            hyperparameters are written once with the run's final metrics.
    """

    def __init__(self, save_dir: str | Path | None = None, name: str | None = "tensorboard",
                 version: int | str | None = None, default_hp_metric: bool = False, **kwargs: Any) -> None:
        super().__init__(save_dir if save_dir is not None else ".", name=name, version=version,
                         default_hp_metric=default_hp_metric, **kwargs)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        # Lightning adds a bare `epoch` scalar, which would sort above loss/* on the scalars page.
        if "epoch" in metrics:
            metrics = {("trainer/epoch" if k == "epoch" else k): v for k, v in metrics.items()}
        super().log_metrics(metrics, step)


def tensorboard_of(module: Any) -> Any:
    """The TensorBoard writer of a LightningModule's run, or None (no trainer, or no TensorBoard logger)."""
    for logger in module.loggers if module._trainer is not None else []:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None
