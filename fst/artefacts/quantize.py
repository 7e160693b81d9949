"""`fst export --quantize int8`: post-training static quantization of the ONNX export, for onnxruntime.

Each Conv but the output one (`fst.artefacts.quantized` says why) gets int8 weights (one scale per output channel) and uint8 input and output with one
scale each, in ONNX's QDQ form, by onnxruntime's ``quantize_static``: the activation ranges are the
min and max seen on calibration photos run through the fp32 network. onnxruntime fuses each
DequantizeLinear -> Conv -> QuantizeLinear into one int8 convolution (VNNI/AMX on recent x86).
Only the Convs are quantized: instance norm, padding and upsampling have no int8 kernels, and
quantizing them too (``quantize_static``'s default) measured slower, as each adds a round trip.

Calibration photos: ``--calibration FOLDER`` (its first `MAX_PHOTOS` images, sorted), else
`DEFAULT_PHOTOS`, eight of the embedded photos the sample shards train on, none of them one of
`fst compare`'s default evaluation photos, which stay held out. Each is used at `SIDE` px long side.
Why ONNX and not torch's PT2E flow, speed and quality: README.md (int8 for the CPU), docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fst.artefacts.quantized import conv_quant, quant_digest
from fst.assets import sample_photos_dir
from fst.core.errors import FstError, first_line
from fst.io.images import IMAGE_SUFFIXES, image_files, open_rgb

DEFAULT_PHOTOS = ("arc_de_triomphe", "bison", "chameleon", "colosseum", "dog", "giraffe", "machu_picchu", "kitten")
MAX_PHOTOS = 16
SIDE = 384  # the embedded photos' short side: what training crops come from


def calibration_photos(folder: Path | None) -> list[Path]:
    """The photos the activation ranges are measured on."""
    if folder is None:
        return [sample_photos_dir() / f"{name}.jpg" for name in DEFAULT_PHOTOS]
    if not folder.is_dir():
        raise FstError(f"{folder}: calibration folder not found")
    files = image_files(folder)
    if not files:
        raise FstError(f"{folder}: no calibration photos ({', '.join(IMAGE_SUFFIXES)})")
    return files[:MAX_PHOTOS]


def photo_array(path: Path, side: int = SIDE) -> np.ndarray:
    """(1, 3, H, W) float32 in [0, 1], the long side at most `side` (decoded with fst's bounds)."""
    img = open_rgb(path)
    img.thumbnail((side, side))
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1)[None] / 255.0


@contextlib.contextmanager
def quiet_root_logger() -> Iterator[None]:
    """quantize_static logs advice (pre-processing, a newer opset) to the root logger as warnings."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def int8_onnx(fp32: Any, photos: list[Path], n_styles: int) -> tuple[Any, str]:
    """The int8 QDQ model of fst's fp32 ONNX model proto `fp32`, calibrated on `photos` (with several
    styles, photo k in style k mod n), and the digest of its int8 numbers."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    import onnx

    convs = [n for n in fp32.graph.node if n.op_type == "Conv"]  # the output conv stays fp32 (quantized.py)
    feeds = []
    for k, path in enumerate(photos):
        feed = {"image": photo_array(path)}
        if n_styles > 1:
            feed["style_weights"] = np.eye(n_styles, dtype=np.float32)[[k % n_styles]]
        feeds.append(feed)

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(prefix="fst-int8-") as tmp, quiet_root_logger():
        out = Path(tmp) / "int8.onnx"
        try:
            quantize_static(fp32, out, Photos(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=[convs[-1].name])
        except Exception as e:  # noqa: BLE001 - onnxruntime's errors: one line
            raise FstError(f"int8 quantization failed: {first_line(e)}") from None
        proto = onnx.load(str(out))
    return proto, quant_digest(conv_quant(proto, "the int8 export"))
