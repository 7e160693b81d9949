"""CUDA-only behaviour. These need a GPU, so they run in scripts/gpu_check.sh on a CUDA machine
and are skipped on CPU-only machines (CI here has none)."""

from __future__ import annotations

import pytest
import torch

from fst import losses
from fst.artefacts.checkpoint import load_checkpoint, transformer_from_checkpoint
from fst.cli import main as cli

from runs import run_args

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("name", losses.list_losses())
def test_loss_statistics_stay_fp32_under_fp16_autocast(name):
    """Activations of ~300 give Gram entries ~1e5: past fp16's 65504, so an fp16 Gram would be inf."""
    g = torch.Generator(device="cuda").manual_seed(0)
    f = torch.relu(torch.randn(2, 16, 256, device="cuda", generator=g)) * 300
    s = torch.relu(torch.randn(16, 256, device="cuda", generator=g)) * 300
    loss = losses.get(name)
    torch.manual_seed(0)
    ref = loss.distance(f.double(), loss.target(s.double()))
    with torch.autocast("cuda", dtype=torch.float16):
        target = loss.stats(s.half())
        torch.manual_seed(0)
        out = loss(f.half(), target)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.allclose(out.double(), ref, rtol=0.05, atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "32"])
def test_fit_on_cuda(tmp_path, precision):
    assert cli(run_args(tmp_path, "--trainer.accelerator", "gpu", "--trainer.precision", precision,
                        "--model.channels_last", "true", "--trainer.benchmark", "true")) == 0
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert ckpt["global_step"] == 4
    net, _ = transformer_from_checkpoint(ckpt)
    assert all(torch.isfinite(p).all() for p in net.parameters())


@pytest.mark.parametrize("channels_last", [False, True])
def test_aoti_package_on_cuda_matches_the_eager_fp16_network(tmp_path, channels_last):
    """A CUDA fp16 package against the eager fp32 network. Bound: fp16 keeps 11 bits of mantissa,
    so it must be at least as close as the bf16 CPU package's bound (tests/artefacts/test_compiled.py)."""
    from fst.artefacts.export import export_model
    from fst.artefacts.exported import load_compiled

    from nets import BF16_BOUND, inputs, make_net, save_checkpoint

    ckpt = save_checkpoint(tmp_path / "tiny.ckpt")
    model, meta = load_compiled(export_model(ckpt, tmp_path / "tiny.pt2", "aoti", "fp16", channels_last, device="cuda"), trusted=True)
    assert meta["device"] == "cuda" and meta["dtype"] == "fp16"
    net = make_net()
    for x in inputs():
        with torch.no_grad():
            expected = net(x)
        out = model(x.cuda()).cpu()
        assert out.dtype == torch.float32 and (out - expected).abs().max() <= BF16_BOUND
