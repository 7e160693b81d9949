"""What a run shows in TensorBoard beyond its loss terms: the custom-scalars layout (loss terms
first), the quality of the preview photos over time, and the final metrics in HPARAMS.

Quality: at each validation, the metrics `fst compare` computes (fst.metrics.features), on the fixed
preview photos: style distance to the painting (three statistics, on the evaluation VGG: the other
architecture than the one trained with), content distance to the photo, CIELAB colour distance to
the painting, and clipped pixels; as ``quality/<metric>`` (``quality/<metric>/<painting>`` for
several). Cost per validation, measured on 2 shared CPU cores (fp32, the tests' tiny run: 2 photos
of 32², one painting of 64²): 0.3-0.7 s, after a one-off ~2 s at the first validation to load the
evaluation VGG and the painting's statistics; it grows with photos x paintings x pixels (two VGG
forwards of the previews per painting). Each validation logs its own
cost as ``perf/quality_seconds``.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from fst.metrics.features import OTHER_ARCH, STYLE_STATS, FeatureMetrics, clipped_percent, color_distance
from fst.training.module import StyleTransferModule, load_style

LOSS_TERMS = ("total", "content", "style", "tv", "temporal")
QUALITY = (*(f"style_{s}" for s in STYLE_STATS), "content", "color", "clipped_pct")
FINAL = {"run/loss": "loss/total", "run/style_distance": "quality/style_mean_std",
         "run/content_distance": "quality/content", "run/temporal": "val/temporal"}  # what HPARAMS sorts runs by (run/ sorts after loss/)


def layout(n_styles: int = 1) -> dict[str, dict[str, list[Any]]]:
    """The custom-scalars page: loss terms first (training and validation on one chart), each
    painting's style loss (several paintings only), then the quality metrics; tags are regular expressions."""
    loss = {term: ["Multiline", [rf"^(loss|val)/{term}$"]] for term in LOSS_TERMS}
    if n_styles > 1:
        loss["style per painting"] = ["Multiline", [r"^(loss|val)/style_of/.*"]]
    quality = {name: ["Multiline", [rf"^quality/{name}(/.*)?$"]] for name in QUALITY}
    return {"loss": loss, "quality": quality}


def tensorboard_loggers(trainer: pl.Trainer) -> list[TensorBoardLogger]:
    return [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


class RunMonitor(pl.Callback):
    """Logs the layout at the start, quality metrics at each validation, final metrics as hparams."""

    def __init__(self) -> None:
        self._metrics: FeatureMetrics | None = None  # the evaluation VGG, loaded at the first validation
        self._targets: list[dict] = []
        self._paintings: list[torch.Tensor] = []
        self._last: dict[str, float] = {}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Before Lightning logs the hyperparameters: no `hp_metric` -1 placeholder, the real metrics come at the end.
        for logger in tensorboard_loggers(trainer):
            logger._default_hp_metric = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for logger in tensorboard_loggers(trainer) if trainer.is_global_zero else []:
            logger.experiment.add_custom_scalars(layout(getattr(pl_module, "n_styles", 1)))

    def _load(self, module: StyleTransferModule) -> None:
        metrics = FeatureMetrics(OTHER_ARCH[module.hparams.arch], module.hparams.vgg_weights).to(module.device)
        self._paintings = [load_style(p, module.hparams.style_size).to(module.device) for p in module.style_paths]
        self._targets = [metrics.target(p) for p in self._paintings]
        self._metrics = metrics

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before the module's own hook, which turns the same previews into the grid and drops them.
        if not isinstance(pl_module, StyleTransferModule) or not pl_module.previews or trainer.sanity_checking:
            return
        if len(pl_module.style_paths) != pl_module.n_styles or not all(p.is_file() for p in pl_module.style_paths):
            return  # a base checkpoint's paintings are not at hand: nothing to measure against
        start = time.perf_counter()
        if self._metrics is None:
            self._load(pl_module)
        n = pl_module.hparams.preview_images
        rows = [torch.cat(row)[:n].to(pl_module.device) for row in zip(*pl_module.previews)]
        x, outputs = rows[0], rows[1:]
        values: dict[str, float] = {}
        for k, y in enumerate(outputs):
            y = y.clamp(0, 1)  # as stylized images are saved
            d = self._metrics.distances(y, x, self._targets[k])
            d["color"] = color_distance(y, self._paintings[k])
            d["clipped_pct"] = clipped_percent(y)
            suffix = "" if len(outputs) == 1 else f"/{pl_module.style_names[k]}"
            values.update({f"quality/{name}{suffix}": float(v.float().mean()) for name, v in d.items()})
        if len(outputs) > 1:  # the mean over paintings, for HPARAMS
            values.update({f"quality/{name}": sum(values[f"quality/{name}/{s}"] for s in pl_module.style_names)
                           / len(outputs) for name in QUALITY})
        values["perf/quality_seconds"] = time.perf_counter() - start
        pl_module.log_dict(values)
        self._last.update(values)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        final = {**{k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}, **self._last}
        metrics = {name: final[tag] for name, tag in FINAL.items() if tag in final}
        for logger in tensorboard_loggers(trainer) if metrics else []:
            logger.log_hyperparams(pl_module.hparams, metrics, step=trainer.global_step)
