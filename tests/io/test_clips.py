"""Clips read and written by fst.io.clips: colours kept by the input's matrix, frames read bounded."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fst.core.errors import FstError
from fst.io.clips import ClipWriter, open_clip, read_frames

RED = (220, 40, 30)  # saturated: BT.601 and BT.709 put it ~10 levels apart


def tagged_clip(path: Path, colorspace: int | None, frames: int = 4) -> Path:
    """A clip of a flat red, its YUV by `colorspace` (1 = BT.709) and tagged so; None: untagged."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 12)
        if colorspace is not None:
            cc = stream.codec_context
            cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc = colorspace, 1, colorspace, colorspace
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), RED, np.uint8), format="rgb24")
            if colorspace is not None:
                frame = frame.reformat(format="yuv420p", dst_colorspace=colorspace, dst_color_range=1)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def copy_through_writer(src: Path, dst: Path) -> None:
    clip = open_clip(src)
    writer = ClipWriter(dst, dst, clip, (64, 48))
    for item in clip.items():
        writer.write_frame(item.to_ndarray(format="rgb24"), item.pts, item.time_base)
    writer.close()
    clip.container.close()


@pytest.mark.parametrize("colorspace", [1, None], ids=["bt709", "untagged"])
def test_colours_survive_a_pass_through_the_writer(tmp_path: Path, colorspace: int | None) -> None:
    src = tagged_clip(tmp_path / "in.mp4", colorspace)
    copy_through_writer(src, tmp_path / "out.mp4")
    with av.open(str(tmp_path / "out.mp4")) as c:
        cc = c.streams.video[0].codec_context
        tags = (cc.colorspace, cc.color_range, cc.color_primaries, cc.color_trc)
        rgb = next(c.decode(video=0)).to_ndarray(format="rgb24")[24, 32]
    assert tags == ((1, 1, 1, 1) if colorspace else (2, 0, 2, 2))  # the input's tags, or none as the input
    assert np.abs(rgb.astype(int) - RED).max() <= 3, rgb  # read back by its tag: the same red


def test_read_frames_is_bounded_skips_and_scales(tmp_path: Path) -> None:
    src = tagged_clip(tmp_path / "in.mp4", 1, frames=6)
    frames = read_frames(src, 3, max_side=32, skip=2)
    assert frames.shape == (3, 24, 32, 3) and frames.dtype == np.uint8
    assert read_frames(src, 100).shape[0] == 6
    with pytest.raises(FstError, match="no decodable frame"):
        read_frames(src, 2, skip=6)
    (tmp_path / "text.mp4").write_text("not a clip")
    with pytest.raises(FstError, match="text.mp4: not a readable video"):
        read_frames(tmp_path / "text.mp4", 2)
