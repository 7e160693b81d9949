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
from fst.errors import FstError
from fst.vgg import DEFAULT_LAYERS, VGGFeatures

DEFAULT_CONTENT_LAYER = {"vgg16": "relu2_2", "vgg19": "relu4_1"}
# Weights of the default style layers. On untouched photos VGG16's relu4_3 starts 5-18 times
# further from the painting (relative error) than relu1_2/relu2_2 (starry_night, the_scream,
# great_wave): at equal weights it rules every relative loss, and the colours and strokes that the
# shallow layers carry arrive last. At 0.1 the same run moved style (on the other VGG) 0.47 -> 0.34
# for gram and 0.30 -> 0.28 for mean_std at a lower content distance (docs/loss_study.md). VGG19's
# layers were not measured and keep equal weights.
DEFAULT_LAYER_WEIGHTS = {"vgg16": (1.0, 1.0, 1.0, 0.1), "vgg19": (1.0, 1.0, 1.0, 1.0, 1.0)}


class StyleTargets(nn.Module):
    """Buffers ``{layer}.{stat}`` holding the style statistics; shapes come from the style image or,
    when resuming, from the checkpoint (buffers are created on load, so no style image is needed)."""

    def stats(self, layer: str) -> losses.Stats:
        prefix = f"{layer}__"
        return {k[len(prefix):]: v for k, v in self._buffers.items() if k.startswith(prefix) and v is not None}

    def set(self, layer: str, stats: losses.Stats) -> None:
        for k, v in stats.items():
            self.register_buffer(f"{layer}__{k}", v.detach().float().contiguous())

    def is_empty(self) -> bool:
        return not self._buffers

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for key, value in state_dict.items():
            if key.startswith(prefix) and "." not in key[len(prefix):]:
                self.register_buffer(key[len(prefix):], value.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


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
    def set_style(self, style: torch.Tensor) -> None:
        """Compute and store the style statistics of one image (1, 3, H, W) in [0, 1]."""
        feats = self.vgg(style.to(next(self.vgg.parameters()).device))
        for layer in self.style_layers:
            self.targets.set(layer, self.loss.stats(flat(feats[layer])[0]))

    def style_terms(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.targets.is_empty():
            raise FstError("style targets are not set: call set_style() or load a checkpoint")
        return {layer: self.loss(flat(feats[layer]), self.targets.stats(layer)).mean() for layer in self.style_layers}

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses for output y given photo x; 'total' is what to minimise, the rest is for logging."""
        fy = self.vgg(y)
        with torch.no_grad():
            fx = self.vgg(x, [self.content_layer])[self.content_layer]  # no deeper than needed
        per_layer = self.style_terms(fy)
        with torch.autocast(y.device.type, enabled=False):
            content = self.content_loss(fy[self.content_layer], fx)
            style = self.loss.weight * sum(self.layer_weights[k] * v for k, v in per_layer.items())
            tv = losses.tv_loss(y)
        total = self.content_weight * content + self.style_weight * style + self.tv_weight * tv
        out = {"total": total, "content": content, "style": style, "tv": tv}
        out.update({f"style/{k}": v for k, v in per_layer.items()})
        return out
