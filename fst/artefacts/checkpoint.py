"""What an fst checkpoint is, and how to get the transformer back out of one without Lightning.

A checkpoint is the dict Lightning writes, plus an ``"fst"`` entry that `StyleTransferModule`
adds on save::

    {"state_dict": {"transformer.<param>": Tensor, "criterion.targets.<k>.<layer>__<stat>": Tensor, ...},
     "global_step": int, ...,
     "fst": {"format": 1, "version": str,
             "net": {"channels": int, "n_residual": int, "output": str, "output_gain": float, "n_styles": int,
                     ["net": str]},  # "net" only for a network other than johnson's (fst/models/transformer.py)
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

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fst.artefacts.metadata import check_metadata
from fst.artefacts.sniff import KINDS, sniff_format
from fst.core.errors import FstError
from fst.models.transformer import CONFIG_KEYS, DEFAULT_NET, NETS, OUTPUTS, TransformerNet
from fst.models.universal import KIND as UNIVERSAL
from fst.models.vgg_arch import CFGS as VGG_CONFIGS
from fst.untrusted.plain_data import check_plain, describe
from fst.untrusted.torch_files import read_torch

FORMAT = 1
PREFIX = "transformer."
BOUND = "styles.stats"  # a universal network fine-tuned to a painting binds its statistics (universal_checkpoint)
BLOCK_TENSORS = 8  # a residual block: two convs and two instance norms, weight and bias each


def fst_metadata(net: TransformerNet, **meta: Any) -> dict[str, Any]:
    from fst import __version__

    return {"format": FORMAT, "version": __version__, "net": dict(net.config), **meta}


def payload(net: TransformerNet, **meta: Any) -> dict[str, Any]:
    """The smallest dict that `transformer_from_checkpoint` accepts (tests and conversions use it)."""
    state = {PREFIX + k: v.detach().cpu() for k, v in net.state_dict().items()}
    return {"state_dict": state, "global_step": meta.get("global_step", 0), "fst": fst_metadata(net, **meta)}


# What a checkpoint's storages can need beyond the transformer's weights (P parameters): Adam's two
# moments and one spare copy (AdamW, a trainer's fp32 copy) make 4 P floats; each style's
# statistics are at most one large (MAX_STAT_SIDE, widest VGG layer) float tensor for each VGG
# layer (a gram matrix, samples or quantiles; the other statistics are a few numbers per channel).
# Generous, and finite: a file declaring more is refused before any of its tensors is read.
MAX_STAT_SIDE = 16384  # fst.losses.style.MAX_SAMPLES: stored positions or quantiles per layer
WIDEST_LAYER = max(c for cfg in VGG_CONFIGS.values() for c in cfg if isinstance(c, int))
MAX_STAT = MAX_STAT_SIDE * WIDEST_LAYER
STATS_PER_STYLE = 4 * max(sum(isinstance(c, int) for c in cfg) for cfg in VGG_CONFIGS.values()) * MAX_STAT  # bytes
SLACK_BYTES = 16 << 20  # step counters, scalars

Check = Callable[[dict[str, Any], str], None]


def load_checkpoint(path: str | Path, check: Check | None = None,
                    base: Callable[[Any, str, int], None] | None = None) -> dict[str, Any]:
    """The checkpoint's dict, read as data (`fst.untrusted.torch_files.read_torch`), with one-line errors for
    every way a file can be something else: damaged, not a torch file, not fst's, a wrong layout. Its
    structure, metadata and every tensor's shape are checked (`base`, by default `check_checkpoint`, then
    `check`, given the checkpoint with meta-device tensors) before a single weight is read."""
    path = Path(path)
    if not path.is_file():
        raise FstError(f"{path}: checkpoint not found")
    kind = sniff_format(path)
    if kind in KINDS:
        raise FstError(f"{path}: is {KINDS[kind]} that fst export wrote, not a training checkpoint; "
                       "this takes the .ckpt that fst fit writes")

    def checked(ckpt: Any, storage_bytes: int) -> None:
        (base or check_checkpoint)(ckpt, str(path), storage_bytes)
        if check is not None:
            check(ckpt, str(path))

    return read_torch(path, str(path), "checkpoint", checked)


def check_checkpoint(ckpt: Any, origin: str, storage_bytes: int) -> None:
    """Refuse a checkpoint that is not what fst writes: plain data and tensors, fst metadata of the
    schema (`fst.artefacts.metadata`), weights of its config, bounded statistics, and no more bytes in
    its storages than those can need."""
    check_plain(ckpt, origin, "checkpoint", tensors=True)
    if not isinstance(ckpt, dict) or "fst" not in ckpt or "state_dict" not in ckpt:
        raise FstError(f"{origin}: not an fst checkpoint (no 'fst' metadata; was it written by `fst fit`?)")
    meta, state = ckpt["fst"], ckpt["state_dict"]
    if not isinstance(meta, dict):
        raise FstError(f"{origin}: not an fst checkpoint (its 'fst' entry is a {type(meta).__name__}, not a dict)")
    if meta.get("format") != FORMAT:
        raise FstError(f"{origin}: fst checkpoint format {describe(meta.get('format'))}, this fst reads {FORMAT}")
    if meta.get("kind") == UNIVERSAL and isinstance(state, dict) and BOUND in state:
        raise FstError(f"{origin}: a universal network fine-tuned to {describe(meta.get('style_name'))}: fst stylize "
                       "takes it (--style-image optional); it does not take this command")
    if meta.get("kind") == UNIVERSAL:
        raise FstError(f"{origin}: a universal network: give it the painting to apply (fst stylize ... --style-image "
                       "PAINTING); it does not take this command")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise FstError(f"{origin}: not an fst checkpoint (its 'state_dict' is not a dict of named tensors)")
    if type(meta.get("global_step", 0)) is not int or type(ckpt.get("global_step", 0)) is not int:
        raise FstError(f"{origin}: not an fst checkpoint (its global_step is not an integer)")
    check_metadata(meta, origin)
    if not 0 <= ckpt.get("global_step", 0) < 2**63:
        raise FstError(f"{origin}: its global_step {describe(ckpt['global_step'])} is not from 0 to 2^63-1")
    weights = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    config = check_weights(meta.get("net"), weights, origin)
    style_names(meta, origin)
    check_statistics(upgrade_state(state), config["n_styles"], origin)
    params = sum(v.numel() for v in weights.values())
    bound = 4 * params * 4 + config["n_styles"] * STATS_PER_STYLE + SLACK_BYTES
    if storage_bytes > bound:
        raise FstError(f"{origin}: refused: its tensors hold {storage_bytes} bytes, more than a network of "
                       f"{params} parameters and {config['n_styles']} styles can need ({bound})")


def check_statistics(state: dict[str, torch.Tensor], n_styles: int, origin: str) -> None:
    """Every style statistic is style k's (k < n_styles) and a float tensor of at most two
    dimensions and `MAX_STAT` elements: a criterion makes one buffer per statistic it finds."""
    for key, value in state.items():
        if not key.startswith(TARGETS):
            continue
        style, _, name = key[len(TARGETS):].partition(".")
        if not (style.isdecimal() and len(style) <= 6 and int(style) < n_styles and "__" in name):
            raise FstError(f"{origin}: style statistic {describe(key)} is not named <style>.<layer>__<stat> "
                           f"for one of its {n_styles} styles")
        if not value.is_floating_point() or value.dim() > 2 or value.numel() > MAX_STAT:
            raise FstError(f"{origin}: style statistic {key} is a {value.dtype} tensor of shape {tuple(value.shape)}; "
                           f"fst's are float, at most 2-D, of at most {MAX_STAT} elements")


def transformer_from_checkpoint(ckpt: str | Path | dict[str, Any], origin: str | None = None
                                ) -> tuple[TransformerNet, dict[str, Any]]:
    """(eval-mode TransformerNet with the trained weights, the checkpoint's fst metadata); `origin`
    names a checkpoint given as a dict in errors."""
    origin = origin or ("checkpoint" if isinstance(ckpt, dict) else str(ckpt))
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    meta = dict(ckpt["fst"])
    meta.setdefault("global_step", int(ckpt.get("global_step", 0)))
    state = {k[len(PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(PREFIX)}
    return transformer_from_state(meta.get("net"), state, origin), meta


def transformer_from_state(config: Any, state: dict[str, Any], origin: str) -> TransformerNet:
    """An eval-mode fp32 TransformerNet of `config` holding `state`, once `check_weights` and
    `check_finite` passed."""
    net = TransformerNet(**check_weights(config, state, origin))
    check_finite(state, origin)
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


def check_finite(state: dict[str, torch.Tensor], origin: str) -> None:
    """Refuse weights that hold NaN or infinity (a run that diverged writes them): the network would
    turn every image into NaN, which an 8-bit image shows as black, and an export would copy them."""
    for name in sorted(state):
        finite = torch.isfinite(state[name])
        if not finite.all():
            raise FstError(f"{origin}: refused: weight {name} holds {int((~finite).sum())} NaN or infinite values "
                           f"of {finite.numel()} (a training run that diverged?); fst uses only finite weights")


# What a config written before a key existed meant by its absence.
LEGACY_DEFAULTS = {"output": "sigmoid", "output_gain": 1.0, "n_styles": 1}
TARGETS = "criterion.targets."


def net_config(config: Any, origin: str) -> dict[str, Any]:
    """`config` if it is a TransformerNet config as fst writes it: exactly its keys (and a known `net`, if
    any), integers in range, a known output, a positive finite gain. Files written before `output` existed have none: theirs
    is the sigmoid; those written before `output_gain` read their output at gain 1."""
    given, net = config, DEFAULT_NET
    if isinstance(config, dict):
        config = {**config, **{k: v for k, v in LEGACY_DEFAULTS.items() if k not in config}}
        net = config.pop("net", DEFAULT_NET)
        if type(net) is not str or net not in NETS:
            raise FstError(f"{origin}: transformer config names net {describe(net)}; fst knows {', '.join(NETS)}")
    if (not isinstance(config, dict) or sorted(config) != sorted(CONFIG_KEYS)
            or not all(type(config[k]) is int for k in ("channels", "n_residual", "n_styles"))
            or config["channels"] < 1 or config["n_residual"] < 0 or config["n_styles"] < 1
            or config["output"] not in OUTPUTS
            or type(config["output_gain"]) not in (int, float) or not 0 < config["output_gain"] < float("inf")):
        raise FstError(f"{origin}: transformer config {given!r} is not integers channels >= 1, n_residual >= 0, "
                       f"n_styles >= 1, an output in {OUTPUTS} and a positive output_gain")
    # A johnson network's config leaves `net` out, as TransformerNet.config does: its files are as they were.
    return {**config, "output_gain": float(config["output_gain"]), **({} if net == DEFAULT_NET else {"net": net})}


def style_names(meta: dict[str, Any], origin: str) -> list[str]:
    """The names of a checkpoint's or artefact's styles, in order: one per style of its network."""
    n = net_config(meta.get("net"), origin)["n_styles"]
    names = meta.get("styles", [meta.get("style_name") or "style"] if n == 1 else None)
    if not (isinstance(names, list) and len(names) == n and all(isinstance(x, str) and x for x in names)
            and len(set(names)) == n):
        shown = [describe(x) for x in names[:4]] if isinstance(names, list) else describe(names)
        raise FstError(f"{origin}: its metadata does not name its {n} styles (styles: {shown}"
                       f"{f' and {len(names) - 4} more' if isinstance(names, list) and len(names) > 4 else ''})")
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
