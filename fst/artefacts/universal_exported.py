"""What an artefact of a universal network must hold (`fst export` of a universal checkpoint, written
by `fst.artefacts.universal_export`), checked as data when `fst.artefacts.exported` reads it.

Two kinds, told apart by the metadata's ``painting``:

- **statistics as an input** (``painting`` null): ``model(x, stats)``, stats the painting's (K, C)
  fp32 statistics as `UniversalNet.style_stats` computes them (``stats_shape``); its weights are keyed
  as `UniversalNet.state_dict()`, the encoder's included. fst computes a painting's statistics with
  those encoder weights, read out of the artefact as data, in its own `Encoder` and transform: the
  artefact is one file, and anyone can run it without fst given a stats tensor.
- **one painting baked in** (``painting``: file name, sha256 of the file, style size): ``model(x)``, as a
  per-painting artefact is called; weights keyed as `BoundStyles.state_dict()`: ``stats`` (1, K, C)
  and ``net.*``.

As for a per-painting artefact, fst never runs the file's code or graph: it checks the metadata, every
weight's name and shape against a network of the metadata's config on the meta device, the digest and
finiteness (`fst.artefacts.exported.check_exported`), and runs its own `UniversalNet` with them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fst.artefacts.checkpoint import check_finite, weights_problem
from fst.artefacts.metadata import MAX_NAME, SHA256
from fst.artefacts.universal_checkpoint import universal_config
from fst.core.errors import FstError
from fst.models import style_transforms
from fst.models.universal import BoundStyles, UniversalNet
from fst.untrusted.plain_data import describe

# Non-persistent buffers (ImageNet's mean and std) a traced module keeps as attributes: constants of
# the architecture, not weights. fst uses its own; they are neither checked nor part of the digest.
CONSTANTS = ("encoder.normalize.mean", "encoder.normalize.std")


def is_baked(meta: dict[str, Any]) -> bool:
    """Whether a universal artefact has one painting baked in (else it takes the statistics as an input)."""
    return meta.get("painting") is not None


def stats_shape(config: dict[str, Any]) -> list[int]:
    """[K, C]: the shape of one painting's statistics for a network of `config`."""
    with torch.device("meta"):
        channels = UniversalNet(**config).encoder.channels
    return [style_transforms.stats_rows(config["transform"], channels), channels]


def check_universal_meta(meta: dict[str, Any], origin: str) -> dict[str, Any]:
    """The network config of a universal artefact's metadata, once it, the statistics' shape and the
    painting's record are what fst writes."""
    config = universal_config(meta.get("universal"), origin)
    shape = meta.get("stats_shape")
    if shape != stats_shape(config):
        shown = shape if isinstance(shape, list) and len(shape) <= 4 and all(type(v) is int for v in shape) else describe(shape)
        raise FstError(f"{origin}: fst metadata with stats_shape {shown}; a universal "
                       f"{config['transform']} network at {config['layer']} has statistics of shape {stats_shape(config)}")
    painting = meta.get("painting")
    if painting is not None and not (
            isinstance(painting, dict) and type(painting.get("file")) is str and 0 < len(painting["file"]) <= MAX_NAME
            and type(painting.get("sha256")) is str and SHA256.fullmatch(painting["sha256"])
            and type(painting.get("style_size")) is int and 0 <= painting["style_size"] <= 1 << 20):
        raise FstError(f"{origin}: fst metadata whose painting {describe(painting)} is not a file name, a sha256 and "
                       "a style size")
    return config


def _wanted(meta: dict[str, Any], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        net = UniversalNet(**config)
        return BoundStyles(net, torch.empty(1, *stats_shape(config))).state_dict() if is_baked(meta) else net.state_dict()


def check_universal_weights(meta: dict[str, Any], state: dict[str, Any], origin: str) -> dict[str, Any]:
    """`state` without the architecture's constants, once every weight's name and shape is the one a
    network of the metadata's config holds (nothing is computed from a tensor before)."""
    config = check_universal_meta(meta, origin)
    prefix = "net." if is_baked(meta) else ""
    state = {k: v for k, v in state.items() if k not in {prefix + c for c in CONSTANTS}}
    problem = weights_problem(state, _wanted(meta, config))
    if problem:
        raise FstError(f"{origin}: universal network weights do not match its metadata {config}: {problem}")
    return state


def universal_from_state(meta: dict[str, Any], state: dict[str, torch.Tensor], origin: str) -> nn.Module:
    """An eval-mode fp32 `UniversalNet` (statistics as an input) or `BoundStyles` (one painting baked
    in) holding `state`, once `check_universal_weights` and `check_finite` passed."""
    state = check_universal_weights(meta, state, origin)
    check_finite(state, origin)
    net = UniversalNet(**check_universal_meta(meta, origin))
    model: nn.Module = BoundStyles(net, torch.zeros(1, *meta["stats_shape"])) if is_baked(meta) else net
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def stats_checked(run: Callable[..., torch.Tensor], meta: dict[str, Any], origin: str) -> Callable[..., torch.Tensor]:
    """`run(x, stats)` that refuses, in one line, statistics of another shape than the artefact's."""
    shape = tuple(meta["stats_shape"])

    def checked(x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        if len(args) != 1 or not isinstance(args[0], torch.Tensor) or tuple(args[0].shape) != shape:
            got = tuple(args[0].shape) if len(args) == 1 and isinstance(args[0], torch.Tensor) else f"{len(args)} inputs"
            raise FstError(f"{origin}: takes one painting's statistics of shape {shape} (UniversalNet.style_stats), "
                           f"got {got}")
        return run(x, args[0])

    return checked


def universal_onnx_bytes(meta: dict[str, Any], origin: str) -> int:
    """The bytes of weights (twice over in fp32) an ONNX file of this universal network can honestly hold."""
    config = check_universal_meta(meta, origin)
    return 2 * 4 * sum(t.numel() for t in _wanted(meta, config).values())


def onnx_universal_state(meta: dict[str, Any], tensors: dict[str, Any], convs: list[list[str]],
                         initializers: list[str], origin: str) -> dict[str, torch.Tensor]:
    """A universal network's weights read off an ONNX graph: its Conv nodes' (weight, bias) in graph
    order, which is the module order of `UniversalNet` (encoder, then decoder); for a baked painting,
    the one initializer of the statistics' shape (1, K, C)."""
    config = check_universal_meta(meta, origin)
    with torch.device("meta"):  # the layer names only
        names = [n for n, m in UniversalNet(**config).named_modules() if isinstance(m, nn.Conv2d)]
    if len(convs) != len(names):
        raise FstError(f"{origin}: graph has {len(convs)} Conv layers, a universal network of {config} has {len(names)}")
    prefix = "net." if is_baked(meta) else ""
    state = {}
    for name, (weight, bias) in zip(names, convs):
        state[f"{prefix}{name}.weight"] = torch.from_numpy(tensors[weight].copy())
        state[f"{prefix}{name}.bias"] = torch.from_numpy(tensors[bias].copy())
    if is_baked(meta):
        shape = [1, *meta["stats_shape"]]
        found = [n for n in initializers if list(tensors[n].shape) == shape]
        if len(found) != 1:
            raise FstError(f"{origin}: graph holds {len(found)} tensors of the painting's statistics' shape {shape}, not one")
        state["stats"] = torch.from_numpy(tensors[found[0]].copy())
    return state
