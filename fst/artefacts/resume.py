"""Checkpoints that training resumes from (``fst fit --ckpt_path``), checked before anything runs.

Lightning copies every tensor of a resumed checkpoint into the model and the optimizer: a
statistic that claims 10^11 elements is allocated, an Adam moment of another shape fails inside
Adam's step, each after the run's log folder exists. `read_resumable` refuses such a file in one
line while it is still a list of meta-device tensors (`fst.artefacts.checkpoint.load_checkpoint`):
the transformer's weights and the style statistics as for every checkpoint, and the optimizer's
state, parameter by parameter, against the network of the checkpoint's own config (Lightning
rebuilds the model from the checkpoint's hyperparameters). A network fine-tuned from a universal one
(fst/training/universal_base.py) is a universal checkpoint: its optimizer trains the decoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fst.artefacts.checkpoint import net_config
from fst.artefacts.universal_checkpoint import is_universal, load_model_checkpoint, universal_config
from fst.core.errors import FstError
from fst.models.transformer import ConditionalInstanceNorm, TransformerNet
from fst.models.universal import UniversalNet
from fst.untrusted.plain_data import describe

MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")  # Adam's and AdamW's per-parameter state


def read_resumable(path: str | Path) -> dict[str, Any]:
    """The checkpoint at `path`, once it is one training can resume from (see above)."""
    return load_model_checkpoint(path, check_resumable)


def check_resumable(ckpt: dict[str, Any], origin: str) -> None:
    """Every optimizer's state fits the parameters it trains: all of the transformer's, or only
    its conditional norms' (a run adding styles to a base checkpoint), in module order."""
    every, styles_only = _trained(ckpt["fst"], origin)
    optimizers = ckpt.get("optimizer_states", [])
    if not isinstance(optimizers, list):
        raise FstError(f"{origin}: its optimizer_states is {describe(optimizers)}, not a list")
    for opt in optimizers:
        ids = _parameter_ids(opt, origin)
        params = every if len(ids) == len(every) else styles_only if len(ids) == len(styles_only) else None
        if params is None:
            raise FstError(f"{origin}: its optimizer trains {len(ids)} parameters; the network of its config "
                           f"has {len(every)}")
        shapes = dict(zip(ids, params))
        for pid, state in opt["state"].items():
            _check_state(pid, state, shapes, origin)


def _trained(meta: dict[str, Any], origin: str) -> tuple[list[tuple[str, tuple[int, ...]]], list]:
    """(name, shape) of every parameter a run of this checkpoint's network trains, and of only its
    conditional norms' (none for a universal network, whose frozen encoder never trains)."""
    universal = is_universal(meta)
    with torch.device("meta"):  # the loader checked the weights against the config
        net = UniversalNet(**universal_config(meta.get("universal"), origin)) if universal else \
            TransformerNet(**net_config(meta.get("net"), origin))
    every = [(n, tuple(p.shape)) for n, p in net.named_parameters() if p.requires_grad]
    norms = {name for name, m in net.named_modules() if isinstance(m, ConditionalInstanceNorm)}
    return every, [(n, s) for n, s in every if n.rsplit(".", 1)[0] in norms]


def _parameter_ids(opt: Any, origin: str) -> list[int]:
    ok = (isinstance(opt, dict) and isinstance(opt.get("state"), dict) and isinstance(opt.get("param_groups"), list)
          and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"]))
    ids = [i for g in opt["param_groups"] for i in g["params"]] if ok else []
    if not ok or not all(type(i) is int for i in ids) or len(set(ids)) != len(ids):
        raise FstError(f"{origin}: its optimizer state is not a torch optimizer's state_dict")
    return ids


def _check_state(pid: Any, state: Any, shapes: dict[int, tuple[str, tuple[int, ...]]], origin: str) -> None:
    if pid not in shapes or not isinstance(state, dict):
        raise FstError(f"{origin}: its optimizer holds state for parameter {describe(pid)}, which it does not train")
    name, shape = shapes[pid]
    for key, value in state.items():
        if key == "step":
            good = type(value) in (int, float) or (isinstance(value, torch.Tensor) and value.numel() == 1)
        elif key in MOMENTS:
            good = isinstance(value, torch.Tensor) and value.is_floating_point() and tuple(value.shape) == shape
        else:
            good = False
        if not good:
            got = f"a {value.dtype} tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else describe(value)
            raise FstError(f"{origin}: its optimizer's {describe(key)} for {name} is {got}; "
                           f"expected {'one number' if key == 'step' else f'a float tensor of shape {shape}'}")
