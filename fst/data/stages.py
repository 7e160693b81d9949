"""The loader workers' pipeline stages: shards read with bounded tries, shuffling, and each sample
decoded, resized and cropped (or passed raw for decoding on the device). Randomness is a function of
the seed, rank, worker and epoch."""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from typing import BinaryIO

import torch
import webdataset as wds
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor, to_dtype
from webdataset.utils import PipelineStage, make_seed, pytorch_worker_info

from fst.core.errors import FstError
from fst.data import pipes
from fst.data.specs import is_local
from fst.io.images import ImageError, open_rgb

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")  # img2dataset writes any of these
# Tries in a row without a good result before the stream gives up: with even 80% of the shards bad,
# 100 bad draws in a row happen once in 1e10; all-bad data stops within a second.
MAX_TRIES = 100


def stream_seed(seed: int, epoch: int) -> int:
    """Distinct per rank, worker and epoch; a function of `seed` only.

    Inside a worker the epoch comes from the loader's seeded generator (fresh workers every
    epoch); in the main process (num_workers=0) from the stage's own counter.
    """
    rank, _, worker, _ = pytorch_worker_info()
    info = torch.utils.data.get_worker_info()
    return make_seed(seed, epoch, rank, worker, info.seed if info is not None else 0)


def worker_seed() -> int:
    # For wds.ResampledShards(deterministic=True), which mixes in its own seed and epoch.
    return stream_seed(0, 0)


class Shuffle(PipelineStage):
    """wds.shuffle with a per-epoch seeded rng (wds.detshuffle's epoch restarts in fresh workers)."""

    def __init__(self, bufsize: int, seed: int) -> None:
        self.bufsize, self.seed, self.epoch = bufsize, seed, -1

    def run(self, src: Iterator) -> Iterator:
        self.epoch += 1
        rng = random.Random(stream_seed(self.seed, self.epoch))
        return wds.shuffle(self.bufsize, initial=min(self.bufsize, 100), rng=rng)(src)


class Augment(PipelineStage):
    """Sample dict -> {"image", "key", "skipped"}; undecodable samples are dropped, warned about
    and counted in the next sample's "skipped"."""

    def __init__(self, crop_size: int, flip: bool, seed: int, decode: bool = True) -> None:
        self.crop_size, self.flip, self.seed, self.epoch = crop_size, flip, seed, -1
        self.decode = decode  # False: pass raw JPEG bytes + crop parameters (fst.data.device_decode)

    def run(self, src: Iterator[dict]) -> Iterator[dict]:
        self.epoch += 1
        rng = random.Random(stream_seed(self.seed + 1, self.epoch))
        skipped = 0
        tries = Tries("decodable image", "samples")
        for sample in src:
            tries.attempt(sample.get("__url__", "?"))
            try:
                image = self.crop(sample, rng) if self.decode else self.raw(sample, rng)
            except ImageError as e:
                warnings.warn(f"skipping bad sample {e}", stacklevel=1)
                tries.failed(str(e))
                skipped += 1
                continue
            tries.succeeded()
            yield {"image": image, "key": sample["__key__"], "skipped": skipped}
            skipped = 0
        if skipped:  # bad samples at the very end still have to be counted
            yield {"image": None, "key": None, "skipped": skipped}

    def raw(self, sample: dict, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
        if not data:
            raise ImageError(f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}", "no image in sample")
        uvf = torch.tensor([rng.random(), rng.random(), rng.random() if self.flip else 1.0])
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), uvf

    def crop(self, sample: dict, rng: random.Random) -> torch.Tensor:
        name = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
        data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
        if data is None:
            raise ImageError(name, "no image in sample")
        img = open_rgb(data, name=name, draft=self.crop_size)
        # Resize the short side to crop_size and crop at random along the long side, in one
        # resize of just the needed box.
        w, h = img.size
        side = min(w, h)
        x, y = rng.randint(0, w - side), rng.randint(0, h - side)
        img = img.resize((self.crop_size, self.crop_size), Image.Resampling.BILINEAR, box=(x, y, x + side, y + side))
        if self.flip and rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_dtype(pil_to_tensor(img), torch.float32, scale=True)


class Tries:
    """Tries in a row without a good result (shard reads without a sample, samples without an
    image). The try after MAX_TRIES failed ones raises an FstError naming the shards tried and
    the last error: bad data ends the stream instead of looping forever."""

    def __init__(self, good: str, what: str) -> None:
        self.good, self.what = good, what
        self.count, self.error = 0, ""
        self.sources: dict[str, None] = {}  # an ordered set

    def attempt(self, source: str) -> None:
        if self.count >= MAX_TRIES:
            raise FstError(self.report())
        self.count += 1
        self.sources[source] = None

    def failed(self, error: str) -> None:
        self.error = error

    def succeeded(self) -> None:
        self.count, self.error = 0, ""
        self.sources.clear()

    def report(self) -> str:
        last = f"; last error: {self.error}" if self.error else ""
        return f"no {self.good} in {self.count} {self.what} in a row from {listed(list(self.sources))}{last}"


def listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class ReadShards(PipelineStage):
    """Shard URLs -> tar samples (webdataset's tarfile_to_samples) with bounded tries: an unreadable
    or empty shard is a failed try, a sample read resets the count. Each error is warned about,
    without the half-second sleep of webdataset's warn_and_continue. Each shard's stream is closed
    as soon as it is done with; a `pipe:` command then ends at once (`fst.data.pipes`)."""

    def run(self, src: Iterator[dict]) -> Iterator[dict]:
        tries = Tries("readable sample", "shard reads")
        current = ["?"]

        def opened(shards: Iterator[dict]) -> Iterator[dict]:
            for shard in shards:
                tries.attempt(shard["url"])
                current[0] = url = shard["url"]
                try:
                    stream = open_shard(url)
                except Exception as exn:  # noqa: BLE001 - webdataset's handler protocol
                    skip(exn)
                    continue
                try:
                    yield {**shard, "stream": stream}
                finally:
                    stream.close()

        def skip(exn: Exception) -> bool:
            # webdataset appends the stream and URL to the exception's args; say it our way
            reason = str(exn.args[0]).split(" @ ")[0] if exn.args else type(exn).__name__
            tries.failed(f"{current[0]}: {reason}")
            warnings.warn(f"skipping unreadable shard data in {tries.error}", stacklevel=1)
            return True

        files = wds.tariterators.tar_file_expander(opened(src), handler=skip)
        for sample in wds.tariterators.group_by_keys(files, handler=skip):
            tries.succeeded()
            yield sample


def open_shard(url: str) -> BinaryIO:
    """A local shard (an absolute path: `fst.data.specs`) is opened as a file, by its name alone;
    only a URL the user typed reaches a `pipe:` command or webdataset's schemes."""
    if is_local(url):
        return open(url, "rb")  # noqa: SIM115 - closed by ReadShards when the shard is done
    return pipes.open_pipe(url.removeprefix("pipe:")) if url.startswith("pipe:") else wds.gopen(url)
