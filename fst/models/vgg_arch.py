"""The VGG architectures, defined once: torchvision's layer configs and what follows from them
(layer names, where the convs sit in `features`, each weight's shape, the smallest input that
still reaches a layer). `fst.models.weights` checks files against it, `fst.models.vgg` builds the network from it."""

from __future__ import annotations

from fst.core.errors import FstError

ARCHS = ("vgg16", "vgg19")
# torchvision's layer configs ("D" = VGG16, "E" = VGG19): numbers are conv widths, "M" a pool.
CFGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise FstError(f"unknown VGG arch {arch!r} (choose from {', '.join(ARCHS)})")
    return arch


def conv_indices(arch: str) -> list[int]:
    """Indices of the conv layers inside torchvision's `features` Sequential."""
    indices, i = [], 0
    for v in CFGS[arch]:
        if v == "M":
            i += 1
        else:
            indices.append(i)
            i += 2  # conv, relu
    return indices


def expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    shapes, c_in = {}, 3
    convs = iter(conv_indices(arch))
    for v in CFGS[arch]:
        if v == "M":
            continue
        i = next(convs)
        shapes[f"{i}.weight"] = (int(v), c_in, 3, 3)
        shapes[f"{i}.bias"] = (int(v),)
        c_in = int(v)
    return shapes


def layer_names(arch: str) -> list[str]:
    """Name of each module of torchvision's `features` Sequential, in order."""
    names, block, i = [], 1, 1
    for v in CFGS[check_arch(arch)]:
        if v == "M":
            names.append(f"pool{block}")
            block, i = block + 1, 1
        else:
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
            i += 1
    return names


def min_input_side(arch: str, layers: tuple[str, ...] | list[str]) -> int:
    """The smallest square input side for which every one of `layers` is still >= 1x1: each pool
    halves the side, rounding down. Unknown names are left to VGGFeatures to report."""
    names = layer_names(arch)
    depth = max((names.index(name) + 1 for name in layers if name in names), default=0)
    return 2 ** sum(name.startswith("pool") for name in names[:depth])
