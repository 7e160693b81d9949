"""One clip through a `Stylizer`: every frame stylised with the options photos get (style or blend,
strength, colour, tiles, --max-size), streamed from the input to each output.

Decoding, the network and encoding overlap: a thread decodes ahead of the network and another encodes
behind it (`fst.core.background`; PyAV releases the GIL while it demuxes, decodes, scales and
encodes). On a GPU that hides the CPU's share of the work behind the network's; on a CPU, where
the network takes every core and nearly all the time, it measured neither slower nor much faster
than taking the stages in turn (docs/benchmarks.md).

Memory does not grow with the clip's length: at most (2 QUEUED + 2) BATCH frames are held (decoded
frames queued for the network, the batch being gathered, the batch in the network, and QUEUED
stylised batches per output queued for the encoder), plus what libav* keeps itself (the
decoder's and encoder's reference and look-ahead frames, a few dozen at most for x264, and audio
and subtitle packets the muxer holds until the video catches up, at most its 10 s interleave window; audio
before the first video frame is held until that frame opens the outputs). Each output goes to a temp file beside it and
is renamed only once the whole clip is written (`fst.io.files.writing`): a stop signal, a full disk
or a clip that cannot be read on leaves nothing under the output's name.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from tqdm import tqdm

from fst.core import background
from fst.core.errors import FstError
from fst.io.clips import (
    Clip,
    ClipWriter,
    av_problem,
    even,
    frame_array,
    open_clip,
    upright_turns,
)
from fst.io.files import writing
from fst.stylize.image import (
    Options,
    Output,
    blend,
    check_min_side,
    fit_size,
    keep_content_color,
    run_network,
)
from fst.stylize.stylizer import Stylizer
from fst.stylize.temporal_blend import ClipBlend

BATCH = 4  # frames per network pass: amortises per-call overhead, bounds memory (see above)
QUEUED = 2  # batches waiting on each side of the network: decoded frames, stylised batches


def frame_size(clip: Clip, opts: Options, turns: int) -> tuple[int, int]:
    """(width, height) written: upright, after --max-size, sides even for yuv420p."""
    w, h = clip.video.codec_context.width, clip.video.codec_context.height
    if turns % 2:
        w, h = h, w
    check_min_side((w, h), opts.max_size)
    fw, fh = fit_size((w, h), opts.max_size) or (w, h)
    return even(fw), even(fh)


def stylize_batch(stylizer: Stylizer, frames: list[np.ndarray], weights: torch.Tensor | None,
                  opts: Options) -> np.ndarray:
    """(B, H, W, 3) uint8 frames stylised per `opts` for the style `weights`."""
    content = torch.from_numpy(np.stack(frames)).to(stylizer.device).permute(0, 3, 1, 2).float().div(255)
    stylizer.style = weights
    out = run_network(stylizer, content, opts)
    if opts.colour is not None:  # each frame matched as a whole (tiles joined)
        out = opts.colour.apply(out, weights)
    if opts.preserve_color:
        out = keep_content_color(out, content)
    out = blend(out, content, opts.strength)
    return out.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def stylize_clip(stylizer: Stylizer, src: Path, outputs: list[Output], opts: Options = Options(),
                 progress: bool = True, overlap: bool = True) -> int:
    """Stylise `src` to each output (one per style chosen), decoding it once; how many were written.
    `overlap`: decode and encode in threads beside the network; False takes the stages in turn."""
    clip = open_clip(src)
    try:
        with contextlib.ExitStack() as temps:
            tmps = [temps.enter_context(writing(dst)) for _, dst in outputs]
            frames = _run(stylizer, clip, list(zip(tmps, outputs)), opts, progress, overlap)
            # leaving the stack renames every temp file to its output
    except av.FFmpegError as e:  # a clip damaged past what the decoder conceals, or an encoder refusing
        raise FstError(f"{src}: {av_problem(e)}") from None
    finally:
        clip.container.close()
    if clip.undecodable:
        tqdm.write(f"fst stylize: {src}: {clip.undecodable} damaged video packet(s) could not be decoded and were "
                   f"dropped; {frames} frames written", file=sys.stderr)
    return len(outputs)


Frame = tuple[np.ndarray, int | None, Fraction | None]  # (H, W, 3) uint8 upright, pts, time base


def decoded(clip: Clip, opts: Options) -> Iterator[av.Packet | Frame]:
    """The clip's audio packets and its frames as arrays, sized by the first frame (upright, --max-size)."""
    size, turns = None, 0
    for item in clip.items():
        if isinstance(item, av.Packet):
            yield item
            continue
        if size is None:
            turns = upright_turns(item.rotation)
            size = frame_size(clip, opts, turns)
        yield frame_array(item, size, turns), item.pts, item.time_base


def _run(stylizer: Stylizer, clip: Clip, outputs: list[tuple[Path, Output]], opts: Options, progress: bool,
         threaded: bool) -> int:
    """Decode - stylise - encode, overlapping in threads if `threaded`; the frames written to each output."""
    writers: list[ClipWriter] = []
    held: list[av.Packet] = []  # audio before the first frame: the writers open once its size is known
    batch: list[Frame] = []
    written = 0
    smooth = ClipBlend(opts.temporal, len(outputs)) if opts.temporal else None  # --temporal: state across batches
    bar = tqdm(total=clip.declared_frames, desc=clip.path.name, unit="frame", leave=False,
               disable=not progress or None, file=sys.stderr)

    def encode(job: av.Packet | tuple[list[np.ndarray], list[Frame]]) -> None:
        if isinstance(job, av.Packet):
            index = job.stream.index
            for w in writers:
                w.write_packet(job, index)
            return
        styled, frames = job
        for w, out in zip(writers, styled):
            for rgb, (_, pts, time_base) in zip(out, frames):
                w.write_frame(rgb, pts, time_base)

    try:
        with background.ahead(decoded(clip, opts), QUEUED * BATCH, "fst-decode", threaded) as items, \
                background.behind(encode, QUEUED, "fst-encode", threaded) as put:
            for item in items:
                if isinstance(item, av.Packet):
                    if writers:
                        put(item)
                    else:
                        held.append(item)
                    continue
                if not writers:
                    h, w = item[0].shape[:2]
                    writers.extend(ClipWriter(tmp, dst, clip, (w, h)) for tmp, (_, dst) in outputs)
                    for line in dict.fromkeys(line for w in writers for line in w.dropped):
                        tqdm.write(f"fst stylize: {clip.path}: {line}", file=sys.stderr)
                    for packet in held:
                        put(packet)
                    held.clear()
                batch.append(item)
                if len(batch) == BATCH:
                    written += _flush(stylizer, batch, put, outputs, opts, bar, smooth)
            if not writers:
                raise FstError(f"{clip.path}: no video frame could be decoded")
            written += _flush(stylizer, batch, put, outputs, opts, bar, smooth)
        for w in writers:  # every frame is encoded: flush each encoder, write each trailer
            w.close()
        if writers[0].retimed:  # every output got the same timestamps
            retimed = writers[0].retimed
            tqdm.write(f"fst stylize: {clip.path}: {len(retimed)} frame(s) whose timestamp went back or repeated "
                       f"(first: frame {retimed[0]}) were written in the order decoded, each 1 tick after the frame "
                       "before", file=sys.stderr)
        writers.clear()
    finally:
        for w in writers:  # only after a failure: each is closed and cleared on success
            w.abandon()
        bar.close()
    return written


def _flush(stylizer: Stylizer, batch: list[Frame], put: Callable[[tuple[list[np.ndarray], list[Frame]]], None],
           outputs: list[tuple[Path, Output]], opts: Options, bar: tqdm, smooth: ClipBlend | None = None) -> int:
    """Stylise the batch for each output (blended with the frames before if `smooth`), hand it to the
    encoder, empty it; how many frames it held."""
    if not batch:
        return 0
    arrays = [f for f, _, _ in batch]
    styled = [stylize_batch(stylizer, arrays, weights, opts) for _, (weights, _) in outputs]
    put((smooth(arrays, styled) if smooth else styled, list(batch)))
    n = len(batch)
    bar.update(n)
    batch.clear()
    return n
