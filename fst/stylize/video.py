"""One clip through a `Stylizer`: every frame stylised with the options photos get (style or blend,
strength, colour, tiles, --max-size), streamed from the input to each output.

Memory does not grow with the clip's length: at most `BATCH` decoded frames wait for the network
(one batch, the bounded queue between decoder and network), plus what libav* keeps itself (the
decoder's and encoder's reference and look-ahead frames, a few dozen at most for x264, and audio
packets the muxer holds until the video catches up, at most its 10 s interleave window; audio
before the first video frame is held until that frame opens the outputs). Each output goes to a temp file beside it and
is renamed only once the whole clip is written (`fst.io.files.writing`): a stop signal, a full disk
or a clip that cannot be read on leaves nothing under the output's name.
"""

from __future__ import annotations

import contextlib
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from tqdm import tqdm

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
)
from fst.stylize.stylizer import Stylizer

BATCH = 4  # frames per network pass: amortises per-call overhead, bounds memory (see above)


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
    if opts.tile is not None:  # tiles take whole-image statistics per image: one frame a pass
        out = torch.cat([stylizer(c[None], opts.tile, opts.overlap) for c in content])
    else:
        out = stylizer(content, opts.tile, opts.overlap)
    if opts.preserve_color:
        out = keep_content_color(out, content)
    out = blend(out, content, opts.strength)
    return out.mul(255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def stylize_clip(stylizer: Stylizer, src: Path, outputs: list[Output], opts: Options = Options(),
                 progress: bool = True) -> int:
    """Stylise `src` to each output (one per style chosen), decoding it once; how many were written."""
    clip = open_clip(src)
    try:
        with contextlib.ExitStack() as temps:
            tmps = [temps.enter_context(writing(dst)) for _, dst in outputs]
            frames = _run(stylizer, clip, list(zip(tmps, outputs)), opts, progress)
            # leaving the stack renames every temp file to its output
    except av.FFmpegError as e:  # a clip damaged past what the decoder conceals, or an encoder refusing
        raise FstError(f"{src}: {av_problem(e)}") from None
    finally:
        clip.container.close()
    if clip.undecodable:
        tqdm.write(f"fst stylize: {src}: {clip.undecodable} damaged video packet(s) could not be decoded and were "
                   f"dropped; {frames} frames written", file=sys.stderr)
    return len(outputs)


def _run(stylizer: Stylizer, clip: Clip, outputs: list[tuple[Path, Output]], opts: Options, progress: bool) -> int:
    """The decode - stylise - encode loop; the number of frames written to each output."""
    writers: list[ClipWriter] = []
    held: list[av.Packet] = []  # audio before the first frame: the writers open once its size is known
    batch: list[tuple[np.ndarray, int | None, Fraction | None]] = []
    size, turns, written = None, 0, 0
    bar = tqdm(total=clip.declared_frames, desc=clip.path.name, unit="frame", leave=False,
               disable=not progress or None, file=sys.stderr)
    try:
        for item in clip.items():
            if isinstance(item, av.Packet):
                if writers:
                    for w in writers:
                        w.write_packet(item)
                else:
                    held.append(item)
                continue
            if not writers:
                turns = upright_turns(item.rotation)
                size = frame_size(clip, opts, turns)
                for tmp, (_, dst) in outputs:
                    writers.append(ClipWriter(tmp, dst, clip, size))
                for packet in held:
                    for w in writers:
                        w.write_packet(packet)
                held.clear()
            batch.append((frame_array(item, size, turns), item.pts, item.time_base))
            if len(batch) == BATCH:
                written += _flush(stylizer, batch, writers, outputs, opts)
                bar.update(len(batch))
                batch.clear()
        if not writers:
            raise FstError(f"{clip.path}: no video frame could be decoded")
        written += _flush(stylizer, batch, writers, outputs, opts)
        bar.update(len(batch))
        for w in writers:
            w.close()
        writers.clear()
    finally:
        for w in writers:  # only after a failure: each is closed and cleared on success
            w.abandon()
        bar.close()
    return written


def _flush(stylizer: Stylizer, batch: list[tuple[np.ndarray, int | None, Fraction | None]],
           writers: list[ClipWriter], outputs: list[tuple[Path, Output]], opts: Options) -> int:
    if not batch:
        return 0
    frames = [f for f, _, _ in batch]
    for w, (_, (weights, _)) in zip(writers, outputs):
        for styled, (_, pts, time_base) in zip(stylize_batch(stylizer, frames, weights, opts), batch):
            w.write_frame(styled, pts, time_base)
    return len(batch)
