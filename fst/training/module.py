"""The LightningModule: a TransformerNet trained against a frozen-VGG perceptual criterion.

Its typed ``__init__`` is the ``model:`` section of every config (LightningCLI reads it as the schema).
Batches follow `fst.data.datamodule`'s contract: ``{"image": (B, 3, H, W) in [0, 1], "skipped": int tensor}``.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from torchvision.utils import make_grid

from fst import losses
from fst.artefacts import checkpoint as fst_checkpoint
from fst.artefacts.universal_checkpoint import is_universal, load_model_checkpoint
from fst.assets import resolve_model_path, resolve_style_path
from fst.core import inductor_cache
from fst.core.domain import at_least, positive
from fst.core.errors import FstError
from fst.losses import temporal
from fst.losses.criterion import DEFAULT_CONTENT_LAYER, PerceptualLoss
from fst.models.transformer import MIN_SIDE, TransformerNet, with_new_styles
from fst.models.vgg import DEFAULT_LAYERS
from fst.models.vgg_arch import check_arch, min_input_side
from fst.training import console, universal_base
from fst.training.run_logger import tensorboard_of
from fst.training.style_image import load_style


def min_image_side(arch: str, style_layers: list[str] | None, content_layer: str | None) -> int:
    """The smallest square image a training step takes: the transformer's minimum, or VGG's for
    the deepest loss layer (each pool halves the side), whichever is larger."""
    check_arch(arch)
    layers = [*(style_layers or DEFAULT_LAYERS[arch]), content_layer or DEFAULT_CONTENT_LAYER[arch]]
    return max(MIN_SIDE, min_input_side(arch, layers))


ASSIGNMENTS = ("sample", "batch")


class StyleTransferModule(pl.LightningModule):
    def __init__(
        self,
        style_image: str = "sample:starry_night",
        style_images: list[str] | None = None,
        style_assignment: str = "sample",
        base_checkpoint: str | None = None,
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
        temporal_weight: float = 0.0,
        pooling: str = "max",
        vgg_weights: str | None = None,
        channels: int = 32,
        n_residual: int = 5,
        output: str = "linear",
        output_gain: float = 4.0,
        grey_start: bool = True,
        net: str = "johnson",
        lr: float = 1e-3,
        optimizer: str = "adam",
        channels_last: bool = False,
        compile: bool = False,
        preview_images: int = 4,
    ):
        """
        Args:
            style_image: painting to learn; a path, or ``sample:NAME`` for a shipped one (e.g. sample:the_scream).
            style_images: several paintings for one network (conditional instance norm: one scale and
                shift per painting in every norm, all else shared); replaces style_image when given.
            style_assignment: which painting each training image is scored against: ``sample`` (round robin
                over the images of every batch, so each batch holds every painting) or ``batch`` (one painting
                per batch, round robin over steps).
            base_checkpoint: add the style_images as new styles to this fst checkpoint's network: only the
                new styles' scales and shifts train, every other weight stays as it is; the checkpoints
                written hold every style. Its network's shape and style loss are used. The norms alone
                learn best at ~10x the network's lr (2e-2 matched a full run: docs/multi_style.md).
                A universal network's checkpoint (or sample:universal) instead starts a network of the one
                style_image at the universal network's answer for it; its decoder trains
                (fst/training/universal_base.py, docs/universal.md).
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
            temporal_weight: weight of the temporal-stability term (fst/losses/temporal.py): stylizing a
                randomly moved, noisy copy of each crop must give the stylized crop moved the same way, so
                the network flickers less on video; it costs one more pass of the transformer per step.
                0 (the default) leaves it out; docs/video.md measures the weights.
            pooling: ``max`` or ``avg`` pooling inside VGG.
            vgg_weights: explicit VGG weights file (default: cache, then torchvision, then the offline package).
            channels: base width of the transformer network (32 = the classic 1.68 M parameters).
            n_residual: residual blocks in the transformer network.
            output: ``linear`` (0-255 in and out, unbounded while training, clamped when stylizing) or
                ``sigmoid`` (outputs in (0, 1); leaves blobs where its gradient vanishes, fst/models/transformer.py).
            output_gain: the linear output reads its last conv in units of 255/output_gain: 1 is the classic
                recipe's, whose output learns 64x slower than a sigmoid's; 4 reached the painting's colours
                within 100 steps (fst/models/transformer.py).
            grey_start: start the linear output at mid-grey rather than near black (PyTorch's default
                init, which the classic recipe keeps; fst/models/transformer.py).
            net: ``johnson`` (the classic network) or ``mobile`` (its residual blocks' convs depthwise-separable:
                fewer multiply-adds; fst/models/separable.py, docs/benchmarks.md has the speed-quality curve).
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
                            ("tv_weight", tv_weight), ("temporal_weight", temporal_weight), ("n_residual", n_residual), ("preview_images", preview_images),
                            ("style_size", style_size), *(("style_layer_weights", w) for w in style_layer_weights or [])):
            at_least(name, value, 0)
        at_least("channels", channels, 1)
        self.min_side = min_image_side(arch, style_layers, content_layer)
        if style_size:  # 0 keeps the style image as it is
            self.check_image_side("style_size", style_size)
        if optimizer not in ("adam", "adamw"):
            raise FstError(f"unknown optimizer {optimizer!r} (choose adam or adamw)")
        if base_checkpoint and optimizer != "adam":
            raise FstError("adding styles to a base_checkpoint trains with adam: adamw's weight decay would move "
                           "the styles it keeps")
        losses.get(style_loss)  # fail on a bad name before any weights load
        losses.get_content(content_loss)
        if style_assignment not in ASSIGNMENTS:
            raise FstError(f"unknown style_assignment {style_assignment!r} (choose from {', '.join(ASSIGNMENTS)})")
        self.style_paths = [resolve_style_path(s) for s in (style_images or [style_image])]
        self.criterion = PerceptualLoss(style_loss, arch, style_layers, style_layer_weights, content_layer,
                                        content_weight, style_weight, tv_weight, pooling, vgg_weights, content_loss)
        self.n_frozen_styles = 0
        base_names: list[str] = []
        base_ckpt = load_model_checkpoint(resolve_model_path(base_checkpoint)) if base_checkpoint else {}
        if is_universal(base_ckpt.get("fst")):
            self.transformer = universal_base.bound_network(base_ckpt, self.style_paths, base_checkpoint)
        elif base_checkpoint:
            base, base_names = self._load_base(base_ckpt, base_checkpoint)
            self.transformer = with_new_styles(base, len(self.style_paths)).train()
            self._freeze_all_but_new_styles()
        else:
            self.transformer = TransformerNet(channels, n_residual, output, output_gain, grey_start,
                                              n_styles=len(self.style_paths), net=net)
        self.style_names = base_names + [p.stem for p in self.style_paths]
        if len(set(self.style_names)) != len(self.style_names):
            raise FstError(f"two styles share a name in {self.style_names}: give each painting a distinct file name")
        if channels_last:
            self.to(memory_format=torch.channels_last)
        # A compiled bound method, not a compiled module: an OptimizedModule attribute would register
        # a second copy of the weights (`_orig_mod.*`) in every checkpoint.
        self._forward = inductor_cache.compiled(self.transformer.forward) if compile else self.transformer.forward
        self.strict_loading = False  # checkpoints leave out the frozen VGG (it comes from the weights cache)
        self._skipped = 0
        self._last_step_time: float | None = None
        self._previews: list[list[torch.Tensor]] = []  # per batch: photos, then each style's outputs

    def _load_base(self, ckpt: dict[str, Any], path: str) -> tuple[TransformerNet, list[str]]:
        """The base checkpoint's network and style names; its style statistics become this
        criterion's first targets."""
        net, meta = fst_checkpoint.transformer_from_checkpoint(ckpt, path)
        if meta.get("style_loss") != self.style_loss.name:
            raise FstError(f"{path}: trained with style loss {meta.get('style_loss')!r}; add styles to it with the "
                           f"same loss (--model.style_loss {meta.get('style_loss')})")
        state = fst_checkpoint.upgrade_state(ckpt["state_dict"])
        self.criterion.targets.shape_like(state, fst_checkpoint.TARGETS)
        self.criterion.targets.load_state_dict({k[len(fst_checkpoint.TARGETS):]: v for k, v in state.items()
                                                if k.startswith(fst_checkpoint.TARGETS)})
        names = fst_checkpoint.style_names(meta, path)
        layers = sorted({key.split(".", 1)[1].split("__")[0] for key, _ in self.criterion.targets.named_buffers()})
        if layers != sorted(self.criterion.style_layers):
            raise FstError(f"{path}: its style statistics are of layers {layers}; add styles to it with the same "
                           f"arch and style_layers (these are {sorted(self.criterion.style_layers)})")
        if len(self.criterion.targets) != len(names):
            raise FstError(f"{path}: holds statistics of {len(self.criterion.targets)} styles for {len(names)} styles")
        self.n_frozen_styles = len(names)
        return net, names

    def _freeze_all_but_new_styles(self) -> None:
        """Only the new styles' rows of every conditional norm learn: the rest gets no gradient, and
        a zero gradient leaves a weight exactly where it is under Adam (both moments stay 0)."""
        self.transformer.requires_grad_(False)
        keep = self.n_frozen_styles
        for norm in self.transformer.style_norms():
            for param in (norm.weight, norm.bias):
                param.requires_grad_(True)
                param.register_hook(lambda g: torch.cat([torch.zeros_like(g[:keep]), g[keep:]]))

    def check_image_side(self, name: str, side: int) -> None:
        """Refuse images (crops, previews, the style) of a side this model cannot take."""
        if side < self.min_side:
            raise FstError(f"{name} must be >= {self.min_side} for {self.hparams.arch} up to its deepest loss layer"
                           f" (each VGG pool halves it), got {side}")

    # --- setup ---------------------------------------------------------------------------------

    @property
    def n_styles(self) -> int:
        return self.transformer.n_styles

    @property
    def style_loss(self) -> losses.StyleLoss:
        """The style loss's registry entry (name, family, weight)."""
        return self.criterion.loss

    def setup(self, stage: str) -> None:
        # Runs before a checkpoint is restored: take the statistics from the style images when they
        # are all there; when resuming, the checkpoint's buffers replace them (or provide them if not).
        todo = self.style_paths[len(self.criterion.targets) - self.n_frozen_styles:]
        if len(self.criterion.targets) < self.n_styles and all(p.is_file() for p in todo):
            for path in todo:
                self.criterion.add_style(load_style(path, self.hparams.style_size, self.min_side))

    def check_style_files(self) -> None:
        """Every painting to train on is a readable image of a size the loss takes (before a run
        creates any folder)."""
        for path in self.style_paths[len(self.criterion.targets) - self.n_frozen_styles:]:
            if not path.is_file():
                raise FstError(f"{path}: style image not found")
            load_style(path, self.hparams.style_size, self.min_side)

    def _require_style(self) -> None:
        if len(self.criterion.targets) < self.n_styles:
            path = next((p for p in self.style_paths if not p.is_file()), self.style_paths[0])
            raise FstError(f"{path}: style image not found" if not path.is_file() else
                           f"{path}: no style statistics could be computed")

    def on_validation_start(self) -> None:
        self._require_style()

    def on_fit_start(self) -> None:
        self._require_style()
        # The VGG (and a universal network's encoder) are frozen in eval mode on purpose.
        console.frozen_in_eval(torch.nn.ModuleList([self.criterion, *universal_base.frozen(self.transformer)]))
        tb = tensorboard_of(self)
        for path in self.style_paths if tb is not None else []:
            if path.is_file():
                tb.add_image("style" if self.n_styles == 1 else f"style/{path.stem}", load_style(path, 256)[0],
                             self.global_step)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Before the state dict loads: buffers for every style statistic the checkpoint holds.
        checkpoint["state_dict"] = fst_checkpoint.upgrade_state(universal_base.loaded(checkpoint["state_dict"]))
        self.criterion.targets.shape_like(checkpoint["state_dict"], fst_checkpoint.TARGETS, self.device)

    def configure_optimizers(self):
        opt = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[self.hparams.optimizer]
        return opt([p for p in self.transformer.parameters() if p.requires_grad], lr=self.hparams.lr)

    # --- steps ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        return self._forward(x, w)

    def styles_for(self, batch_size: int, step: int) -> torch.Tensor | None:
        """Each image's style index for a training step (None: the single style). On the CPU: grouping
        the batch by style and logging per style then need no device sync."""
        if self.n_styles == 1:
            return None
        first, n = self.n_frozen_styles, self.n_styles - self.n_frozen_styles  # adding styles: only new ones train
        if self.hparams.style_assignment == "batch":
            return torch.full((batch_size,), first + step % n)
        return first + (step * batch_size + torch.arange(batch_size)) % n

    def stylize(self, x: torch.Tensor, styles: torch.Tensor | None = None) -> torch.Tensor:
        """The network's output for photos x; styles: each image's style index (None: the single style)."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        w = None if styles is None else torch.nn.functional.one_hot(styles, self.n_styles).float().to(x.device)
        return self(x, w)

    def stylize_and_score(self, x: torch.Tensor, styles: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One forward pass of the training objective: (stylized y, loss terms incl. 'total'); styles:
        each image's style index (None: the single style)."""
        y = self.stylize(x, styles)
        return y, self.criterion(y, x, styles)

    def temporal_term(self, x: torch.Tensor, y: torch.Tensor, styles: torch.Tensor | None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """The temporal-stability loss (fst/losses/temporal.py) of output y for photos x: the network on
        a moved, noisy copy of x against y moved alike."""
        grid = temporal.random_grid(x.shape[0], x.shape[-2], x.shape[-1], generator=generator, device=x.device)
        moved = temporal.with_noise(temporal.move(x, grid), generator=generator)
        return temporal.temporal_loss(self.stylize(moved, styles), temporal.move(y, grid), temporal.inside(grid)).mean()

    def add_temporal(self, terms: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                     styles: torch.Tensor | None, generator: torch.Generator | None = None) -> None:
        """terms['temporal'], and its weighted share added to terms['total']."""
        terms["temporal"] = self.temporal_term(x, y, styles, generator)
        terms["total"] = terms["total"] + self.hparams.temporal_weight * terms["temporal"]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x = batch["image"]
        styles = self.styles_for(x.shape[0], self.global_step)
        y, terms = self.stylize_and_score(x, styles)
        if self.hparams.temporal_weight:
            self.add_temporal(terms, x, y, styles)
        self._log_per_style(terms.pop("style_per_image"), styles, "loss/style_of", x.shape[0])
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
                       "output/mean": y.detach().mean().float()}, batch_size=bs)
        if self._skipped:  # only a run that skipped images shows the chart
            self.log("data/skipped", float(self._skipped), batch_size=bs)
        self.log("lr", self.optimizers().param_groups[0]["lr"], batch_size=bs)
        self._log_throughput(bs)
        return total

    def _log_throughput(self, batch_size: int) -> None:
        now = time.perf_counter()
        if self._last_step_time is not None:
            self.log("perf/images_per_sec", batch_size / max(now - self._last_step_time, 1e-9),
                     prog_bar=True, batch_size=batch_size)
        self._last_step_time = now

    def _log_per_style(self, per_image: torch.Tensor, styles: torch.Tensor | None, tag: str, bs: int) -> None:
        """Each style's mean style loss over its images of the batch, as `tag`/NAME."""
        for k in range(self.n_styles) if styles is not None else []:
            mask = styles == k  # on the CPU (styles_for)
            if mask.any():
                self.log(f"{tag}/{self.style_names[k]}", per_image[mask.to(per_image.device)].mean(),
                         batch_size=int(mask.sum()))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        # Every preview photo in every style: one row of the preview grid per style.
        x = batch["image"]
        bs = x.shape[0]
        # Copied to the host only while the preview grid still needs images.
        preview = sum(p[0].shape[0] for p in self._previews) < self.hparams.preview_images
        outputs, sums = [], {}
        for k in range(self.n_styles):
            styles = None if self.n_styles == 1 else torch.full((bs,), k)
            y, terms = self.stylize_and_score(x, styles)
            # Every run, trained with the term or not, shows the same measure of flicker: a fixed motion per batch.
            self.add_temporal(terms, x, y, styles, torch.Generator().manual_seed(batch_idx))
            self._log_per_style(terms.pop("style_per_image"), styles, "val/style_of", bs)
            if preview:
                outputs.append(y.detach().float().cpu())
            for key, v in terms.items():
                if "/" not in key:
                    sums[key] = sums.get(key, 0.0) + v / self.n_styles
        self.log_dict({f"val/{k}": v for k, v in sums.items()}, batch_size=bs)
        if preview:
            self._previews.append([x.detach().float().cpu(), *outputs])

    @property
    def previews(self) -> list[list[torch.Tensor]]:
        """This validation's preview batches so far: per batch, the photos, then each style's outputs (CPU)."""
        return self._previews

    def on_validation_epoch_end(self) -> None:
        tb = tensorboard_of(self)
        if tb is not None and self._previews:
            rows = [torch.cat(row)[: self.hparams.preview_images] for row in zip(*self._previews)]
            grid = make_grid(torch.cat(rows).clamp(0, 1), nrow=rows[0].shape[0], padding=2)
            tb.add_image("preview/photos_vs_stylized", grid, self.global_step)
        self._previews = []

    # --- checkpoints ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                    if not k.startswith("criterion.vgg.")}
        meta = dict(styles=list(self.style_names), style_name="+".join(self.style_names),
                    style_loss=self.style_loss.name, global_step=int(self.global_step),
                    precision=str(self.trainer.precision) if self._trainer is not None else None)
        if universal_base.frozen(self.transformer):  # fine-tuned from a universal network: saved as one
            universal_base.save(checkpoint, self.transformer, **meta)
        else:
            checkpoint["fst"] = fst_checkpoint.fst_metadata(self.transformer, **meta)

