"""`fst stylize` on clips keeps what is not video, or says in one line what it did not keep.

Before: subtitle streams, attachments and a timecode track were dropped without a word, and frames
whose timestamps went backwards were re-timed to decode order silently. The clips are made here
with PyAV: subtitles in Matroska (SubRip) and MP4 (mov_text), a MOV timecode track (the muxer
writes it from the video stream's timecode tag), a Matroska font attachment, a second video
stream, and packets muxed with a presentation time that goes back."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from fst.cli import main as cli

from nets import save_checkpoint, save_styles_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
SUBTITLES = [(0, b"Bonjour"), (333, b"le monde")]  # (pts in ms, text)


def make_clip(path: Path, subtitle: str | None = None, timecode: str | None = None, attachment: bool = False,
              second_video: bool = False, pts_order: list[int] | None = None) -> Path:
    """8 frames at 12 fps (mpeg4, every frame a key frame), with the streams asked for;
    `pts_order`: each packet's presentation time, in frames, as muxed."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.codec_context.time_base = Fraction(1, 12)
        if timecode:
            video.metadata["timecode"] = timecode
        other = out.add_stream("mpeg4", rate=12) if second_video else None
        if other is not None:
            other.width, other.height, other.pix_fmt = 32, 24, "yuv420p"
        subs = out.add_mux_stream(subtitle) if subtitle else None
        if subs is not None:
            subs.time_base, subs.metadata["language"] = Fraction(1, 1000), "fra"
        if attachment:
            out.add_attachment("font.ttf", "application/x-truetype-font", b"not really a font")
        packets = []
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 30 * i, np.uint8), format="rgb24")
            frame.pts = i
            packets += video.encode(frame)
            if other is not None:
                small = av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), np.uint8), format="rgb24")
                small.pts = i
                out.mux(other.encode(small))
        packets += video.encode(None)
        for i, packet in enumerate(packets):
            if pts_order:  # B-frame-like reordering as far as the muxer can tell: dts still grows
                packet.pts, packet.dts = pts_order[i], i - 2
            out.mux(packet)
        if other is not None:
            out.mux(other.encode(None))
        for ms, text in SUBTITLES if subs is not None else []:
            packet = av.Packet(text)
            packet.stream, packet.time_base, packet.pts, packet.dts, packet.duration = subs, subs.time_base, ms, ms, 300
            out.mux(packet)
    return path


def stylize(src: Path, out: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Run `fst stylize` on one clip: it must succeed; its stderr lines."""
    code = cli(["stylize", str(src), "--model", str(ckpt), "--out", str(out), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    return err.splitlines()


def subtitle_packets(path: Path) -> list[tuple[Fraction, bytes]]:
    """Each subtitle's time and bytes; the MP4 muxer fills the gaps between them with empty samples
    (b"\0\0") of its own."""
    with av.open(str(path)) as c:
        return [(Fraction(p.pts) * p.time_base, bytes(p)) for p in c.demux(c.streams.subtitles)
                if p.size and bytes(p) != b"\0\0"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", "subrip"), (".mp4", "mov_text")])
def test_subtitles_are_copied_untouched(suffix: str, codec: str, ckpt: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / f"in{suffix}", subtitle=codec)
    lines = stylize(src, tmp_path / f"out{suffix}", ckpt, capsys)
    assert not [line for line in lines if "not copied" in line], lines
    assert subtitle_packets(tmp_path / f"out{suffix}") == subtitle_packets(src)
    assert [(t * 1000, text) for t, text in subtitle_packets(src)] == SUBTITLES
    with av.open(str(tmp_path / f"out{suffix}")) as c:
        assert c.streams.subtitles[0].metadata.get("language") == "fra"


def test_subtitles_go_to_every_style_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = save_styles_checkpoint(tmp_path / "styles.ckpt", ["a", "b"])
    src = make_clip(tmp_path / "in.mkv", subtitle="subrip")
    stylize(src, tmp_path / "out.mkv", model, capsys)
    for label in ("a", "b"):
        assert subtitle_packets(tmp_path / f"out_{label}.mkv") == subtitle_packets(src)


def test_a_subtitle_the_output_cannot_hold_is_named_in_one_line(ckpt: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in.mkv", subtitle="subrip")
    lines = stylize(src, tmp_path / "out.mp4", ckpt, capsys)
    dropped = [line for line in lines if "not copied" in line]
    assert len(dropped) == 1 and dropped[0].startswith(f"fst stylize: {src}: stream #1 (subtitle, srt) not copied: "), lines
    assert "a .mkv output keeps it" in dropped[0]
    assert len(list(av.open(str(tmp_path / "out.mp4")).decode(video=0))) == 8


@pytest.mark.parametrize("suffix", [".mov", ".mp4", ".mkv", ".avi"])
def test_a_timecode_is_carried(suffix: str, ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in.mov", timecode="01:02:03:04")
    with av.open(str(src)) as c:
        assert c.streams.data and c.streams.data[0].metadata["timecode"] == "01:02:03:04"  # a tmcd track
    lines = stylize(src, tmp_path / f"out{suffix}", ckpt, capsys)
    dropped = [line for line in lines if "not copied" in line]
    with av.open(str(tmp_path / f"out{suffix}")) as c:
        tags = {k.lower(): v for k, v in c.streams.video[0].metadata.items()}
        if suffix == ".avi":
            assert "timecode" not in tags
            assert dropped == [f"fst stylize: {src}: stream #1 (data) (timecode 01:02:03:04) not copied: "
                               "a .avi file has no place for it"], lines
            return
        assert tags["timecode"] == "01:02:03:04" and not dropped, lines
        if suffix != ".mkv":  # MP4 and MOV hold it as a track, as the input did
            assert c.streams.data[0].metadata["timecode"] == "01:02:03:04"


def test_an_attachment_is_copied(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in.mkv", attachment=True)
    assert not [line for line in stylize(src, tmp_path / "out.mkv", ckpt, capsys) if "not copied" in line]
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert [(a.name, bytes(a.data)) for a in c.streams.attachments] == [("font.ttf", b"not really a font")]
    lines = stylize(src, tmp_path / "out.mp4", ckpt, capsys)
    assert f"fst stylize: {src}: stream #1 (attachment) 'font.ttf' not copied: only a .mkv output holds attachments" in lines


def test_a_second_video_stream_is_named(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in.mkv", second_video=True)
    lines = stylize(src, tmp_path / "out.mkv", ckpt, capsys)
    assert f"fst stylize: {src}: stream #1 (video, mpeg4) not copied: only the first video stream is stylized" in lines


def test_timestamps_that_go_back_are_said(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Frame 4 is muxed to show before frame 3: written in decode order, and said."""
    src = make_clip(tmp_path / "back.mkv", pts_order=[0, 1, 2, 4, 3, 5, 6, 7])
    with av.open(str(src)) as c:
        shown = [f.pts for f in c.decode(video=0)]
    assert shown != sorted(shown)  # what a decoder gives: a timestamp that goes back
    lines = stylize(src, tmp_path / "out.mkv", ckpt, capsys)
    said = [line for line in lines if "went back or repeated" in line]
    assert said == [f"fst stylize: {src}: 1 frame(s) whose timestamp went back or repeated (first: frame 4) were "
                    "written in the order decoded, each 1 tick after the frame before"], lines
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert len(list(c.decode(video=0))) == 8
    lines = stylize(make_clip(tmp_path / "fine.mkv"), tmp_path / "fine_out.mkv", ckpt, capsys)
    assert not [line for line in lines if "went back" in line], lines
