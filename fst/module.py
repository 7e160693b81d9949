"""The LightningModule: a TransformerNet trained against a frozen-VGG perceptual criterion.

Its typed ``__init__`` is the ``model:`` section of every config (LightningCLI reads it as the schema).
Batches follow `fst.data`'s contract: ``{"image": (B, 3, H, W) in [0, 1], "skipped": int tensor}``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchvision.transforms.functional as TF
from torchvision.utils import make_grid

from fst import checkpoint as fst_checkpoint
from fst import losses
from fst.assets import resolve_style_path
from fst.criterion import DEFAULT_CONTENT_LAYER, PerceptualLoss
from fst.domain import at_least, positive
from fst.errors import FstError
from fst.images import open_rgb
from fst.transformer import MIN_SIDE, TransformerNet
from fst.vgg import DEFAULT_LAYERS
from fst.vgg_arch import check_arch, min_input_side

def load_style(path: Path, size: int) -> torch.Tensor:
    """The style image as (1, 3, H, W) in [0, 1], its long side resized to `size` (0 keeps it)."""
    img = open_rgb(path)
    if size:
        scale = size / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), resample=3)
    return TF.to_tensor(img)[None]


def min_image_side(arch: str, style_layers: list[str] | None, content_layer: str | None) -> int:
    """The smallest square image a training step takes: the transformer's minimum, or VGG's for
    the deepest loss layer (each pool halves the side), whichever is larger."""
    check_arch(arch)
    layers = [*(style_layers or DEFAULT_LAYERS[arch]), content_layer or DEFAULT_CONTENT_LAYER[arch]]
    return max(MIN_SIDE, min_input_side(arch, layers))


class StyleTransferModule(pl.LightningModule):
    def __init__(
        self,
        style_image: str = "sample:starry_night",
        style_loss: str = "inter",
        style_size: int = 512,
        arch: str = "vgg16",
        style_layers: list[str] | None = None,
        style_layer_weights: list[float] | None = None,
        content_layer: str | None = None,
        content_loss: str = "relative",
        content_weight: float = 1.0,
        style_weight: float = 1.0,
        tv_weight: float = 1e-4,
        pooling: str = "max",
        vgg_weights: str | None = None,
        channels: int = 32,
        n_residual: int = 5,
        output: str = "linear",
        output_gain: float = 4.0,
        grey_start: bool = True,
        lr: float = 1e-3,
        optimizer: str = "adam",
        channels_last: bool = False,
        compile: bool = False,
        preview_images: int = 4,
    ):
        """
        Args:
            style_image: painting to learn; a path, or ``sample:NAME`` for a shipped one (e.g. sample:the_scream).
            style_loss: ``inter`` / ``intra`` (that family's default) or a registered loss name (`fst losses`).
            style_size: long side the style image is resized to before its statistics are taken (0: as is).
            arch: loss network, ``vgg16`` or ``vgg19``.
            style_layers: VGG layers for the style loss (default: Johnson's for vgg16, Gatys' for vgg19).
            style_layer_weights: one weight per style layer (default: 1, 1, 1, 0.1 for vgg16's default layers,
                whose deepest would otherwise rule the loss; all 1 otherwise).
            content_layer: VGG layer for the content loss (default relu2_2 for vgg16, relu4_1 for vgg19).
            content_loss: ``relative`` (‖φ(y) − φ(x)‖² / ‖φ(x)‖²) or ``mse`` (the classic recipe's absolute mean).
            content_weight: weight of the content loss.
            style_weight: weight of the style loss (each loss's calibrated factor is applied on top;
                an absolute loss such as ``gram_mse`` takes the recipe's own, ~1e10).
            tv_weight: weight of the total-variation smoothness loss.
            pooling: ``max`` or ``avg`` pooling inside VGG.
            vgg_weights: explicit VGG weights file (default: cache, then torchvision, then the offline package).
            channels: base width of the transformer network (32 = the classic 1.68 M parameters).
            n_residual: residual blocks in the transformer network.
            output: ``linear`` (0-255 in and out, unbounded while training, clamped when stylizing) or
                ``sigmoid`` (outputs in (0, 1); leaves blobs where its gradient vanishes, fst/transformer.py).
            output_gain: the linear output reads its last conv in units of 255/output_gain: 1 is the classic
                recipe's, whose output learns 64x slower than a sigmoid's; 4 reached the painting's colours
                within 100 steps (fst/transformer.py).
            grey_start: start the linear output at mid-grey rather than near black (PyTorch's default
                init, which the classic recipe keeps; fst/transformer.py).
            lr: learning rate.
            optimizer: ``adam`` or ``adamw``.
            channels_last: run the transformer and VGG in channels_last memory format.
            compile: wrap the transformer in torch.compile.
            preview_images: validation photos shown in the TensorBoard preview grid.
        """
        super().__init__()
        self.save_hyperparameters()
        # Every numeric argument's domain, before any weights load: one line, not a torch traceback later.
        positive("lr", lr)
        for name, value in (("content_weight", content_weight), ("style_weight", style_weight),
                            ("tv_weight", tv_weight), ("n_residual", n_residual), ("preview_images", preview_images),
                            ("style_size", style_size), *(("style_layer_weights", w) for w in style_layer_weights or [])):
            at_least(name, value, 0)
        at_least("channels", channels, 1)
        self.min_side = min_image_side(arch, style_layers, content_layer)
        if style_size:  # 0 keeps the style image as it is
            self.check_image_side("style_size", style_size)
        if optimizer not in ("adam", "adamw"):
            raise FstError(f"unknown optimizer {optimizer!r} (choose adam or adamw)")
        losses.get(style_loss)  # fail on a bad name before any weights load
        losses.get_content(content_loss)
        self.transformer = TransformerNet(channels, n_residual, output, output_gain, grey_start)
        self.criterion = PerceptualLoss(style_loss, arch, style_layers, style_layer_weights, content_layer,
                                        content_weight, style_weight, tv_weight, pooling, vgg_weights, content_loss)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        # A compiled bound method, not a compiled module: an OptimizedModule attribute would register
        # a second copy of the weights (`_orig_mod.*`) in every checkpoint.
        self._forward = torch.compile(self.transformer.forward) if compile else self.transformer.forward
        self.strict_loading = False  # checkpoints leave out the frozen VGG (it comes from the weights cache)
        self._skipped = 0
        self._last_step_time: float | None = None
        self._previews: list[torch.Tensor] = []

    def check_image_side(self, name: str, side: int) -> None:
        """Refuse images (crops, previews, the style) of a side this model cannot take."""
        if side < self.min_side:
            raise FstError(f"{name} must be >= {self.min_side} for {self.hparams.arch} up to its deepest loss layer"
                           f" (each VGG pool halves it), got {side}")

    # --- setup ---------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        # Runs before a checkpoint is restored: take the statistics from the style image when it is
        # there; when resuming, the checkpoint's buffers replace them (or provide them if it is gone).
        path = resolve_style_path(self.hparams.style_image)
        if self.criterion.targets.is_empty() and path.is_file():
            self.criterion.set_style(load_style(path, self.hparams.style_size))

    def _require_style(self) -> None:
        if self.criterion.targets.is_empty():
            path = resolve_style_path(self.hparams.style_image)
            raise FstError(f"{path}: style image not found" if not path.is_file() else
                           f"{path}: no style statistics could be computed")

    def on_validation_start(self) -> None:
        self._require_style()

    def on_fit_start(self) -> None:
        self._require_style()
        path = resolve_style_path(self.hparams.style_image)
        tb = self._tensorboard()
        if tb is not None and path.is_file():
            tb.add_image("style", load_style(path, 256)[0], self.global_step)

    def configure_optimizers(self):
        opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[self.hparams.optimizer]
        return opt(self.transformer.parameters(), lr=self.hparams.lr)

    # --- steps ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    def stylize_and_score(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward pass of the training objective: (stylized y, loss terms incl. 'total')."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = self(x)
        return y, self.criterion(y, x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x = batch["image"]
        y, terms = self.stylize_and_score(x)
        total = terms["total"]
        if not torch.isfinite(total):
            raise FstError(f"loss is {total.item()} at step {self.global_step}: stopping; "
                           "checkpoints written before this step are intact (lower lr or style_weight?)")
        self._skipped += int(batch.get("skipped", 0))
        bs = x.shape[0]
        self.log_dict({f"loss/{k}": v.detach() for k, v in terms.items()}, prog_bar=False, batch_size=bs)
        self.log("loss", total.detach(), prog_bar=True, logger=False, batch_size=bs)
        self.log("global_step", float(self.global_step), logger=False, batch_size=bs)  # for keep-last-K
        self.log_dict({"output/min": y.detach().min().float(), "output/max": y.detach().max().float(),
                       "output/mean": y.detach().mean().float(), "data/skipped": float(self._skipped)},
                      batch_size=bs)
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=bs)
        self._log_throughput(bs)
        return total

    def _log_throughput(self, batch_size: int) -> None:
        now = time.perf_counter()
        if self._last_step_time is not None:
            self.log("perf/images_per_sec", batch_size / max(now - self._last_step_time, 1e-9),
                     prog_bar=True, batch_size=batch_size)
        self._last_step_time = now

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = batch["image"]
        y, terms = self.stylize_and_score(x)
        self.log_dict({f"val/{k}": v for k, v in terms.items() if "/" not in k}, batch_size=x.shape[0])
        if sum(p.shape[0] for p in self._previews) < 2 * self.hparams.preview_images:
            self._previews += [x.detach().float().cpu(), y.detach().float().cpu()]

    def on_validation_epoch_end(self) -> None:
        tb = self._tensorboard()
        if tb is not None and self._previews:
            photos = torch.cat(self._previews[0::2])[: self.hparams.preview_images]
            styled = torch.cat(self._previews[1::2])[: self.hparams.preview_images]
            grid = make_grid(torch.cat([photos, styled]).clamp(0, 1), nrow=photos.shape[0], padding=2)
            tb.add_image("preview/photos_vs_stylized", grid, self.global_step)
        self._previews = []

    def _tensorboard(self):
        for logger in self.loggers if self._trainer is not None else []:
            if isinstance(logger, pl.loggers.TensorBoardLogger):
                return logger.experiment
        return None

    # --- checkpoints ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                    if not k.startswith("criterion.vgg.")}
        checkpoint["fst"] = fst_checkpoint.fst_metadata(
            self.transformer,
            style_name=resolve_style_path(self.hparams.style_image).stem,
            style_loss=self.criterion.loss.name,
            global_step=int(self.global_step),
            precision=str(self.trainer.precision) if self._trainer is not None else None,
        )

