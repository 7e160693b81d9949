"""A universal network's checkpoint, read as data (fst/models/universal.py).

    {"state_dict": {"net.encoder.*": Tensor, "net.decoder.*": Tensor, ...}, "global_step": int, ...,
     "fst": {"format": 1, "version": str, "kind": "universal",
             "universal": {"transform": str, "layer": str, "width": float}, "global_step": int}}

The encoder's weights are in the file: the decoder only inverts the features it was trained on. As
for a per-painting checkpoint (fst/artefacts/checkpoint.py), the file is read through
`fst.untrusted.torch_files`, and its metadata, every tensor's name, shape and dtype, and the bytes its
storages hold are checked against a network of its config on the meta device before a weight is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fst.artefacts.checkpoint import FORMAT, SLACK_BYTES, weights_problem
from fst.artefacts.metadata import check_metadata
from fst.core.errors import FstError
from fst.models import style_transforms
from fst.models.universal import CONFIG_KEYS, KIND, LAYERS, UniversalNet
from fst.untrusted.plain_data import check_plain, describe
from fst.untrusted.torch_files import read_torch

PREFIX = "net."


def universal_metadata(net: UniversalNet, **meta: Any) -> dict[str, Any]:
    from fst import __version__

    return {"format": FORMAT, "version": __version__, "kind": KIND, "universal": dict(net.config), **meta}


def is_universal(meta: Any) -> bool:
    """Whether a checkpoint's or artefact's fst metadata (already plain data) is a universal network's."""
    return isinstance(meta, dict) and meta.get("kind") == KIND


def universal_config(config: Any, origin: str) -> dict[str, Any]:
    """`config` if it is a UniversalNet config as fst writes it: exactly its keys, a known transform
    and layer, a width in (0, 4]."""
    ok = (isinstance(config, dict) and sorted(config) == sorted(CONFIG_KEYS)
          and config["transform"] in style_transforms.TRANSFORMS and config["layer"] in LAYERS
          and type(config["width"]) in (int, float) and 0 < config["width"] <= 4)
    if not ok:
        raise FstError(f"{origin}: universal network config {describe(config)} is not a transform in "
                       f"{tuple(style_transforms.TRANSFORMS)}, a layer in {LAYERS} and a width in (0, 4]")
    return {**config, "width": float(config["width"])}


def check_universal(ckpt: Any, origin: str, storage_bytes: int) -> None:
    """Refuse a file that is not a universal network's checkpoint as fst writes it."""
    check_plain(ckpt, origin, "checkpoint", tensors=True)
    meta = ckpt.get("fst") if isinstance(ckpt, dict) else None
    if not is_universal(meta) or not isinstance(ckpt.get("state_dict"), dict):
        raise FstError(f"{origin}: not a universal network's checkpoint (fst fit --config configs/universal.yaml "
                       "writes those); a per-painting network takes no --style-image")
    if meta.get("format") != FORMAT:
        raise FstError(f"{origin}: fst checkpoint format {describe(meta.get('format'))}, this fst reads {FORMAT}")
    check_metadata(meta, origin)
    config = universal_config(meta.get("universal"), origin)
    state = {k[len(PREFIX):]: v for k, v in ckpt["state_dict"].items() if isinstance(k, str) and k.startswith(PREFIX)}
    with torch.device("meta"):
        wanted = UniversalNet(**config).state_dict()
    problem = weights_problem(state, wanted)
    if problem:
        raise FstError(f"{origin}: universal network weights do not match its config {config}: {problem}")
    params = sum(v.numel() for v in wanted.values())
    bound = 4 * params * 4 + SLACK_BYTES  # weights, Adam's two moments, one spare copy
    if storage_bytes > bound:
        raise FstError(f"{origin}: refused: its tensors hold {storage_bytes} bytes, more than a universal network "
                       f"of {params} parameters can need ({bound})")


def load_universal(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, once `check_universal` passed on its meta-device form."""
    path = Path(path)
    if not path.is_file():
        raise FstError(f"{path}: checkpoint not found")
    return read_torch(path, str(path), "checkpoint", lambda ckpt, size: check_universal(ckpt, str(path), size))


def universal_from_checkpoint(ckpt: str | Path | dict[str, Any]) -> tuple[UniversalNet, dict[str, Any]]:
    """(eval-mode fp32 UniversalNet with the trained weights, the checkpoint's fst metadata)."""
    if not isinstance(ckpt, dict):
        ckpt = load_universal(ckpt)
    meta = dict(ckpt["fst"])
    meta.setdefault("global_step", int(ckpt.get("global_step", 0)))
    net = UniversalNet(**universal_config(meta["universal"], "checkpoint"))
    net.load_state_dict({k[len(PREFIX):]: v.float() for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)})
    return net.eval(), meta


def payload(net: UniversalNet, **meta: Any) -> dict[str, Any]:
    """The smallest dict `universal_from_checkpoint` accepts: the weights and fst's metadata, no
    optimizer state (what a shipped network holds)."""
    state = {PREFIX + k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return {"state_dict": state, "global_step": meta.get("global_step", 0), "fst": universal_metadata(net, **meta)}
