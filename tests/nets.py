"""Small networks shared by the export and stylize tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fst.artefacts.checkpoint import payload
from fst.data.manifest import Settings
from fst.data.shards import build_shards
from fst.models.transformer import TransformerNet

PACKAGE_SIZES = [(1, 3, 5, 5), (1, 3, 67, 91), (2, 3, 40, 130)]  # the smallest side, odd sizes, a batch
# bf16 package against the fp32 eager network, tiny random net, these sizes and 256²: measured
# 2026-11-28 max 0.019, mean 0.0015; the eager network run in bf16 differs as much (max 0.016).
BF16_BOUND = 0.05


def inputs() -> list[torch.Tensor]:
    """Inputs for compiled packages: the smallest side, odd sizes, a batch."""
    torch.manual_seed(0)
    return [torch.rand(*shape) for shape in PACKAGE_SIZES]


def make_net(seed: int = 0) -> TransformerNet:
    """A tiny net with random but fixed weights, instance-norm affine included (not the 1/0 init).
    Its last conv is scaled so that its linear 0-255 output spreads around mid-grey, as a sigmoid's
    would (0.5 + z/4 near 0), instead of sitting at the black end where the clamp hides it."""
    torch.manual_seed(seed)
    net = TransformerNet(channels=8, n_residual=1, output_gain=1.0, grey_start=False).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        conv = net.conv_out[1]
        conv.weight.mul_(255 / 4)
        conv.bias.mul_(255 / 4).add_(255 / 2)
    return net


def save_checkpoint(path: Path, style_name: str = "tiny", global_step: int = 1) -> Path:
    """`make_net()` saved as the smallest fst checkpoint (what export and stylize read)."""
    torch.save(payload(make_net(), style_name=style_name, style_loss="gram", global_step=global_step), path)
    return path


def random_photo_shards(root: Path, sizes: list[tuple[int, int]], settings: Settings) -> Path:
    """Random-noise photos of the given (height, width) sizes in root/photos, built into
    root/shards by the real shard builder; returns the shards folder."""
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(photos / f"p{i:02d}.jpg", quality=90)
    build_shards(photos, root / "shards", settings, progress=False)
    return root / "shards"


def export_all(ckpt: Path, out: Path) -> dict[str, Path]:
    """`ckpt` exported in every data format (not the compiled one: a minute per package)."""
    from fst.artefacts.export import export_model
    from fst.artefacts.exported import FORMATS, SUFFIXES

    return {f: export_model(ckpt, out / f"{ckpt.stem}{SUFFIXES[f]}", f) for f in FORMATS}


def make_styles_net(n_styles: int = 3, seed: int = 0) -> TransformerNet:
    """`make_net()` with `n_styles` styles, each style's (gamma, beta) random and distinct."""
    base = make_net(seed)
    net = TransformerNet(**{**base.config, "n_styles": n_styles}).eval()
    state = base.state_dict()
    gen = torch.Generator().manual_seed(seed + 1)
    for key, like in net.state_dict().items():
        if like.shape != state[key].shape:  # a conditional norm's gammas or betas: (N, C)
            lo, hi = (0.5, 1.5) if key.endswith("weight") else (-0.5, 0.5)
            state[key] = lo + (hi - lo) * torch.rand(like.shape, generator=gen)
    net.load_state_dict(state)
    return net


def save_styles_checkpoint(path: Path, names: list[str], global_step: int = 1) -> Path:
    """`make_styles_net(len(names))` saved as the smallest fst checkpoint naming those styles."""
    net = make_styles_net(len(names))
    torch.save(payload(net, styles=names, style_name="+".join(names), style_loss="gram", global_step=global_step), path)
    return path
