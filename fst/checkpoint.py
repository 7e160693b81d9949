"""What an fst checkpoint is, and how to get the transformer back out of one without Lightning.

A checkpoint is the dict Lightning writes, plus an ``"fst"`` entry that `StyleTransferModule`
adds on save::

    {"state_dict": {"transformer.<param>": Tensor, "style_targets.<...>": Tensor, ...},
     "global_step": int, ...,
     "fst": {"format": 1, "version": str, "net": {"channels": int, "n_residual": int},
             "style_name": str, "style_loss": str, "global_step": int}}

Export and stylize need only ``state_dict["transformer.*"]`` and ``fst["net"]``.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from fst.errors import FstError, first_line
from fst.transformer import TransformerNet

FORMAT = 1
PREFIX = "transformer."


def fst_metadata(net: TransformerNet, **meta: Any) -> dict[str, Any]:
    from fst import __version__

    return {"format": FORMAT, "version": __version__, "net": dict(net.config), **meta}


def payload(net: TransformerNet, **meta: Any) -> dict[str, Any]:
    """The smallest dict that `transformer_from_checkpoint` accepts (tests and conversions use it)."""
    state = {PREFIX + k: v.detach().cpu() for k, v in net.state_dict().items()}
    return {"state_dict": state, "global_step": meta.get("global_step", 0), "fst": fst_metadata(net, **meta)}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load with ``weights_only=True`` and one-line errors for the usual ways a file is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FstError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise FstError(f"{path}: not a readable checkpoint (truncated or corrupt?): {first_line(e)[:200]}") from None
    if not isinstance(ckpt, dict) or "fst" not in ckpt or "state_dict" not in ckpt:
        raise FstError(f"{path}: not an fst checkpoint (no 'fst' metadata; was it written by `fst fit`?)")
    if ckpt["fst"].get("format") != FORMAT:
        raise FstError(f"{path}: fst checkpoint format {ckpt['fst'].get('format')!r}, this fst reads {FORMAT}")
    return ckpt


def transformer_from_checkpoint(ckpt: str | Path | dict[str, Any]) -> tuple[TransformerNet, dict[str, Any]]:
    """(eval-mode TransformerNet with the trained weights, the checkpoint's fst metadata)."""
    origin = "checkpoint" if isinstance(ckpt, dict) else str(ckpt)
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    meta = dict(ckpt["fst"])
    meta.setdefault("global_step", int(ckpt.get("global_step", 0)))
    net = TransformerNet(**meta["net"])
    state = {k[len(PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise FstError(f"{origin}: transformer weights do not match its config {meta['net']}: {str(e).splitlines()[0]}") from None
    return net.eval(), meta
