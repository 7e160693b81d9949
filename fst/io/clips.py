"""Video clips through PyAV (libav* in-process, never an ffmpeg pipe): reading a clip's frames in
presentation order with its audio packets alongside, and writing frames and packets back.

Only frames are decoded and re-encoded; every audio and subtitle packet is remuxed untouched (same
bytes, same timestamps), attachments (a Matroska file's fonts) are copied, a timecode track is
carried as the video's timecode (the muxer writes it again), and each video frame keeps its own pts
in the input stream's time base, so a variable frame rate survives. A stream the output container
cannot hold, or that PyAV cannot copy (other data streams, video streams after the first), is
named in `ClipWriter.dropped`; frames whose timestamps do not increase are counted in `retimed`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from fst.core.errors import FstError, first_line

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
# Encoders by container, best first; the PyPI wheel ships libx264 and mpeg4. yuv420p: what players
# decode everywhere.
ENCODERS = {".webm": ("libvpx-vp9", "libvpx"), ".avi": ("mpeg4",)}
DEFAULT_ENCODERS = ("libx264", "mpeg4")
ENCODER_OPTIONS = {"libx264": {"crf": "18", "preset": "medium"}, "mpeg4": {"qscale": "2"}}
PIX_FMT = "yuv420p"
# libav* logs every damaged packet on its own; we say it once per clip instead.
logging.getLogger("libav").setLevel(logging.CRITICAL)


def is_clip(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def av_problem(e: BaseException) -> str:
    """An FFmpeg error as a short reason (its strerror; PyAV appends the file name itself)."""
    return str(getattr(e, "strerror", None) or first_line(e))


def upright_turns(rotation: float | None) -> int:
    """Quarter turns counter-clockwise (np.rot90's k) that put a frame upright: its display matrix
    says how far a player rotates it (counter-clockwise degrees, as PyAV's `VideoFrame.rotation`),
    the video twin of EXIF orientation."""
    return round((rotation or 0) / 90) % 4


@dataclass
class Clip:
    """An open input clip: its first video stream and every audio and subtitle stream."""

    path: Path
    container: av.container.InputContainer
    video: av.video.stream.VideoStream
    audio: list[av.audio.stream.AudioStream]
    subtitles: list[av.subtitles.stream.SubtitleStream] = field(default_factory=list)
    declared_frames: int | None = field(default=None)
    packets: int = 0  # video packets with data, read so far
    frames: int = 0  # video frames decoded from them

    @property
    def undecodable(self) -> int:
        """Video packets that gave no frame (once `items` is exhausted): refused or concealed away."""
        return max(0, self.packets - self.frames)

    def items(self) -> Iterator[av.VideoFrame | av.Packet]:
        """Video frames (decoded, presentation order) and audio and subtitle packets (as stored), in
        file order.

        A video packet the decoder refuses (or swallows) is dropped and counted (`undecodable`): its
        frame has no picture to stylise, and repeating a neighbour would invent one; the frames
        around it keep their timestamps."""
        for packet in self.container.demux(self.video, *self.audio, *self.subtitles):
            if packet.stream.type != "video":
                if packet.dts is not None:  # the demuxer's end-of-stream marker carries no data
                    yield packet
                continue
            self.packets += packet.size > 0
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                continue
            self.frames += len(frames)
            yield from frames


def open_clip(path: Path) -> Clip:
    """`path` opened for reading, or an FstError saying in one line why it cannot be."""
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise FstError(f"{path}: not a readable video ({av_problem(e)})") from None
    if not container.streams.video:
        container.close()
        raise FstError(f"{path}: no video stream")
    video = container.streams.video[0]
    video.thread_type = "AUTO"  # frame threads: decoding keeps up with the network on few cores
    return Clip(path, container, video, list(container.streams.audio), list(container.streams.subtitles),
                declared_frames=video.frames or None)


def frame_array(frame: av.VideoFrame, size: tuple[int, int], turns: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright, at `size` (Lanczos, as photos are downscaled)."""
    w, h = size if turns % 2 == 0 else size[::-1]  # scaled before the turn
    if (frame.width, frame.height) == (w, h):
        rgb = frame.to_ndarray(format="rgb24")
    else:
        rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="LANCZOS")
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def read_frames(path: Path, count: int, max_side: int | None = None, skip: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB: up to `count` frames of the clip after the first `skip`, upright, the
    long side scaled down to `max_side` (sides kept even). Memory is bounded by `count`, not by the
    clip's length; undecodable frames are left out, as when stylizing."""
    clip = open_clip(path)
    try:
        w, h = clip.video.codec_context.width, clip.video.codec_context.height
        scale = min(1.0, max_side / max(w, h)) if max_side else 1.0
        size = (even(round(w * scale)), even(round(h * scale)))
        frames: list[np.ndarray] = []
        seen = 0
        for item in clip.items():
            if isinstance(item, av.VideoFrame) and (seen := seen + 1) > skip:
                frames.append(frame_array(item, size, upright_turns(item.rotation)))
                if len(frames) == count:
                    break
    except av.FFmpegError as e:
        raise FstError(f"{path}: cannot decode ({av_problem(e)})") from None
    finally:
        clip.container.close()
    if not frames:
        raise FstError(f"{path}: no decodable frame after the first {skip} frames")
    return np.stack(frames)


def even(n: int) -> int:
    """yuv420p stores chroma per 2x2 block: encoders need even sides."""
    return max(2, n - n % 2)


def encoder_for(path: Path) -> str:
    names = ENCODERS.get(path.suffix.lower(), DEFAULT_ENCODERS)
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):
            continue
    raise FstError(f"{path}: no encoder for {path.suffix} in this PyAV build (tried {', '.join(names)})")


COLOR_TAGS = ("colorspace", "color_range", "color_primaries", "color_trc")
# Outputs whose muxer keeps a video stream's timecode tag (a tmcd track in MP4 and MOV, a tag in
# Matroska); AVI and the iPod muxer of .m4v drop it.
TIMECODE_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm")
KEPT_TAGS = ("language", "title", "handler_name")  # of a copied subtitle stream


def same_colors(src: av.video.codeccontext.VideoCodecContext, dst: av.video.codeccontext.VideoCodecContext) -> dict:
    """Tag `dst` with the colour matrix, range, primaries and transfer `src` declares, and return the
    conversion that writes RGB by them (empty when `src` declares no matrix).

    PyAV reads a frame to RGB by the matrix its stream declares, but would write RGB back by BT.601
    and leave the output untagged: a BT.709 clip (most HD video) would then come out with shifted
    colours in players, which read an untagged HD clip as BT.709."""
    if not all(hasattr(src, tag) for tag in COLOR_TAGS):  # PyAV before 15 has no colour tags
        return {}
    for tag in COLOR_TAGS:
        value = getattr(src, tag)
        if value not in (0, 2):  # 0 reserved, 2 unspecified: nothing declared
            setattr(dst, tag, value)
    if src.colorspace in (0, 2):
        return {}
    return {"dst_colorspace": src.colorspace, "dst_color_range": src.color_range or None}


def describe_stream(s: av.stream.Stream) -> str:
    """'stream #2 (subtitle, mov_text)': how a line names an input stream."""
    codec = s.codec_context.name if getattr(s, "codec_context", None) is not None else None
    return f"stream #{s.index} ({s.type}{', ' + codec if codec else ''})"


class ClipWriter:
    """Frames and audio packets to `tmp` (a temp path beside `target`, same suffix): the video stream
    in the input's time base, each input audio stream copied as it is."""

    def __init__(self, tmp: Path, target: Path, clip: Clip, size: tuple[int, int]):
        self.target = target
        self.container = av.open(str(tmp), "w")
        try:
            codec = encoder_for(target)
            rate = clip.video.average_rate or clip.video.guessed_rate or Fraction(25)
            self.video = self.container.add_stream(codec, rate=rate, options=ENCODER_OPTIONS.get(codec, {}))
            self.video.width, self.video.height = size
            self.video.pix_fmt = PIX_FMT
            # Frame threads, as the ffmpeg command line uses: PyAV's default (slice threads only)
            # makes x264 split each frame instead, slower per frame (docs/benchmarks.md).
            self.video.codec_context.thread_type = "AUTO"
            self.time_base = clip.video.time_base or Fraction(1, 90000)
            self.video.codec_context.time_base = self.time_base
            self.video.time_base = self.time_base
            # mpeg4 stores time as 16-bit ticks: a time base finer than 1/65535 is refused at open.
            if codec == "mpeg4" and self.time_base.denominator > 65535:
                self.time_base = Fraction(1, max(1, min(65535, round(float(rate) * 1000))))
                self.video.codec_context.time_base = self.time_base
            self.colors = same_colors(clip.video.codec_context, self.video.codec_context)
            self.copied = {s.index: self.container.add_stream_from_template(s) for s in clip.audio}
            self.dropped = self._copy_streams(clip, target)
        except BaseException:
            self.container.close()
            raise
        self.last_pts: int | None = None
        self.frames = 0
        self.retimed: list[int] = []  # indices of frames whose pts did not increase, written 1 tick on

    def _copy_streams(self, clip: Clip, target: Path) -> list[str]:
        """Add the input's subtitle streams, attachments and timecode to the output; one line for
        each stream that is not copied, and why."""
        dropped = []
        for s in clip.subtitles:
            try:
                out = self.container.add_stream_from_template(s)
            except (ValueError, av.FFmpegError) as e:
                dropped.append(f"{describe_stream(s)} not copied: {first_line(e)} (a {clip.path.suffix} output keeps it)")
                continue
            out.metadata.update({k: v for k, v in s.metadata.items() if k.lower() in KEPT_TAGS})
            self.copied[s.index] = out
        for s in clip.container.streams.attachments:  # other muxers accept one, then fail at the header
            if self.container.format.name != "matroska":
                dropped.append(f"{describe_stream(s)} {s.name!r} not copied: only a .mkv output holds attachments")
                continue
            self.container.add_attachment(s.name, s.mimetype, bytes(s.data))
        tags = [clip.video.metadata, *(s.metadata for s in clip.container.streams.data)]
        timecode = next((t.get("timecode") or t.get("TIMECODE") for t in tags if t.get("timecode") or t.get("TIMECODE")), None)
        if timecode and target.suffix.lower() in TIMECODE_SUFFIXES:
            self.video.metadata["timecode"] = timecode
        for s in clip.container.streams.data:
            if timecode and s.metadata.get("timecode") == timecode:  # the timecode track, written again
                if target.suffix.lower() not in TIMECODE_SUFFIXES:
                    dropped.append(f"{describe_stream(s)} (timecode {timecode}) not copied: a {target.suffix} file "
                                   "has no place for it")
                continue
            dropped.append(f"{describe_stream(s)} not copied: PyAV cannot copy a data stream")
        dropped += [f"{describe_stream(s)} not copied: only the first video stream is stylized"
                    for s in clip.container.streams.video if s.index != clip.video.index]
        return dropped

    def write_frame(self, rgb: np.ndarray, pts: int | None, time_base: Fraction | None) -> None:
        """One (H, W, 3) uint8 frame at `pts` (in `time_base`, the input's)."""
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        if self.colors:  # to YUV by the input's matrix and range, as its frames were read
            frame = frame.reformat(format=PIX_FMT, **self.colors)
        if pts is not None and time_base is not None and time_base != self.time_base:
            pts = round(pts * time_base / self.time_base)
        if pts is None or (self.last_pts is not None and pts <= self.last_pts):
            if pts is not None:  # went back or repeated: said once per clip (`retimed`)
                self.retimed.append(self.frames)
            pts = 0 if self.last_pts is None else self.last_pts + 1  # encoders refuse pts that do not grow
        self.frames += 1
        frame.pts, frame.time_base, self.last_pts = pts, self.time_base, pts
        self.container.mux(self.video.encode(frame))

    def write_packet(self, packet: av.Packet, index: int) -> None:
        """An audio or subtitle packet of input stream `index`, remuxed untouched (one of a stream
        not copied is left out). The index is the caller's: muxing moves the packet to our stream."""
        if index not in self.copied:
            return
        packet.stream = self.copied[index]
        self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and write the trailer (the file is whole only after this)."""
        self.container.mux(self.video.encode(None))
        self.container.close()

    def abandon(self) -> None:
        """Close without flushing: the temp file is removed by the caller's `writing`."""
        try:
            self.container.close()
        except Exception:  # already failing: the first error is the one to report
            pass
