"""The study's clips (scripts/study_universal.py): frames written nearly lossless, so that what `fst
flicker` measures is the method's flicker, not the encoder's."""

from __future__ import annotations

from pathlib import Path


def write_clip(frames: "object", path: Path) -> None:
    """(T, H, W, 3) uint8 frames as an H.264 clip at 25 fps, CRF 4 (nearly lossless)."""
    import av
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"crf": "4"})
        s.height, s.width = frames.shape[1], frames.shape[2]
        s.pix_fmt = "yuv444p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
