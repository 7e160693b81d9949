"""The second optical flow, Farnebäck (independent of DIS, for judging what uses DIS's motion): it
recovers a known pan, its forward-backward mask drops the strip that leaves, and a method fst does
not know is one line."""

from __future__ import annotations

import pytest
import torch

from fst.core.errors import FstError
from fst.metrics.flow import METHODS, clip_motion, estimate
from fst.metrics.known_motion import pan

from test_flow import INTERIOR, photo


@pytest.mark.parametrize(("name", "step"), [("aula_palatina.jpg", (3, -2)), ("colosseum.jpg", (-4, 0))])
def test_farneback_recovers_a_known_pan(name: str, step: tuple[int, int]):
    clip = pan(photo(name), 2, 96, step)
    flow = estimate(clip.frames[0], clip.frames[1], "farneback")
    assert flow.shape == (2, 96, 96) and flow.dtype == torch.float32
    median = flow[INTERIOR].flatten(1).median(1).values
    torch.testing.assert_close(median, clip.flows[0, :, 0, 0], atol=0.25, rtol=0)
    assert (flow - clip.flows[0]).norm(dim=0)[clip.masks[0, 0]].mean() < 0.5  # endpoint error, px
    assert not torch.equal(flow, estimate(clip.frames[0], clip.frames[1], "dis"))  # another estimator


def test_farneback_motion_masks_the_strip_that_leaves():
    clip = pan(photo(), 2, 96, 4)
    _, masks = clip_motion(clip.frames, "farneback")
    assert not masks[..., :3].any() and masks.float().mean() > 0.8


def test_an_unknown_method_is_one_line():
    frame = torch.zeros(3, 16, 16)
    assert METHODS == ("dis", "farneback")
    with pytest.raises(FstError, match="unknown optical flow method 'raft': one of dis, farneback"):
        estimate(frame, frame, "raft")
