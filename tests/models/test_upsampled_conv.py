"""An exact 2x nearest upsample and the conv after it, run at the low resolution
(fst/models/cpu_fast.upsampled_conv): the same values as upsampling first, at every edge and corner,
in the per-painting network (tests/models/test_transformer_fast_paths.py) and the universal decoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fst.models import cpu_fast
from fst.models.cpu_fast import upsampled_conv
from fst.artefacts.universal_checkpoint import load_universal, universal_from_checkpoint
from fst.assets import resolve_model_path


@pytest.mark.parametrize("size", [(2, 2), (3, 5), (7, 4)])
def test_an_exact_2x_upsample_and_its_conv_at_the_low_resolution(size):
    g = torch.Generator().manual_seed(2)
    conv = torch.nn.Conv2d(5, 4, 3)
    x = torch.randn(2, 5, *size, generator=g)
    with torch.inference_mode():
        want = conv(F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect"))
        got = upsampled_conv(conv, x.contiguous(memory_format=torch.channels_last))
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    assert (got - want).abs().max() < 1e-5


@pytest.mark.parametrize("size, low_resolution", [((64, 48), 2), ((37, 45), 1)])
def test_the_universal_decoder_gives_its_reference_pass(size, low_resolution, monkeypatch):
    """The shipped network. Multiples of 4 take the low-resolution convs (both upsamples are exact 2x);
    37 x 45 pools to 18 x 22 and 9 x 11, so only its first upsample is; under autograd (training) the
    reference pass runs either way."""
    net, _ = universal_from_checkpoint(load_universal(resolve_model_path("sample:universal")))
    net.eval()
    g = torch.Generator().manual_seed(3)
    x, painting = torch.rand(1, 3, *size, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    used = []
    monkeypatch.setattr(cpu_fast, "upsampled_conv", lambda *a: used.append(1) or upsampled_conv(*a))
    with torch.no_grad():
        stats = net.style_stats(painting)
        fast = net(x, stats)
    with torch.enable_grad():
        plain = net(x, stats)
    assert len(used) == low_resolution
    assert fast.shape == plain.shape == (1, 3, *size) and plain.std() > 0.05
    assert (fast - plain).abs().max() < 1e-5
