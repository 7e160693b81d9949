"""A universal network's checkpoint, read as data (fst/models/universal.py).

    {"state_dict": {"net.encoder.*": Tensor, "net.decoder.*": Tensor, ...}, "global_step": int, ...,
     "fst": {"format": 1, "version": str, "kind": "universal",
             "universal": {"transform": str, "layer": str, "width": float}, "global_step": int}}

A network fine-tuned to one painting from a universal one (``fst fit --model.base_checkpoint
universal.ckpt``, fst/training/universal_base.py) is a universal checkpoint that also carries that
painting's statistics, bound in (``styles.stats``, (N, K, C) for its N ``styles``), and the statistics
its per-painting loss was scored against (``criterion.targets.<k>.*``, as a per-painting checkpoint's).

The encoder's weights are in the file: the decoder only inverts the features it was trained on. As
for a per-painting checkpoint (fst/artefacts/checkpoint.py), the file is read through
`fst.untrusted.torch_files`, and its metadata, every tensor's name, shape and dtype, and the bytes its
storages hold are checked against a network of its config on the meta device before a weight is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fst.artefacts.checkpoint import (
    BOUND,
    FORMAT,
    SLACK_BYTES,
    STATS_PER_STYLE,
    TARGETS,
    Check,
    check_checkpoint,
    check_statistics,
    load_checkpoint,
    upgrade_state,
    weights_problem,
)
from fst.artefacts.metadata import check_metadata
from fst.core.errors import FstError
from fst.models import style_transforms
from fst.models.universal import CONFIG_KEYS, KIND, LAYERS, UniversalNet
from fst.untrusted.plain_data import check_plain, describe
from fst.untrusted.torch_files import read_torch

PREFIX = "net."
STATS = BOUND  # a fine-tuned network's bound statistics, (N, K, C)
MAX_BOUND = 64  # paintings a file may bind: a fine-tune binds one


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
        net = UniversalNet(**config)
    wanted = net.state_dict()
    problem = weights_problem(state, wanted)
    if problem:
        raise FstError(f"{origin}: universal network weights do not match its config {config}: {problem}")
    named = ckpt["state_dict"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in named.items()):
        raise FstError(f"{origin}: not a universal network's checkpoint (its 'state_dict' is not a dict of named tensors)")
    n_bound = check_bound(named, meta, config, net.encoder.channels, origin)
    check_statistics(upgrade_state(named), max(n_bound, 1), origin)
    params = sum(v.numel() for v in wanted.values())
    bound = 4 * params * 4 + n_bound * STATS_PER_STYLE + SLACK_BYTES  # weights, Adam's two moments, one spare copy
    if storage_bytes > bound:
        raise FstError(f"{origin}: refused: its tensors hold {storage_bytes} bytes, more than a universal network "
                       f"of {params} parameters can need ({bound})")


def check_bound(state: dict[str, Any], meta: dict[str, Any], config: dict[str, Any], channels: int,
                origin: str) -> int:
    """How many paintings' statistics the file binds (0: none), once they are a float (N, K, C) tensor
    of the transform's K rows and the encoder's C channels, N from 1 to MAX_BOUND, one name each."""
    if STATS not in state:
        if any(isinstance(k, str) and k.startswith(TARGETS) for k in state):
            raise FstError(f"{origin}: holds style statistics of a loss but no {STATS} bound in")
        return 0
    stats, rows = state[STATS], style_transforms.stats_rows(config["transform"], channels)
    if not (isinstance(stats, torch.Tensor) and stats.is_floating_point() and stats.dim() == 3
            and 1 <= stats.shape[0] <= MAX_BOUND and tuple(stats.shape[1:]) == (rows, channels)):
        got = f"a {stats.dtype} tensor of shape {tuple(stats.shape)}" if isinstance(stats, torch.Tensor) else describe(stats)
        raise FstError(f"{origin}: its bound statistics {STATS} are {got}; its config {config} binds a float "
                       f"(N, {rows}, {channels}) tensor, N from 1 to {MAX_BOUND}")
    names = meta.get("styles")
    if not (isinstance(names, list) and len(names) == stats.shape[0] and len(set(names)) == len(names)):
        raise FstError(f"{origin}: binds {stats.shape[0]} paintings' statistics; its metadata names "
                       f"{describe(names)}, not one distinct name each")
    return int(stats.shape[0])


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


def bound_styles(ckpt: dict[str, Any], origin: str = "checkpoint") -> tuple[torch.Tensor, list[str]] | None:
    """A fine-tuned network's bound statistics (N, K, C) fp32 and its N painting names, or None for a
    universal network that binds none (it takes --style-image). `ckpt` is as `load_universal` returns
    it (shape and names checked); the values must be finite."""
    stats = ckpt["state_dict"].get(STATS)
    if stats is None:
        return None
    if not torch.isfinite(stats).all():
        raise FstError(f"{origin}: refused: its bound statistics {STATS} hold NaN or infinite values")
    return stats.float(), list(ckpt["fst"]["styles"])


def load_model_checkpoint(path: str | Path, check: Check | None = None) -> dict[str, Any]:
    """A per-painting or a universal checkpoint at `path`, each checked as its kind before a weight is
    read (`check`, given the checked meta-device checkpoint, after): for what takes either."""
    def either(ckpt: Any, origin: str, storage_bytes: int) -> None:
        meta = ckpt.get("fst") if isinstance(ckpt, dict) else None
        (check_universal if is_universal(meta) else check_checkpoint)(ckpt, origin, storage_bytes)

    return load_checkpoint(path, check, base=either)


def payload(net: UniversalNet, **meta: Any) -> dict[str, Any]:
    """The smallest dict `universal_from_checkpoint` accepts: the weights and fst's metadata, no
    optimizer state (what a shipped network holds)."""
    state = {PREFIX + k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return {"state_dict": state, "global_step": meta.get("global_step", 0), "fst": universal_metadata(net, **meta)}
