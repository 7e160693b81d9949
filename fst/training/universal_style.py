"""A universal network's style objective: AdaIN's training (Huang & Belongie 2017) with fst's losses.

    t   = transform(E(x), stats(E(p)))       E the frozen encoder, x a photo, p a painting
    y   = decoder(t)
    content = ‖E(y) − t‖² / ‖t‖²                          at the transform's layer
    style   = w_loss · Σ_l λ_l · L_style(φ_l(y), φ_l(p))  φ the loss network (fst/models/vgg.py)

L_style is any loss of the registry (fst/losses/style.py), chosen as the per-painting module chooses
it (``inter`` / ``intra`` or a name), over the same default layers and layer weights
(fst/losses/criterion.py); its target statistics are taken from each batch's paintings instead of
being stored once. The decoder learns to paint, not only to invert the encoder: AdaIN's recipe.

The loss network is no `nn.Module` attribute of the LightningModule on purpose: a universal
checkpoint holds the network alone, and its size is bounded by that network's parameters
(fst/artefacts/universal_checkpoint.py). It is built from the VGG weights at setup, as the encoder is.
"""

from __future__ import annotations

import torch

from fst import losses
from fst.core.errors import FstError
from fst.losses.criterion import DEFAULT_LAYER_WEIGHTS, flat
from fst.models.universal import UniversalNet
from fst.models.vgg import DEFAULT_LAYERS, VGGFeatures
from fst.models.vgg_arch import min_input_side

ARCH = "vgg16"  # the loss network: the per-painting default, and the encoder's own architecture


def relative_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a − b‖² / ‖b‖², in fp32: dimensionless, so every layer and the pixels weigh alike."""
    a, b = a.float(), b.float()
    return (a - b).pow(2).mean() / b.pow(2).mean().clamp_min(1e-8)


class StyleObjective:
    """The content and style terms of one batch of photos and paintings (see the module docstring)."""

    def __init__(self, style_loss: str = "intra", style_layers: list[str] | None = None,
                 style_layer_weights: list[float] | None = None, vgg_weights: str | None = None):
        self.loss = losses.get(style_loss)
        self.layers = list(style_layers or DEFAULT_LAYERS[ARCH])
        weights = style_layer_weights or (DEFAULT_LAYER_WEIGHTS[ARCH] if not style_layers else [1.0] * len(self.layers))
        if len(weights) != len(self.layers):
            raise FstError(f"style_layer_weights has {len(weights)} entries for {len(self.layers)} style layers")
        self.layer_weights = [float(w) for w in weights]
        self.min_side = min_input_side(ARCH, self.layers)
        self.vgg_weights = vgg_weights
        self.vgg: VGGFeatures | None = None

    def load(self) -> None:
        """The loss network's weights (cache, torchvision, then the offline package); unknown layers fail here."""
        if self.vgg is None:
            self.vgg = VGGFeatures(ARCH, self.layers, weights=self.vgg_weights)

    def network(self, device: torch.device) -> VGGFeatures:
        self.load()
        if next(self.vgg.parameters()).device != device:
            self.vgg = self.vgg.to(device)
        return self.vgg

    def terms(self, net: UniversalNet, x: torch.Tensor, paintings: torch.Tensor) -> dict[str, torch.Tensor]:
        """content, style and each layer's style term (``style/<layer>``) for photos x (B, 3, H, W) and
        paintings (B or 1, 3, h, w), one per photo or one for all."""
        if paintings.shape[0] not in (1, x.shape[0]):
            raise FstError(f"{paintings.shape[0]} paintings for {x.shape[0]} photos: give one per photo or one")
        vgg = self.network(x.device)
        with torch.no_grad():
            f, sizes = net.encoder(x)
            s, _ = net.encoder(paintings.to(x.dtype))
            t = self.transformed(net, f, s)
            p = vgg(paintings.to(x.dtype))
            targets = [{layer: self.loss.stats(flat(p[layer])[i]) for layer in self.layers}
                       for i in range(paintings.shape[0])]
        y = net.decoder(t, sizes)
        fy, _ = net.encoder(y)
        feats = vgg(y)
        per_layer = {layer: self.distance(flat(feats[layer]), [tg[layer] for tg in targets]) for layer in self.layers}
        style = self.loss.weight * sum(w * v for w, v in zip(self.layer_weights, per_layer.values()))
        return {"content": relative_mse(fy, t), "style": style, **{f"style/{k}": v for k, v in per_layer.items()}}

    @staticmethod
    def transformed(net: UniversalNet, f: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Each photo's features with its painting's statistics (one painting: the same for all)."""
        if s.shape[0] == 1:
            return net.transform(f, net.transform.stats(s))
        return torch.cat([net.transform(f[i:i + 1], net.transform.stats(s[i:i + 1])) for i in range(f.shape[0])])

    def distance(self, f: torch.Tensor, targets: list[losses.Stats]) -> torch.Tensor:
        """The mean over photos of each one's style loss against its own painting's statistics."""
        if len(targets) == 1:
            return self.loss(f, targets[0]).float().mean()
        return torch.stack([self.loss(f[i:i + 1], t)[0].float() for i, t in enumerate(targets)]).mean()
