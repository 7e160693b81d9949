"""`fst weights info` reports a digest of the weights themselves: safetensors writes its metadata keys
in a new order in each process (a Rust HashMap), so the same tensors give files of other sha256s on
two machines, or in two runs on one."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import save_file

from fst.cli import main as cli
from fst.io.files import sha256_file
from fst.models import weights as W


def header_of(path: Path) -> tuple[int, dict]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return n, json.loads(raw[8:8 + n])


def metadata_reordered(src: Path, dst: Path, other: Path) -> Path:
    """`src` with its `__metadata__` keys in the reverse of `other`'s order: what another run of
    safetensors may write, and never the same bytes as `other` (src's own order is random)."""
    raw = src.read_bytes()
    n, header = header_of(src)
    order = list(reversed(header_of(other)[1]["__metadata__"]))
    header["__metadata__"] = {k: header["__metadata__"][k] for k in order}
    text = json.dumps(header, separators=(",", ":")).encode().ljust(n)  # same length: the data stays in place
    dst.write_bytes(raw[:8] + text + raw[8 + n:])
    return dst


def test_info_reports_the_same_digest_for_the_same_weights_in_files_ordered_otherwise(tmp_path: Path, monkeypatch,
                                                                                          capsys) -> None:
    """Seen: two machines with identical tensors printed different `sha256=` (the file's)."""
    state = W.load_path(W.cached_path("vgg16"), "vgg16").state_dict
    sliced = {k: v for k, v in state.items() if int(k.split(".")[0]) < 5}  # relu2_2: small and fast
    lines, digests = [], []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "vgg16.safetensors"
        save_file(sliced, str(path), metadata={"arch": "vgg16", "source": "torchvision", "convention": "torchvision"})
        if name == "b":
            path = metadata_reordered(path, path.with_suffix(".tmp"), tmp_path / "a" / "vgg16.safetensors")
            path.replace(tmp_path / name / "vgg16.safetensors")
        digests.append(sha256_file(tmp_path / name / "vgg16.safetensors"))
        monkeypatch.setenv("FST_CACHE", str(tmp_path / name))
        assert cli(["weights", "info", "--arch", "vgg16"]) == 0
        lines.append(capsys.readouterr().out.split("weights_sha256=")[1].split()[0])
    assert digests[0] != digests[1]  # the files differ...
    assert lines[0] == lines[1] == W.weights_digest(sliced)  # ...the weights do not


def test_the_digest_is_of_names_dtypes_shapes_and_values() -> None:
    a = {"0.weight": torch.ones(2, 3), "0.bias": torch.zeros(2)}
    assert W.weights_digest(a) == W.weights_digest(dict(reversed(list(a.items()))))
    assert W.weights_digest(a) == W.weights_digest({k: v.t().contiguous().t() for k, v in a.items()})  # any layout
    for other in ({**a, "0.bias": torch.zeros(2, dtype=torch.float64)}, {**a, "0.weight": torch.ones(3, 2)},
                  {**a, "0.bias": torch.tensor([0.0, 1e-8])}, {"1.weight": a["0.weight"], "0.bias": a["0.bias"]}):
        assert W.weights_digest(other) != W.weights_digest(a)
