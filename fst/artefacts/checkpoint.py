"""What an fst checkpoint is, and how to get the transformer back out of one without Lightning.

A checkpoint is the dict Lightning writes, plus an ``"fst"`` entry that `StyleTransferModule`
adds on save::

    {"state_dict": {"transformer.<param>": Tensor, "criterion.targets.<k>.<layer>__<stat>": Tensor, ...},
     "global_step": int, ...,
     "fst": {"format": 1, "version": str,
             "net": {"channels": int, "n_residual": int, "output": str, "output_gain": float, "n_styles": int},
             "styles": [str, ...], "style_name": str, "style_loss": str, "global_step": int}}

``styles`` names the network's styles in order (style k is the k-th); ``criterion.targets.<k>.*`` are
style k's statistics. Files written before several styles existed have no ``styles`` (their one
style is ``style_name``) and keep their statistics at ``criterion.targets.<layer>__<stat>``:
`upgrade_state` renames them on load.

Export and stylize need only ``state_dict["transformer.*"]`` and ``fst["net"]``. A checkpoint is read
as data (`fst.untrusted`: CRC-checked, pickles limited to tensors and plain containers), and its
weights are checked against its config before any network is built (`transformer_from_state`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fst.core.errors import FstError
from fst.models.transformer import CONFIG_KEYS, OUTPUTS, TransformerNet
from fst.untrusted.torch_files import read_torch

FORMAT = 1
PREFIX = "transformer."
BLOCK_TENSORS = 8  # a residual block: two convs and two instance norms, weight and bias each


def fst_metadata(net: TransformerNet, **meta: Any) -> dict[str, Any]:
    from fst import __version__

    return {"format": FORMAT, "version": __version__, "net": dict(net.config), **meta}


def payload(net: TransformerNet, **meta: Any) -> dict[str, Any]:
    """The smallest dict that `transformer_from_checkpoint` accepts (tests and conversions use it)."""
    state = {PREFIX + k: v.detach().cpu() for k, v in net.state_dict().items()}
    return {"state_dict": state, "global_step": meta.get("global_step", 0), "fst": fst_metadata(net, **meta)}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, read as data (`fst.untrusted.torch_files.read_torch`), with one-line errors for
    every way a file can be something else: damaged, not a torch file, not fst's, a wrong layout."""
    path = Path(path)
    if not path.is_file():
        raise FstError(f"{path}: checkpoint not found")
    ckpt = read_torch(path, str(path), "checkpoint")
    if not isinstance(ckpt, dict) or "fst" not in ckpt or "state_dict" not in ckpt:
        raise FstError(f"{path}: not an fst checkpoint (no 'fst' metadata; was it written by `fst fit`?)")
    meta, state = ckpt["fst"], ckpt["state_dict"]
    if not isinstance(meta, dict):
        raise FstError(f"{path}: not an fst checkpoint (its 'fst' entry is a {type(meta).__name__}, not a dict)")
    if meta.get("format") != FORMAT:
        raise FstError(f"{path}: fst checkpoint format {meta.get('format')!r}, this fst reads {FORMAT}")
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise FstError(f"{path}: not an fst checkpoint (its 'state_dict' is not a dict of named tensors)")
    if type(meta.get("global_step", 0)) is not int or type(ckpt.get("global_step", 0)) is not int:
        raise FstError(f"{path}: not an fst checkpoint (its global_step is not an integer)")
    return ckpt


def transformer_from_checkpoint(ckpt: str | Path | dict[str, Any]) -> tuple[TransformerNet, dict[str, Any]]:
    """(eval-mode TransformerNet with the trained weights, the checkpoint's fst metadata)."""
    origin = "checkpoint" if isinstance(ckpt, dict) else str(ckpt)
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    meta = dict(ckpt["fst"])
    meta.setdefault("global_step", int(ckpt.get("global_step", 0)))
    state = {k[len(PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    return transformer_from_state(meta.get("net"), state, origin), meta


def transformer_from_state(config: Any, state: dict[str, Any], origin: str) -> TransformerNet:
    """An eval-mode fp32 TransformerNet of `config` holding `state`, once `check_weights` passed."""
    net = TransformerNet(**check_weights(config, state, origin))
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval()


def check_weights(config: Any, state: dict[str, Any], origin: str) -> dict[str, Any]:
    """`config`, once it and `state` are what fst writes: the config's keys and integer values,
    then every tensor's name, shape and floating dtype, compared with a net on the meta device.
    Nothing is allocated or computed from a tensor before (a crafted view can claim any size)."""
    config = net_config(config, origin)
    if config["n_residual"] * BLOCK_TENSORS > len(state):
        raise FstError(f"{origin}: {len(state)} transformer tensors, too few for the "
                       f"{config['n_residual']} residual blocks of its config")
    with torch.device("meta"):
        wanted = TransformerNet(**config).state_dict()
    problem = weights_problem(state, wanted)
    if problem:
        raise FstError(f"{origin}: transformer weights do not match its config {config}: {problem}")
    return config


# What a config written before a key existed meant by its absence.
LEGACY_DEFAULTS = {"output": "sigmoid", "output_gain": 1.0, "n_styles": 1}
TARGETS = "criterion.targets."


def net_config(config: Any, origin: str) -> dict[str, Any]:
    """`config` if it is a TransformerNet config as fst writes it: exactly its keys, integers in range,
    a known output, a positive finite gain. Files written before `output` existed have none: theirs
    is the sigmoid; those written before `output_gain` read their output at gain 1."""
    given = config
    if isinstance(config, dict):
        config = {**config, **{k: v for k, v in LEGACY_DEFAULTS.items() if k not in config}}
    if (not isinstance(config, dict) or sorted(config) != sorted(CONFIG_KEYS)
            or not all(type(config[k]) is int for k in ("channels", "n_residual", "n_styles"))
            or config["channels"] < 1 or config["n_residual"] < 0 or config["n_styles"] < 1
            or config["output"] not in OUTPUTS
            or type(config["output_gain"]) not in (int, float) or not 0 < config["output_gain"] < float("inf")):
        raise FstError(f"{origin}: transformer config {given!r} is not integers channels >= 1, n_residual >= 0, "
                       f"n_styles >= 1, an output in {OUTPUTS} and a positive output_gain")
    return {**config, "output_gain": float(config["output_gain"])}


def style_names(meta: dict[str, Any], origin: str) -> list[str]:
    """The names of a checkpoint's or artefact's styles, in order: one per style of its network."""
    n = net_config(meta.get("net"), origin)["n_styles"]
    names = meta.get("styles", [meta.get("style_name") or "style"] if n == 1 else None)
    if not (isinstance(names, list) and len(names) == n and all(isinstance(x, str) and x for x in names)
            and len(set(names)) == n):
        raise FstError(f"{origin}: its metadata does not name its {n} styles (styles: {names!r})")
    return names


def upgrade_state(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict with every style statistic under ``criterion.targets.<k>.``: single-style files
    written before several styles existed keep theirs directly under ``criterion.targets.``."""
    return {TARGETS + "0." + k[len(TARGETS):] if k.startswith(TARGETS) and "." not in k[len(TARGETS):] else k: v
            for k, v in state.items()}


def weights_problem(state: dict[str, Any], wanted: dict[str, torch.Tensor]) -> str | None:
    """What is wrong with `state` as the weights `wanted` describes (names, shapes, dtypes), or None."""
    missing, unexpected = sorted(set(wanted) - set(state)), sorted(set(state) - set(wanted))
    if missing or unexpected:
        return f"missing {missing[:3]}, unexpected {unexpected[:3]}"
    for k, want in wanted.items():
        got = state[k]
        if not isinstance(got, torch.Tensor) or not got.is_floating_point():
            return f"{k} is a {type(got).__name__ if not isinstance(got, torch.Tensor) else got.dtype}, not a float tensor"
        if got.shape != want.shape:
            return f"{k} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    return None
