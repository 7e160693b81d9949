"""A one-painting network started from a universal network (fst/models/universal.py):

    fst fit --config configs/quickstart.yaml --model.style_image X --model.base_checkpoint sample:universal

The network is the universal network's encoder and decoder with painting X's statistics bound in
(`BoundStyles`, the statistics `fst stylize --style-image X` takes at its default style size), so
before the first step it stylizes exactly as ``fst stylize --model universal.ckpt --style-image X``
does. From there the per-painting recipe trains it (`StyleTransferModule`: the config's style loss,
content loss, weights and lr, all unchanged):

- the decoder learns (what turns the painting's statistics into strokes);
- the encoder stays frozen: its features are what the decoder inverts, and the bound statistics
  are taken in them;
- the bound statistics stay fixed too. They are X's own statistics in the encoder's features, so
  the file keeps saying which painting it holds, ``fst stylize --style-image X`` on the result gives
  the same output as without it, and the decoder stays a universal decoder tuned toward X (another
  painting with --style-image still works). Training them would let the loss move the painting's
  statistics wherever it pays, for ``inter`` a colouring matrix that is no longer any painting's.

Its checkpoints are universal checkpoints (`fst.artefacts.universal_checkpoint`) that carry the bound
statistics (``styles.stats``), the painting's name, and the loss's statistics of the painting
(``criterion.targets.0.*``, for resuming); the module's own names are mapped to the file's on save
and back on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fst.artefacts.universal_checkpoint import PREFIX, STATS, universal_from_checkpoint, universal_metadata
from fst.core.errors import FstError
from fst.models import style_transforms
from fst.models.painting_stats import painting_stats
from fst.models.universal import BoundStyles

MODULE = "transformer."  # StyleTransferModule's network
NAMES = ((MODULE + "net.", PREFIX), (MODULE + "stats", STATS))  # the module's names, the file's


def bound_network(ckpt: dict[str, Any], style_paths: list[Path], origin: str) -> BoundStyles:
    """The universal network of `ckpt` with the one painting's statistics bound in. A painting not
    there yet (a resumed run whose painting moved) binds zeros, which the resumed checkpoint's
    statistics replace; a fresh run stops on it first (`check_style_files`)."""
    if len(style_paths) != 1:
        raise FstError(f"{origin}: a universal network is fine-tuned to one painting: give model.style_image, "
                       f"not {len(style_paths)} style_images")
    net, _ = universal_from_checkpoint(ckpt)
    if style_paths[0].is_file():
        stats = painting_stats(net, style_paths)
    else:
        c = net.encoder.channels
        stats = torch.zeros(1, style_transforms.stats_rows(net.config["transform"], c), c)
    bound = BoundStyles(net, stats).train()  # the encoder stays in eval (UniversalNet.train)
    bound.net.encoder.requires_grad_(False)  # frozen: the decoder inverts exactly its features
    return bound


def frozen(network: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules of `network` that train in eval mode on purpose: a universal network's encoder."""
    return [network.net.encoder] if isinstance(network, BoundStyles) else []


def save(checkpoint: dict[str, Any], network: BoundStyles, **meta: Any) -> None:
    """`checkpoint` as a universal checkpoint file holds it: the file's names, universal metadata."""
    checkpoint["state_dict"] = {_renamed(k, 0, 1): v for k, v in checkpoint["state_dict"].items()}
    checkpoint["fst"] = universal_metadata(network.net, **meta)


def loaded(state: dict[str, Any]) -> dict[str, Any]:
    """A universal checkpoint file's state dict under the module's names (other files' as they are)."""
    if STATS not in state:
        return state
    return {_renamed(k, 1, 0): v for k, v in state.items()}


def _renamed(key: str, src: int, dst: int) -> str:
    for names in NAMES:
        if key.startswith(names[src]):
            return names[dst] + key[len(names[src]):]
    return key
