"""The frozen ImageNet VGG loss network: named activations from an RGB [0, 1] image.

Layer names follow the paper convention: ``conv{block}_{i}``, ``relu{block}_{i}``, ``pool{block}``.
The network is cut right after the deepest requested layer, so asking only for ``relu2_2`` runs
4 convolutions, not 13. It always stays in eval mode with no gradients to its weights (gradients
still flow to the *input*: that is how the style network learns).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fst.core.errors import FstError
from fst.models.vgg_arch import layer_names
from fst.models.weights import Weights, resolve

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

DEFAULT_LAYERS = {
    "vgg16": ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),  # Johnson et al. 2016
    "vgg19": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),  # Gatys et al. / Li et al.
}


class Normalize(nn.Module):
    """Maps RGB [0, 1] to what the weights were trained on (torchvision or Caffe convention)."""

    def __init__(self, convention: str):
        super().__init__()
        self.caffe = convention == "caffe"
        if self.caffe:  # BGR, 0-255, mean subtraction, no std
            mean, std = torch.tensor(CAFFE_MEAN_BGR), torch.ones(3)
        else:
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.caffe:
            x = x.flip(1) * 255.0
        return (x - self.mean) / self.std


def _module(name: str, index: int, state_dict: dict[str, torch.Tensor], pool: type[nn.Module]) -> nn.Module:
    if name.startswith("pool"):
        return pool(2, 2)
    if name.startswith("relu"):
        return nn.ReLU(inplace=False)  # returned activations must not be overwritten by the next layer
    weight, bias = state_dict[f"{index}.weight"], state_dict[f"{index}.bias"]
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
    conv.load_state_dict({"weight": weight, "bias": bias})
    return conv


class VGGFeatures(nn.Module):
    """Frozen VGG16/VGG19 returning ``{layer_name: activation}`` for the requested layers."""

    def __init__(self, arch: str = "vgg16", layers: tuple[str, ...] | list[str] | None = None,
                 pooling: str = "max", weights: str | Path | Weights | None = None):
        super().__init__()
        names = layer_names(arch)
        self.layers = tuple(layers or DEFAULT_LAYERS[arch])
        unknown = [name for name in self.layers if name not in names]
        if unknown:
            raise FstError(f"unknown {arch} layer(s) {', '.join(unknown)} (valid: {', '.join(names)})")
        if pooling not in ("max", "avg"):
            raise FstError(f"unknown pooling {pooling!r} (choose max or avg)")
        w = weights if isinstance(weights, Weights) else resolve(arch, weights)
        self.arch, self.source, self.convention = arch, w.source, w.convention
        depth = max(names.index(name) for name in self.layers) + 1
        convs_needed = sum(name.startswith("conv") for name in names[:depth])
        if convs_needed > len(w.state_dict) // 2:
            raise FstError(f"{w.path or w.source}: holds only the first {len(w.state_dict) // 2} convs of {arch}; "
                           f"layer {names[depth - 1]} needs {convs_needed}")
        self.names = names[:depth]
        self.normalize = Normalize(w.convention)
        pool = nn.AvgPool2d if pooling == "avg" else nn.MaxPool2d
        self.features = nn.Sequential(*[_module(name, i, w.state_dict, pool) for i, name in enumerate(self.names)])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGFeatures":
        return super().train(False)  # frozen: never leaves eval mode

    def forward(self, x: torch.Tensor, layers: tuple[str, ...] | list[str] | None = None) -> dict[str, torch.Tensor]:
        """Activations of `layers` (default: all requested at construction); stops after the deepest."""
        wanted = set(self.layers if layers is None else layers)
        out: dict[str, torch.Tensor] = {}
        h = self.normalize(x)
        for name, module in zip(self.names, self.features):
            h = module(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out
