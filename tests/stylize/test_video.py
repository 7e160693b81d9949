"""`fst stylize` on clips: the same frames, timestamps and size, audio untouched, damaged clips, a
folder mixing photos and clips, every option per frame, nothing half-written. Each test makes its own
short clips with PyAV."""

from __future__ import annotations

import signal
import struct
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from fst.cli import main as cli
from fst.core import precision
from fst.core.signals import Interrupted
from fst.io.clips import upright_turns
from fst.stylize import video
from fst.stylize.compile_choice import compile_pays
from fst.stylize.image import Options
from fst.stylize.stylizer import Stylizer

from nets import save_checkpoint, save_styles_checkpoint
from processes import STOP_WITHIN_S, finish, fst_process, one_error_line, wait_until

pytestmark = pytest.mark.usefixtures("one_thread")
VFR_MS = [0, 40, 90, 100, 250, 260, 300, 400, 410, 500, 700, 710]  # frame times, milliseconds


def make_clip(path: Path, times_ms: list[int] | None = None, size: tuple[int, int] = (64, 48),
              codec: str = "libx264", audio: str | None = None) -> Path:
    """12 frames (a moving bar on a changing red) at `times_ms` (default 12 fps), with a 440 Hz sine
    track in `audio` if given."""
    times_ms = times_ms or [i * 1000 // 12 for i in range(12)]
    out = av.open(str(path), "w")
    stream = out.add_stream(codec, rate=12)
    stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    sound, rate = (out.add_stream(audio, rate=8000, layout="mono"), 8000) if audio else (None, 8000)  # all before muxing
    for i, t in enumerate(times_ms):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[..., 0], img[:, : 5 * i % size[0], 1] = 20 * i % 256, 200
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = t, Fraction(1, 1000)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
    if sound is not None:
        step, fmt = sound.codec_context.frame_size or 1024, sound.codec_context.format.name
        for start in range(0, rate * (times_ms[-1] + 100) // 1000, step):
            wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(start, start + step) / rate)
            samples = (wave * 32767).astype(np.int16) if fmt.startswith("s16") else wave.astype(np.float32)
            frame = av.AudioFrame.from_ndarray(samples[None], format=fmt, layout="mono")
            frame.sample_rate, frame.pts = rate, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    out.close()
    return path


def video_frames(path: Path) -> list[av.VideoFrame]:
    """The frames that decode (a damaged packet's is skipped)."""
    frames = []
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            try:
                frames += packet.decode()
            except av.error.InvalidDataError:
                continue
    return frames


def times(path: Path) -> list[Fraction]:
    return [Fraction(f.pts) * f.time_base for f in video_frames(path)]


def audio_packets(path: Path) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as c:
        return [(p.pts, bytes(p)) for p in c.demux(audio=0) if p.dts is not None]


def stylize(*args: str | Path) -> int:
    return cli(["stylize", *map(str, args), "--quiet"])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def test_clip_with_audio_keeps_frames_timestamps_size_and_audio(ckpt: Path, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mp4", audio="aac")
    assert stylize(src, "--model", ckpt, "--out", tmp_path / "out.mp4") == 0
    out = video_frames(tmp_path / "out.mp4")
    assert len(out) == 12 and (out[0].width, out[0].height) == (64, 48)
    assert times(tmp_path / "out.mp4") == times(src)
    assert len(audio_packets(src)) > 3 and audio_packets(tmp_path / "out.mp4") == audio_packets(src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4"]  # no temp left
    # stylised, not copied: the tiny net changes the picture
    assert np.abs(out[5].to_ndarray(format="rgb24").astype(int) - video_frames(src)[5].to_ndarray(format="rgb24")).mean() > 5


def test_variable_frame_rate_and_pcm_audio(ckpt: Path, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "vfr.mkv", VFR_MS, audio="pcm_s16le")
    assert stylize(src, "--model", ckpt, "--out", tmp_path / "out.mkv") == 0
    assert times(tmp_path / "out.mkv") == times(src) == [Fraction(t, 1000) for t in VFR_MS]
    assert audio_packets(tmp_path / "out.mkv") == audio_packets(src)


def test_no_audio_mpeg4_and_max_size(ckpt: Path, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.avi", codec="mpeg4", size=(80, 60))
    assert stylize(src, "--model", ckpt, "--out", tmp_path / "out.avi", "--max-size", "40") == 0
    out = video_frames(tmp_path / "out.avi")
    assert len(out) == 12 and (out[0].width, out[0].height) == (40, 30)
    assert times(tmp_path / "out.avi") == times(src)


def test_damaged_clips_are_one_line_and_leave_no_file(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = make_clip(tmp_path / "whole.mp4", audio="aac").read_bytes()
    (src := tmp_path / "in").mkdir()
    (src / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # mp4's index is at the end: gone
    (src / "noise.mkv").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (src / "empty.mov").write_bytes(b"")
    capsys.readouterr()
    assert stylize(src, "--model", ckpt, "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err.splitlines()
    for name in ("cut.mp4", "noise.mkv", "empty.mov"):
        assert len([line for line in err if name in line]) == 1, err
    assert "0 of 3 written" in err[-1] and list((tmp_path / "out").iterdir()) == []


def test_undecodable_frames_are_dropped_and_said(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "clip.mkv", VFR_MS)
    with av.open(str(src)) as c:
        packets = [(p.pos, bytes(p)) for p in c.demux(video=0) if p.size]
    data = bytearray(src.read_bytes())
    for pos, payload in packets[5:7]:  # two frames' data overwritten in place: the file still parses
        at = data.find(payload, pos)
        data[at:at + len(payload)] = b"\xff" * len(payload)
    (bad := tmp_path / "bad.mkv").write_bytes(bytes(data))
    decodable = times(bad)
    assert len(decodable) < 12
    capsys.readouterr()
    assert stylize(bad, "--model", ckpt, "--out", tmp_path / "out.mkv") == 0
    err = capsys.readouterr().err
    assert err.count("could not be decoded and were dropped") == 1, err
    assert times(tmp_path / "out.mkv") == decodable  # the others keep their timestamps


def test_folder_mixing_a_photo_and_a_clip(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (src := tmp_path / "in").mkdir()
    make_clip(src / "clip.mp4")
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(src / "photo.jpg")
    (tmp_path / "out").mkdir()
    # --ext applies to inputs of its kind: the photo becomes a PNG, the clip stays an mp4
    assert stylize(src, "--model", ckpt, "--out", tmp_path / "out", "--ext", "png") == 0
    assert capsys.readouterr().out.startswith("stylized 1 image and 1 clip -> ")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4", "photo.png"]
    assert len(video_frames(tmp_path / "out" / "clip.mp4")) == 12
    assert stylize(src / "clip.mp4", "--model", ckpt, "--out", tmp_path / "clip.png") == 2  # a clip is no image


def test_styles_strength_colour_and_tiles_per_frame(tmp_path: Path) -> None:
    model = save_styles_checkpoint(tmp_path / "two.ckpt", ["ink", "oil"])
    src = make_clip(tmp_path / "clip.mkv", VFR_MS)
    assert stylize(src, "--model", model, "--out", tmp_path / "o.mkv", "--tile", "32", "--overlap", "4",
                   "--preserve-color", "--strength", "0.5") == 0
    for name in ("o_ink.mkv", "o_oil.mkv"):  # one output per style, as for photos
        assert times(tmp_path / name) == times(src)
    ink, oil = (video_frames(tmp_path / n)[3].to_ndarray(format="rgb24").astype(int) for n in ("o_ink.mkv", "o_oil.mkv"))
    assert np.abs(ink - oil).mean() > 1
    assert stylize(src, "--model", model, "--out", tmp_path / "none.mkv", "--mix", "ink=1,oil=1", "--strength", "0") == 0
    out = video_frames(tmp_path / "none.mkv")[3].to_ndarray(format="rgb24").astype(int)
    assert np.abs(out - video_frames(src)[3].to_ndarray(format="rgb24")).mean() < 6  # strength 0: the content


@pytest.mark.parametrize("overlap", [False, True], ids=["in turn", "threads"])
def test_a_stop_signal_mid_clip_leaves_nothing(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               overlap: bool) -> None:
    src = make_clip(tmp_path / "clip.mp4", audio="aac")
    (out := tmp_path / "out").mkdir()
    real, calls = video.stylize_batch, []

    def stop_on_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted(15)
        return real(*args, **kwargs)

    monkeypatch.setattr(video, "stylize_batch", stop_on_second)
    with pytest.raises(Interrupted):
        video.stylize_clip(video.Stylizer(ckpt, device="cpu"), src, [(None, out / "clip.mp4")], progress=False,
                           overlap=overlap)
    assert list(out.iterdir()) == []
    assert not [t for t in threading.enumerate() if t.name in ("fst-decode", "fst-encode")]


def test_decoding_and_encoding_run_beside_the_network(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_clip(tmp_path / "clip.mp4", audio="aac")
    seen: dict[str, set[str]] = {"decode": set(), "network": set(), "encode": set()}

    def spy(stage: str, real):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            seen[stage].add(threading.current_thread().name)
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(video, "frame_array", spy("decode", video.frame_array))
    monkeypatch.setattr(video, "stylize_batch", spy("network", video.stylize_batch))
    monkeypatch.setattr(video.ClipWriter, "write_frame", spy("encode", video.ClipWriter.write_frame))
    stylizer = video.Stylizer(ckpt, device="cpu")
    video.stylize_clip(stylizer, src, [(None, tmp_path / "out.mp4")], progress=False)
    assert seen == {"decode": {"fst-decode"}, "network": {threading.main_thread().name}, "encode": {"fst-encode"}}
    assert len(video_frames(tmp_path / "out.mp4")) == 12
    for stage in seen.values():
        stage.clear()
    video.stylize_clip(stylizer, src, [(None, tmp_path / "out.mp4")], progress=False, overlap=False)
    assert seen == {stage: {threading.main_thread().name} for stage in seen}  # in turn, as asked


@pytest.mark.slow
def test_sigterm_mid_clip_ends_the_threads_and_leaves_nothing(ckpt: Path, tmp_path: Path) -> None:
    """A real signal to a real `fst stylize` while its decoder and encoder threads run: one line, exit
    143, no file."""
    src = make_clip(tmp_path / "long.mp4", [i * 40 for i in range(400)], size=(320, 240), codec="mpeg4", audio="aac")
    (out := tmp_path / "out").mkdir()
    with fst_process(["stylize", str(src), "--model", str(ckpt), "--out", str(out), "--quiet"]) as proc:
        wait_until(lambda: any(out.iterdir()) or proc.poll() is not None, 120, "the clip's temp file")
        time.sleep(1)  # frames in every stage: decoded, in the network, being encoded
        assert proc.poll() is None, proc.communicate(timeout=10)[0][-3000:]
        proc.send_signal(signal.SIGTERM)
        _, said = finish(proc, timeout=STOP_WITHIN_S)
    assert proc.returncode == 128 + signal.SIGTERM, said[-2000:]
    assert one_error_line(said, "stylize") == "fst stylize: interrupted by SIGTERM"
    assert list(out.iterdir()) == []


def test_a_rotated_clip_is_stylised_upright() -> None:
    # A phone's display matrix (PyAV's frame.rotation, counter-clockwise degrees) turns the pixels
    # as EXIF orientation turns a photo's: 90 -> one quarter turn, width and height swapped.
    assert [upright_turns(r) for r in (0, 90, -90, 180, 270, None)] == [0, 1, 3, 2, 3, 0]
    img = np.zeros((48, 64, 3), np.uint8)
    img[0, -1] = 255  # top right
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    upright = video.frame_array(frame, (48, 64), 1)
    assert upright.shape == (64, 48, 3) and upright[0, 0].tolist() == [255, 255, 255]  # now top left


def with_display_matrix(src: Path, dst: Path, matrix: tuple[int, ...]) -> Path:
    """`src` (an .mp4 PyAV wrote: one track, version-0 tkhd) with its track's display matrix set, as a
    phone writes it: the 9 big-endian 16.16/2.30 fixed-point numbers 44 bytes after 'tkhd'."""
    data = bytearray(src.read_bytes())
    at = data.index(b"tkhd") + 44
    assert struct.unpack(">9i", data[at:at + 36]) == (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)  # identity
    data[at:at + 36] = struct.pack(">9i", *matrix)
    dst.write_bytes(bytes(data))
    return dst


def test_a_phone_clip_shot_upright_comes_out_upright(ckpt: Path, tmp_path: Path) -> None:
    out = av.open(str(tmp_path / "stored.mp4"), "w")
    stream = out.add_stream("libx264", rate=12)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    for i in range(4):
        img = np.zeros((48, 64, 3), np.uint8)
        img[:16, -16:] = 255  # top right, as stored
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, 12)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
    out.close()
    # "rotate 90° clockwise to show": the matrix of a phone held upright with its camera sideways
    src = with_display_matrix(tmp_path / "stored.mp4", tmp_path / "phone.mp4", (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000))
    assert video_frames(src)[0].rotation == -90
    assert stylize(src, "--model", ckpt, "--out", tmp_path / "out.mp4", "--strength", "0") == 0
    frames = video_frames(tmp_path / "out.mp4")
    assert len(frames) == 4 and (frames[0].width, frames[0].height) == (48, 64)  # upright: portrait
    assert not frames[0].rotation  # the pixels are turned, so no player turns them again
    img = frames[2].to_ndarray(format="rgb24").mean(axis=2)
    assert img[-16:, -16:].mean() > 200 and img[:-20].mean() < 30  # top right, turned clockwise: bottom right


def test_a_full_disk_is_one_line_and_leaves_nothing(ckpt: Path, tmp_path: Path) -> None:
    src = make_clip(tmp_path / "clip.mkv", VFR_MS, audio="pcm_s16le")
    (out := tmp_path / "out").mkdir()
    # A file-size limit fails the write as a full disk does (EFBIG instead of ENOSPC).
    script = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); import fst.cli; "
              "resource.setrlimit(resource.RLIMIT_FSIZE, (6000, 6000)); sys.exit(fst.cli.main(sys.argv[1:]))")
    run = subprocess.run([sys.executable, "-c", script, "stylize", str(src), "--model", str(ckpt), "--out", str(out), "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "cannot write" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 2, run.stderr  # the file's line and the summary
    assert list(out.iterdir()) == []


def test_compile_auto_counts_every_frame_of_a_clip(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FST_CPU_BF16", "0")  # fp32 on any CPU: its measured saving per megapixel
    precision.cpu_bf16.cache_clear()
    try:
        stylizer = Stylizer(ckpt, device="cpu")
        one = make_clip(tmp_path / "one.mp4", [0], size=(1920, 1080), codec="mpeg4")
        many = make_clip(tmp_path / "many.mp4", [40 * i for i in range(100)], size=(1920, 1080), codec="mpeg4")
        assert compile_pays("auto", stylizer, [one], Options())[0] is False  # 2 Mpx: nothing to gain
        pays, why = compile_pays("auto", stylizer, [many], Options())  # 207 Mpx: ~62 s saved
        assert pays and "~62 s saved" in why, why
        assert compile_pays("auto", stylizer, [many], Options(max_size=640))[0] is False  # frames downscaled first
    finally:
        precision.cpu_bf16.cache_clear()
