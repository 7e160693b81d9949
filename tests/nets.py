"""Small networks shared by the export and stylize tests."""

from __future__ import annotations

import torch

from fst.transformer import TransformerNet


def make_net(seed: int = 0) -> TransformerNet:
    """A tiny net with random but fixed weights, instance-norm affine included (not the 1/0 init)."""
    torch.manual_seed(seed)
    net = TransformerNet(channels=8, n_residual=1).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net
