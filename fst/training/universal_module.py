"""The LightningModule of a universal network (fst/models/universal.py): its decoder learns to invert
the frozen VGG16 encoder, on photos alone.

    loss = pixel_weight · ‖y − x‖² / ‖x‖²  +  feature_weight · Σ_l ‖φ_l(y) − φ_l(x)‖² / ‖φ_l(x)‖²

with y = decoder(encoder(x)) and φ_l the encoder's first ReLU of each block up to its layer (relu1_1,
relu2_1, relu3_1 for the default). No painting enters the loss: the painting enters only through the
style transform at inference, so one trained decoder serves both transforms (``intra`` AdaIN and
``inter`` WCT) and every painting, and none is "held out" in the sense a per-painting network's is.
`transform` picks the transform the checkpoint carries by default and the previews show both.

With ``style_weight`` > 0 the decoder also learns to paint (AdaIN's recipe, fst/training/universal_style.py):
each photo is decoded from its features with a painting's statistics (``transform`` is the one trained
with), scored by a content term at the transform's layer and a style loss of the registry against
the painting; the paintings come from ``data.style_shards``. Then

    loss = pixel_weight · pixel + feature_weight · feature + content_weight · content + style_weight · style

and a pixel and feature weight of 0 (configs/universal_style.yaml) leave the reconstruction pass out.

Its typed ``__init__`` is the ``model:`` section of configs/universal.yaml; batches follow
`fst.data.datamodule`'s contract, as StyleTransferModule's do.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from torchvision.utils import make_grid

from fst.artefacts.universal_checkpoint import bound_styles, load_universal, universal_from_checkpoint, universal_metadata
from fst.assets import resolve_model_path, resolve_style_path
from fst.core.domain import at_least, positive
from fst.core.errors import FstError
from fst.models import style_transforms
from fst.models.universal import UniversalNet, min_side
from fst.models.weights import resolve
from fst.training import console
from fst.training.run_logger import tensorboard_of
from fst.training.style_image import load_style
from fst.training.universal_style import StyleObjective, relative_mse

DEFAULT_PREVIEW_STYLES = ["sample:the_scream", "sample:composition_vii"]


class UniversalModule(pl.LightningModule):
    def __init__(
        self,
        transform: str = "intra",
        layer: str = "relu3_1",
        width: float = 1.0,
        pixel_weight: float = 1.0,
        feature_weight: float = 1.0,
        lr: float = 5e-4,
        vgg_weights: str | None = None,
        preview_styles: list[str] | None = None,
        preview_style_size: int = 256,
        preview_images: int = 4,
        style_weight: float = 0.0,
        content_weight: float = 1.0,
        style_loss: str = "intra",
        style_layers: list[str] | None = None,
        style_layer_weights: list[float] | None = None,
        base_checkpoint: str | None = None,
    ):
        """
        Args:
            transform: the style transform the trained network uses unless told otherwise: ``intra``
                (AdaIN: per-channel mean and std) or ``inter`` (WCT: the channel covariance). The decoder
                is the same for both; `fst stylize --transform` picks the other one at inference.
            layer: how deep the encoder goes (``relu2_1``, ``relu3_1``, ``relu4_1``): deeper carries larger
                patterns of the painting and costs more per frame (fst/models/universal.py).
            width: the decoder's width as a multiple of the encoder's (1 mirrors it).
            pixel_weight: weight of the pixel reconstruction term.
            feature_weight: weight of the feature reconstruction term (the encoder's relu*_1 layers).
            lr: learning rate (Adam).
            vgg_weights: explicit VGG16 weights file for the encoder (default: cache, then torchvision, then the
                offline package); the weights are copied into the checkpoint.
            preview_styles: paintings shown in TensorBoard's previews with both transforms (paths or
                sample:NAME); they take no part in training.
            preview_style_size: long side the preview paintings are resized to before their statistics are taken.
            preview_images: validation photos shown in the preview grid.
            style_weight: weight of the style loss against the paintings of ``data.style_shards``; 0 (the
                default) trains on reconstruction alone and takes no paintings.
            content_weight: weight of the content term ‖E(y) − t‖² / ‖t‖² (only with style_weight > 0).
            style_loss: ``inter`` / ``intra`` (that family's default) or a registered loss name (`fst losses`),
                as for a per-painting network; ``intra`` (mean_std) is AdaIN's.
            style_layers: VGG16 layers of the style loss (default: a per-painting network's, relu1_2 to relu4_3).
            style_layer_weights: one weight per style layer (default: a per-painting network's).
            base_checkpoint: start from this universal network's encoder and decoder (a path or
                ``sample:universal``; its layer and width must be this config's) instead of VGG16 and a fresh
                decoder: a style run that begins where a reconstruction run ended. Resuming a run
                (``--ckpt_path``) takes its own checkpoint's weights instead.
        """
        super().__init__()
        self.save_hyperparameters()
        positive("lr", lr)
        for name, value in (("pixel_weight", pixel_weight), ("feature_weight", feature_weight),
                            ("preview_images", preview_images), ("style_weight", style_weight),
                            ("content_weight", content_weight), *(("style_layer_weights", w) for w in style_layer_weights or [])):
            at_least(name, value, 0)
        if pixel_weight + feature_weight + style_weight <= 0:
            raise FstError("pixel_weight, feature_weight and style_weight are all 0: nothing to train")
        self.net = UniversalNet(transform, layer, width)
        self._encoder_loaded = False
        if base_checkpoint is not None:
            if vgg_weights is not None:
                raise FstError("model.base_checkpoint brings its own encoder: leave model.vgg_weights unset")
            start_from(self.net, base_checkpoint)
            self._encoder_loaded = True
        self.style = StyleObjective(style_loss, style_layers, style_layer_weights, vgg_weights) if style_weight else None
        self.min_side = max(min_side(layer), self.style.min_side if self.style else 0)
        at_least("preview_style_size", preview_style_size, self.min_side)
        self.preview_paths = [resolve_style_path(s) for s in (DEFAULT_PREVIEW_STYLES if preview_styles is None
                                                               else preview_styles)]
        self._preview_stats: dict[str, list[torch.Tensor]] = {}
        self._previews: list[torch.Tensor] = []
        self._last_step_time: float | None = None

    # --- what fst fit checks before a run starts ------------------------------------------------

    def check_image_side(self, name: str, side: int) -> None:
        if side < self.min_side:
            raise FstError(f"{name} must be >= {self.min_side} for a universal network up to "
                           f"{self.hparams.layer} (each VGG pool halves it), got {side}")

    def check_paintings(self, style_shards: str | None) -> None:
        """The style objective and a style corpus come together (fst fit checks before a run starts)."""
        if self.style is not None and style_shards is None:
            raise FstError("model.style_weight > 0 trains on paintings: set data.style_shards (style shards of a "
                           "folder of paintings: fst shards PAINTINGS_FOLDER --out DIR; or sample)")
        if self.style is None and style_shards is not None:
            raise FstError("data.style_shards is set but model.style_weight is 0: the paintings would not be used")

    def check_style_files(self) -> None:
        for path in self.preview_paths:
            if not path.is_file():
                raise FstError(f"{path}: preview style image not found")
            load_style(path, self.hparams.preview_style_size, self.min_side)

    # --- setup ---------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        # Before a checkpoint is restored: a resumed run's encoder comes from the checkpoint instead.
        if not self._encoder_loaded:
            self.net.encoder.load_vgg(resolve("vgg16", self.hparams.vgg_weights).state_dict)
            self._encoder_loaded = True
        if self.style is not None:
            self.style.load()  # kept out of checkpoints: built from the VGG weights, resumed or not

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._encoder_loaded = True

    def on_fit_start(self) -> None:
        console.frozen_in_eval(self.net.encoder)  # the encoder is frozen in eval mode on purpose
        self._take_preview_stats()

    def on_validation_start(self) -> None:
        self._take_preview_stats()

    def _take_preview_stats(self) -> None:
        if self._preview_stats:
            return
        with torch.no_grad():
            paintings = [load_style(p, self.hparams.preview_style_size).to(self.device) for p in self.preview_paths]
            for name in style_transforms.TRANSFORMS:
                net = self.net.with_transform(name)
                self._preview_stats[name] = [net.style_stats(p) for p in paintings]

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.decoder.parameters(), lr=self.hparams.lr)

    # --- steps ---------------------------------------------------------------------------------

    def reconstruction_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms of one pass: pixel, feature and their weighted total."""
        with torch.no_grad():
            target: list[torch.Tensor] = []
            f, sizes = self.net.encoder(x, target)
        y = self.net.decoder(f, sizes)
        got: list[torch.Tensor] = []
        self.net.encoder(y, got)
        terms = {"pixel": relative_mse(y, x),
                 "feature": sum(relative_mse(a, b) for a, b in zip(got, target)) / len(target)}
        terms["total"] = self.hparams.pixel_weight * terms["pixel"] + self.hparams.feature_weight * terms["feature"]
        return terms

    def training_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Every term of one training step and their weighted total (see the module docstring)."""
        hp, x = self.hparams, batch["image"]
        terms: dict[str, torch.Tensor] = {}
        total = x.new_zeros((), dtype=torch.float32)
        if hp.pixel_weight + hp.feature_weight > 0:
            terms = self.reconstruction_terms(x)
            total = terms.pop("total")
        if self.style is not None:
            if "style" not in batch:
                raise FstError("model.style_weight > 0 trains on paintings but the batch holds none: set data.style_shards")
            painted = self.style.terms(self.net, x, batch["style"])
            total = total + hp.content_weight * painted["content"] + hp.style_weight * painted["style"]
            terms.update(painted)
        terms["total"] = total
        return terms

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x = batch["image"]
        terms = self.training_terms(batch)
        total = terms["total"]
        if not torch.isfinite(total):
            raise FstError(f"loss is {total.item()} at step {self.global_step}: stopping; "
                           "checkpoints written before this step are intact (lower lr?)")
        bs = x.shape[0]
        self.log_dict({f"loss/{k}": v.detach() for k, v in terms.items()}, batch_size=bs)
        self.log("loss", total.detach(), prog_bar=True, logger=False, batch_size=bs)
        self.log("global_step", float(self.global_step), logger=False, batch_size=bs)  # for keep-last-K
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=bs)
        now = time.perf_counter()
        if self._last_step_time is not None:
            self.log("perf/images_per_sec", bs / max(now - self._last_step_time, 1e-9), prog_bar=True, batch_size=bs)
        self._last_step_time = now
        return total

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = batch["image"]
        self.log_dict({f"val/{k}": v for k, v in self.reconstruction_terms(x).items()}, batch_size=x.shape[0])
        if sum(p.shape[0] for p in self._previews) < self.hparams.preview_images:
            self._previews.append(x[: self.hparams.preview_images].detach())

    def on_validation_epoch_end(self) -> None:
        tb = tensorboard_of(self)
        if tb is not None and self._previews:
            x = torch.cat(self._previews)[: self.hparams.preview_images]
            rows = [x.float().cpu(), self.net.reconstruct(x).float().cpu()]
            for name, stats in self._preview_stats.items():
                net = self.net.with_transform(name)
                rows += [net(x, s).float().cpu() for s in stats]
            grid = make_grid(torch.cat(rows).clamp(0, 1), nrow=x.shape[0], padding=2)
            tb.add_image("preview/photos_reconstructed_intra_inter", grid, self.global_step)
        self._previews = []

    # --- checkpoints ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fst"] = universal_metadata(
            self.net, global_step=int(self.global_step),
            precision=str(self.trainer.precision) if self._trainer is not None else None)


def start_from(net: UniversalNet, base: str) -> None:
    """`net` given the weights of the universal checkpoint `base`, checked as data first; one line
    for a file of another layer or width, or one fine-tuned to a painting."""
    path = resolve_model_path(base)
    ckpt = load_universal(path)
    if bound_styles(ckpt, str(path)) is not None:
        raise FstError(f"{path}: fine-tuned to one painting; model.base_checkpoint takes a universal network "
                       "(the one it was fine-tuned from, e.g. sample:universal)")
    trained, _ = universal_from_checkpoint(ckpt)
    for key in ("layer", "width"):
        have, want = trained.config[key], net.config[key]
        if have != want:
            raise FstError(f"{path}: a universal network of {key} {have}, this run's model.{key} is {want}; "
                           f"set --model.{key} {have}")
    net.load_state_dict(trained.state_dict())
