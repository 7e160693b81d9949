"""fst.metrics.gram_trace: the trace of the Gram loss's own G, and the per-channel form."""

from __future__ import annotations

import torch

from fst.losses.style import gram_matrix, mean_and_std
from fst.metrics.gram_trace import gram_trace


def test_gram_trace_is_the_trace_of_the_losss_gram_matrix() -> None:
    f = torch.randn(2, 8, 5, 7) * 3 + 1
    flat = f.flatten(-2)
    expected = torch.diagonal(gram_matrix(flat), dim1=-2, dim2=-1).sum(-1)
    assert torch.allclose(gram_trace(f), expected, rtol=1e-5)
    assert torch.allclose(gram_trace(flat), expected, rtol=1e-5)


def test_gram_trace_is_the_mean_of_each_channels_second_moment() -> None:
    f = torch.randn(1, 6, 100) * torch.arange(1, 7.0)[:, None] + 2
    mu, sigma = mean_and_std(f)
    assert torch.allclose(gram_trace(f), (mu**2 + sigma**2 - 1e-5).mean(-1), rtol=1e-4)
    assert gram_trace(2 * f).item() > 3.99 * gram_trace(f).item()  # grows with the square of the features
