"""The lighter network (``net: mobile``): its blocks are depthwise-separable, its config says so, the
default network's config does not, and its CPU fast path computes what its reference formulas do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fst.core.errors import FstError
from fst.models.separable import SeparableConv2d
from fst.models.tiling import stylize_tiled
from fst.models.transformer import ConditionalInstanceNorm, TransformerNet, count_parameters, with_new_styles

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mobile_blocks_are_separable_and_the_rest_is_johnson() -> None:
    johnson, mobile = TransformerNet(8, 2), TransformerNet(8, 2, net="mobile")
    assert "net" not in johnson.config and mobile.config["net"] == "mobile"
    for block in mobile.residual:
        for layer in block.body:
            conv = layer[1]
            assert isinstance(conv, SeparableConv2d)
            assert conv.depthwise.groups == 32 and conv.depthwise.kernel_size == (3, 3)
            assert conv.pointwise.kernel_size == (1, 1)
    outside = [k for k in mobile.state_dict() if not k.startswith("residual.")]
    assert outside == [k for k in johnson.state_dict() if not k.startswith("residual.")]
    # per block: 2 x (9·32 + 32 + 32·32 + 32) against 2 x (9·32·32 + 32), norms equal
    assert count_parameters(johnson) - count_parameters(mobile) == 2 * 2 * (9 * 32 * 32 - 9 * 32 - 32 * 32 - 32)


def test_unknown_net_is_one_line() -> None:
    with pytest.raises(FstError, match=r"^unknown transformer net 'resnet' \(choose from johnson, mobile\)$"):
        TransformerNet(8, 1, net="resnet")


@pytest.mark.parametrize("n_styles", [1, 3])
def test_fast_path_and_tiles_match_the_reference(n_styles: int) -> None:
    torch.manual_seed(0)
    net = TransformerNet(8, 2, n_styles=n_styles, net="mobile").eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.InstanceNorm2d) and m.affine or isinstance(m, ConditionalInstanceNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    x = torch.rand(2, 3, 45, 61)
    w = torch.softmax(torch.rand(2, n_styles), 1) if n_styles > 1 else None
    with torch.no_grad():
        fast = net(x, w)
        net.cpu_fast = False
        reference = net(x, w)
    assert (fast - reference).abs().max().item() < 1e-4
    if n_styles == 1:  # tiles with whole-image statistics give the whole-image pass (tiling's own bound)
        with torch.no_grad():
            y = torch.rand(1, 3, 128, 160)
            assert (stylize_tiled(net, y, tile=96, overlap=40, stats_side=4096) - net(y)).abs().max().item() < 0.01


def test_new_styles_keep_the_mobile_net() -> None:
    grown = with_new_styles(TransformerNet(8, 1, net="mobile"), 2)
    assert grown.config["net"] == "mobile" and grown.n_styles == 3
    assert isinstance(grown.residual[0].body[0][1], SeparableConv2d)
