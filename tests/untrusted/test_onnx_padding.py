"""An ONNX file is read only once it is no larger than the network its metadata describes can fill.

Before: a real fst export padded with 600 MB (an unknown protobuf field, which onnx keeps and
ignores) was read whole by `onnx.load` and parsed: 2.1 GB at the peak, then stylized as if
nothing were wrong. The padded files here are sparse (`truncate`): 600 MB on no disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from fst.untrusted.onnx_files import MAX_TOP_FIELDS

from crafted import load_in_child, stylize_refused

pytestmark = pytest.mark.usefixtures("one_thread")

PADDING = 600_000_000
CHILD_RSS_MB = 1500  # importing torch, fst and onnx; reading the padding took 2.1 GB


@pytest.fixture(scope="module")
def onnx_model(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fst.artefacts.export import export_model

    return export_model(ckpt, tmp_path_factory.mktemp("onnx") / "starry.onnx", "onnx")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append(n & 0x7F | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def padded(src: Path, dst: Path, where: str) -> Path:
    """`src` with PADDING zero bytes: as field 1000 (length-delimited) after or before the model's
    own fields, or appended as they are (no protobuf at all)."""
    data = src.read_bytes()
    header = b"" if where == "raw" else varint(1000 << 3 | 2) + varint(PADDING)
    with open(dst, "wb") as f:
        if where == "before":
            f.write(header)
            f.truncate(len(header) + PADDING)
            f.seek(0, 2)
            f.write(data)
        else:
            f.write(data + header)
            f.truncate(len(data) + len(header) + PADDING)
    assert dst.stat().st_blocks * 512 < 64 << 20  # sparse
    return dst


@pytest.mark.parametrize("where", ["after", "before", "raw"])
def test_an_onnx_file_padded_with_600_mb_is_refused_unread(where: str, onnx_model: Path, image: Path,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = padded(onnx_model, tmp_path / "padded.onnx", where)
    err = stylize_refused(model, image, capsys)
    size = model.stat().st_size
    assert f"padded.onnx: refused: a {size}-byte file, more than the " in err and "(data appended?)" in err, err


def test_the_refusal_reads_no_padding(onnx_model: Path, tmp_path: Path) -> None:
    """In a child process: refused in seconds, its peak no higher than its imports."""
    result = load_in_child("exported", padded(onnx_model, tmp_path / "padded.onnx", "after"))
    assert "error" in result and "refused: a " in result["error"], result
    assert result["seconds"] < 5 and result["rss_mb"] < CHILD_RSS_MB, result


def test_endless_small_fields_stop_the_scan(onnx_model: Path, image: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The metadata scan itself is bounded: fields of 3 bytes each, fewer bytes than the bound."""
    field = varint(1000 << 3) + b"\x00"
    (tmp_path / "fields.onnx").write_bytes(onnx_model.read_bytes() + field * (MAX_TOP_FIELDS + 1))
    err = stylize_refused(tmp_path / "fields.onnx", image, capsys)
    assert f"fields.onnx: refused: more than {MAX_TOP_FIELDS} top-level fields" in err, err
