"""The perceptual criterion: frozen VGG + content loss + a style loss over several layers + TV.

    total = content_weight · L_content(φ_c(y), φ_c(x))          (relative, or the classic recipe's MSE)
          + style_weight · w_loss · Σ_l λ_l · L_style(φ_l(y), target_l)
          + tv_weight · L_tv(y)

The style targets (statistics of the style image, computed once) live in `StyleTargets` as buffers,
so a checkpoint carries them and resuming or exporting never needs the style image file again.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fst import losses
from fst.core.errors import FstError
from fst.models.vgg import DEFAULT_LAYERS, VGGFeatures

DEFAULT_CONTENT_LAYER = {"vgg16": "relu2_2", "vgg19": "relu4_1"}
# Weights of the default style layers. On untouched photos VGG16's relu4_3 starts 5-18 times
# further from the painting (relative error) than relu1_2/relu2_2 (starry_night, the_scream,
# great_wave): at equal weights it rules every relative loss, and the colours and strokes that the
# shallow layers carry arrive last. At 0.1 the same run moved style (on the other VGG) 0.47 -> 0.34
# for gram and 0.30 -> 0.28 for mean_std at a lower content distance (docs/loss_study.md). VGG19's
# layers were not measured and keep equal weights.
DEFAULT_LAYER_WEIGHTS = {"vgg16": (1.0, 1.0, 1.0, 0.1), "vgg19": (1.0, 1.0, 1.0, 1.0, 1.0)}


class StyleStats(nn.Module):
    """One style's statistics, as buffers ``{layer}__{stat}``."""

    def stats(self, layer: str) -> losses.Stats:
        prefix = f"{layer}__"
        return {k[len(prefix):]: v for k, v in self.named_buffers(recurse=False) if k.startswith(prefix)}

    def set(self, layer: str, stats: losses.Stats) -> None:
        for k, v in stats.items():
            self.register_buffer(f"{layer}__{k}", v.detach().float().contiguous())


class StyleTargets(nn.ModuleList):
    """The statistics of every style, style k at ``{k}.{layer}__{stat}``. Their shapes come from the
    style images or, when resuming, from the checkpoint (`shape_like`), so no style image is needed."""

    def add(self) -> StyleStats:
        self.append(StyleStats())
        return self[-1]

    def stats(self, style: int, layer: str) -> losses.Stats:
        return self[style].stats(layer)

    def is_empty(self) -> bool:
        return len(self) == 0

    def shape_like(self, state: dict[str, torch.Tensor], prefix: str, device: torch.device | str = "cpu") -> None:
        """Make this hold buffers named and shaped as `state`'s entries under `prefix` (to be loaded next)."""
        while len(self):
            del self[len(self) - 1]
        for key, value in state.items():
            if key.startswith(prefix):
                style, name = key[len(prefix):].split(".", 1)
                while len(self) <= int(style):
                    self.add()
                self[int(style)].register_buffer(name, torch.empty_like(value, device=device))


def flat(f: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, N)."""
    return f.flatten(2)


class PerceptualLoss(nn.Module):
    def __init__(self, style_loss: str = "inter", arch: str = "vgg16", style_layers: list[str] | None = None,
                 style_layer_weights: list[float] | None = None, content_layer: str | None = None,
                 content_weight: float = 1.0, style_weight: float = 1.0, tv_weight: float = 1e-4,
                 pooling: str = "max", vgg_weights: str | Path | None = None, content_loss: str = "relative"):
        super().__init__()
        self.loss = losses.get(style_loss)
        self.content_loss = losses.get_content(content_loss)
        self.style_layers = list(style_layers or DEFAULT_LAYERS[arch])
        default = DEFAULT_LAYER_WEIGHTS[arch] if not style_layers else [1.0] * len(self.style_layers)
        weights = style_layer_weights or default
        if len(weights) != len(self.style_layers):
            raise FstError(f"style_layer_weights has {len(weights)} entries for {len(self.style_layers)} style layers")
        self.layer_weights = dict(zip(self.style_layers, [float(w) for w in weights]))
        self.content_layer = content_layer or DEFAULT_CONTENT_LAYER[arch]
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.vgg = VGGFeatures(arch, [*self.style_layers, self.content_layer], pooling, vgg_weights)
        self.targets = StyleTargets()

    @torch.no_grad()
    def add_style(self, style: torch.Tensor) -> None:
        """Compute and store, as the next style, the statistics of one image (1, 3, H, W) in [0, 1]."""
        feats = self.vgg(style.to(next(self.vgg.parameters()).device))
        target = self.targets.add()
        for layer in self.style_layers:
            target.set(layer, self.loss.stats(flat(feats[layer])[0]))

    def style_terms(self, feats: dict[str, torch.Tensor], styles: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per layer, each image's style loss (B,) against its own style's statistics (styles: (B,)
        style indices, on the CPU so that grouping by them needs no device sync; None: every image
        is style 0)."""
        if self.targets.is_empty():
            raise FstError("style targets are not set: call add_style() or load a checkpoint")
        if styles is None:
            return {layer: self.loss(flat(feats[layer]), self.targets.stats(0, layer)) for layer in self.style_layers}
        device = feats[self.style_layers[0]].device
        # One loss call per style present in the batch, on that style's rows (found once, not per layer).
        groups = [(k, (styles == k).nonzero().squeeze(1).to(device)) for k in styles.unique().tolist()]
        out = {}
        for layer in self.style_layers:
            f = flat(feats[layer])
            per_image = f.new_zeros(f.shape[0], dtype=torch.float32)
            for k, rows in groups:
                per_image = per_image.index_put((rows,), self.loss(f[rows], self.targets.stats(k, layer)).float())
            out[layer] = per_image
        return out

    def forward(self, y: torch.Tensor, x: torch.Tensor, styles: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Losses for output y given photo x (and each image's style index, when there are several);
        'total' is what to minimise, the rest is for logging. 'style_per_image' (B,) is each image's
        weighted style loss, for logging per style."""
        fy = self.vgg(y)
        with torch.no_grad():
            fx = self.vgg(x, [self.content_layer])[self.content_layer]  # no deeper than needed
        per_layer = self.style_terms(fy, styles)
        with torch.autocast(y.device.type, enabled=False):
            content = self.content_loss(fy[self.content_layer], fx)
            per_image = self.loss.weight * sum(self.layer_weights[k] * v.float() for k, v in per_layer.items())
            style = per_image.mean()
            tv = losses.tv_loss(y)
        total = self.content_weight * content + self.style_weight * style + self.tv_weight * tv
        out = {"total": total, "content": content, "style": style, "tv": tv}
        out.update({f"style/{k}": v.mean() for k, v in per_layer.items()})
        out["style_per_image"] = per_image.detach()
        return out
