"""Training and preview data: webdataset shards in, dict batches out.

Batch contract (the train and the val loader alike)::

    batch["image"]    FloatTensor [B, 3, S, S], RGB in [0, 1]; S = crop_size (train) or val_size (val)
    batch["skipped"]  LongTensor scalar: bad samples (undecodable image bytes) that the loader
                      worker producing this batch dropped since its previous batch. Workers are
                      separate processes, so the count travels with the data: the LightningModule
                      sums it and logs `data/skipped`. Always 0 for val.
    batch["key"]      list[str], B entries: each image's webdataset `__key__` (file stem for val)

Train pipeline per worker: shard list -> (finite: split_by_node, split_by_worker, shard shuffle |
resampled: random shards per rank and worker) -> tar samples -> shuffle buffer -> decode to RGB
-> resize short side to crop_size -> random crop -> optional flip -> batch.

Bad data is skipped, never waited on: unreadable shards and undecodable samples are warned about
(undecodable ones also counted in "skipped"), with no pause. MAX_TRIES shard reads in a row without a
readable sample, or samples in a row without a decodable image, or a finite epoch with no sample at
all, stop training with one line naming the shards (raised in the main process whichever process
found it). Loader workers die with the main process, and a stop signal ends a wait for data at once
(`fst.signals`).

Randomness is a function of `seed`, rank, worker and epoch: reruns see the same batches,
epochs differ. Finite mode keeps partial last batches, so one epoch sees every sample once.
"""

from __future__ import annotations

import functools
import os
import random
import signal
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
import webdataset as wds
from PIL import Image, ImageOps
from torch.utils.data import DataLoader
from torchvision.transforms.v2.functional import pil_to_tensor, to_dtype
from webdataset.utils import PipelineStage, make_seed, pytorch_worker_info

from fst import pipes, signals
from fst.domain import at_least
from fst.errors import FstError
from fst.images import IMAGE_SUFFIXES, ImageError, image_files, open_rgb
from fst.transformer import MIN_SIDE

SAMPLE = "sample"
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")  # img2dataset writes any of these
# Tries in a row without a good result before the stream gives up: with even 80% of the shards bad,
# 100 bad draws in a row happen once in 1e10; all-bad data stops within a second.
MAX_TRIES = 100


# ---------------------------------------------------------------- shard specs


def resolve_shards(spec: str) -> list[str]:
    """Shard URLs from `spec`: "sample", a directory (its *.tar), a brace pattern
    (`/data/coco-{000000..000099}.tar`), `pipe:`/`scheme://` URLs, or a comma-separated list of
    these. Local shards must exist (one clear error before training, not a worker traceback)."""
    if spec.strip() == SAMPLE:
        from fst.shards import sample_shards

        spec = str(sample_shards())
    urls: list[str] = []
    for item in _split_top_level(spec):
        path = Path(item).expanduser()
        if not _is_remote(item) and path.is_dir():
            found = sorted(str(p) for p in path.glob("*.tar"))
            if not found:
                raise FstError(f"no *.tar shards in {path}")
            urls += found
        else:
            urls += wds.shardlists.expand_urls(item if _is_remote(item) else str(path))
    if not urls:
        raise FstError(f"no shards in {spec!r}")
    missing = [u for u in urls if not _is_remote(u) and not Path(u).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FstError(f"missing shard {missing[0]}{more}")
    return urls


def _split_top_level(spec: str) -> list[str]:
    """Split on commas that are not inside a {a,b} brace group."""
    items, depth, current = [], 0, ""
    for ch in spec:
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    return [s.strip() for s in [*items, current] if s.strip()]


def _is_remote(url: str) -> bool:
    return url.startswith("pipe:") or "://" in url


# ---------------------------------------------------------------- pipeline stages


def _stream_seed(seed: int, epoch: int) -> int:
    """Distinct per rank, worker and epoch; a function of `seed` only.

    Inside a worker the epoch comes from the loader's seeded generator (fresh workers every
    epoch); in the main process (num_workers=0) from the stage's own counter.
    """
    rank, _, worker, _ = pytorch_worker_info()
    info = torch.utils.data.get_worker_info()
    return make_seed(seed, epoch, rank, worker, info.seed if info is not None else 0)


def _worker_seed() -> int:
    # For wds.ResampledShards(deterministic=True), which mixes in its own seed and epoch.
    return _stream_seed(0, 0)


class _Shuffle(PipelineStage):
    """wds.shuffle with a per-epoch seeded rng (wds.detshuffle's epoch restarts in fresh workers)."""

    def __init__(self, bufsize: int, seed: int) -> None:
        self.bufsize, self.seed, self.epoch = bufsize, seed, -1

    def run(self, src: Iterator) -> Iterator:
        self.epoch += 1
        rng = random.Random(_stream_seed(self.seed, self.epoch))
        return wds.shuffle(self.bufsize, initial=min(self.bufsize, 100), rng=rng)(src)


class _Augment(PipelineStage):
    """Sample dict -> {"image", "key", "skipped"}; undecodable samples are dropped, warned about
    and counted in the next sample's "skipped"."""

    def __init__(self, crop_size: int, flip: bool, seed: int, decode: bool = True) -> None:
        self.crop_size, self.flip, self.seed, self.epoch = crop_size, flip, seed, -1
        self.decode = decode  # False: pass raw JPEG bytes + crop parameters (fst.device_decode)

    def run(self, src: Iterator[dict]) -> Iterator[dict]:
        self.epoch += 1
        rng = random.Random(_stream_seed(self.seed + 1, self.epoch))
        skipped = 0
        tries = _Tries("decodable image", "samples")
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


class _Tries:
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
        return f"no {self.good} in {self.count} {self.what} in a row from {_listed(list(self.sources))}{last}"


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


class _ReadShards(PipelineStage):
    """Shard URLs -> tar samples (webdataset's tarfile_to_samples) with bounded tries: an unreadable
    or empty shard is a failed try, a sample read resets the count. Each error is warned about,
    without the half-second sleep of webdataset's warn_and_continue. Each shard's stream is closed
    as soon as it is done with; a `pipe:` command then ends at once (`fst.pipes`)."""

    def run(self, src: Iterator[dict]) -> Iterator[dict]:
        tries = _Tries("readable sample", "shard reads")
        current = ["?"]

        def opened(shards: Iterator[dict]) -> Iterator[dict]:
            for shard in shards:
                tries.attempt(shard["url"])
                current[0] = url = shard["url"]
                try:
                    stream = pipes.open_pipe(url.removeprefix("pipe:")) if url.startswith("pipe:") else wds.gopen(url)
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


def _errors_as_batches(src: Iterator[dict]) -> Iterator[dict]:
    """The last stage in a worker: an FstError travels to the main process as a batch carrying its
    one line (raised in a worker, it would arrive wrapped in a traceback)."""
    try:
        yield from src
    except FstError as e:
        yield {"error": str(e)}


def _end_workers(loader_iter: Iterator[dict]) -> None:
    """End a torch DataLoader iterator's workers now. Workers stuck on a stalled source would each
    hold a stop for the loader's 5 s join timeout; each ends its `pipe:` commands (fst.pipes).
    They are taken off torch's list of running workers while SIGCHLD is not handled: a worker
    that ends while still listed is reported by torch's SIGCHLD handler as a crash, raised
    wherever the main process is then (e.g. in the middle of saving last.ckpt)."""
    workers = [w for w in getattr(loader_iter, "_workers", ()) if w.is_alive()]
    shutdown = getattr(loader_iter, "_shutdown_workers", None)
    if not workers or shutdown is None or threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread, where stop signals arrive
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join(timeout=5)
        shutdown()  # unlists them (and closes the queues); they are gone, so it does not wait
    finally:
        signal.signal(signal.SIGCHLD, previous)


class _MainProcess(PipelineStage):
    """The loader's last stage, in the main process: raises a worker's error, refuses an epoch
    without a single sample (finite shards that are all unreadable would otherwise make empty
    epochs forever), and lets a stop signal end the wait for the next batch."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls

    def run(self, src: Iterator[dict]) -> Iterator[dict]:
        batches = 0
        while True:
            try:
                with signals.interruptible():
                    batch = next(src, None)
            except signals.Interrupted:
                _end_workers(src)
                raise
            if batch is None:
                break
            if "error" in batch:
                del src  # the last reference: the other workers stop now, not after the error is printed
                raise FstError(batch["error"])
            batches += 1
            yield batch
        if not batches:
            raise FstError(f"no readable sample in a whole pass over {_listed(self.urls)} (see the warnings above)")


class _Batch(PipelineStage):
    """Stack samples into contract batches. Holds one batch back so that bad samples after the
    last good one are still added to a batch's "skipped"."""

    def __init__(self, batch_size: int, partial: bool) -> None:
        self.batch_size, self.partial = batch_size, partial

    def run(self, src: Iterator[dict]) -> Iterator[dict]:
        held: dict | None = None
        images, keys, skipped = [], [], 0
        for s in src:
            skipped += s["skipped"]
            if s["image"] is None:
                continue
            images.append(s["image"])
            keys.append(s["key"])
            if len(images) == self.batch_size:
                if held is not None:
                    yield held
                held, images, keys, skipped = collate(images, keys, skipped), [], [], 0
        if images and self.partial:
            if held is not None:
                yield held
            held, skipped = collate(images, keys, skipped), 0
        if held is not None:
            held["skipped"] += skipped
            yield held


def collate(images: list, keys: list[str], skipped: int) -> dict:
    """The batch contract from a list of (3, S, S) images, or of (raw bytes, crop parameters) pairs
    that `ShardDataModule.on_before_batch_transfer` decodes on the device."""
    batch = {"skipped": torch.tensor(skipped, dtype=torch.long), "key": keys}
    if isinstance(images[0], tuple):
        return batch | {"jpeg": [raw for raw, _ in images], "crop": torch.stack([uvf for _, uvf in images])}
    return batch | {"image": torch.stack(images)}


# ---------------------------------------------------------------- preview photos


def square_photo(path: Path, size: int) -> torch.Tensor:
    """(3, size, size) in [0, 1]: the photo's short side resized to `size` and centre-cropped."""
    img = ImageOps.fit(open_rgb(path), (size, size), Image.Resampling.BICUBIC)
    return to_dtype(pil_to_tensor(img), torch.float32, scale=True)


def square_photos(paths: list[Path], size: int) -> torch.Tensor:
    """(P, 3, size, size): a `square_photo` of each path, in order."""
    if not paths:  # torch.stack refuses an empty list; no paths is (0, 3, size, size)
        return torch.empty(0, 3, size, size)
    return torch.stack([square_photo(path, size) for path in paths])


def load_photos(folder: Path, count: int, size: int) -> list[dict]:
    """The first `count` photos of `folder` (sorted), as `square_photos`, each with its file stem as key."""
    files = image_files(folder)
    if not files:
        raise FstError(f"no photos ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    files = files[:count]
    return [{"image": image, "key": path.stem} for path, image in zip(files, square_photos(files, size))]


def _collate_photos(photos: list[dict]) -> dict:
    return collate([p["image"] for p in photos], [p["key"] for p in photos], 0)


# ---------------------------------------------------------------- the DataModule


class ShardDataModule(pl.LightningDataModule):
    """Photos for style-transfer training: webdataset shards for training, a few fixed photos
    for validation previews. Batches follow the contract at the top of `fst.data`."""

    def __init__(
        self,
        train_shards: str = SAMPLE,
        val_photos: str | None = SAMPLE,
        crop_size: int = 256,
        val_size: int = 256,
        batch_size: int = 4,
        num_workers: int = 2,
        shuffle_buffer: int = 1000,
        flip: bool = True,
        resampled: bool = False,
        epoch_length: int | None = None,
        val_count: int = 4,
        pin_memory: bool = True,
        decode_on_device: bool = False,
        seed: int = 0,
    ) -> None:
        """
        Args:
            train_shards: "sample" (the embedded photos, sharded on demand into
                $FST_CACHE/sample_shards), a directory of *.tar, a brace pattern
                ("/data/coco-{000000..000099}.tar"), pipe: URLs ("pipe:aws s3 cp s3://b/x.tar -"),
                or a comma-separated list of these.
            val_photos: folder of preview photos, "sample" (the embedded photos), or None (no validation).
            crop_size: side of the square random training crop, px (the short side is resized to it first).
            val_size: side of the square centre-cropped preview photos, px.
            batch_size: images per batch (per rank).
            num_workers: loader processes per rank; 0 decodes in the training process.
            shuffle_buffer: samples held for shuffling per worker; 0 or 1 disables it.
            flip: random horizontal flips.
            resampled: draw shards at random with replacement, independently per rank and worker
                (the webdataset way for multi-GPU: no rank runs dry); needs epoch_length.
            epoch_length: batches per epoch per rank. Required when resampled; in finite mode it
                makes the stream repeat or stop at that length (also what multi-GPU finite runs need).
            val_count: number of preview photos.
            pin_memory: pin batches for faster host-to-GPU copies (only when CUDA is available).
            decode_on_device: decode JPEGs and crop on the training device (nvJPEG on CUDA) instead
                of in the loader workers; see fst/device_decode.py.
            seed: seeds shard order, shuffling, crops and flips.
        """
        super().__init__()
        self.save_hyperparameters()
        # Every numeric argument's domain first: one line, not a worker traceback mid-epoch. The model
        # refuses sides too small for its VGG layers (StyleTransferModule.check_image_side).
        for name, value, low in (("crop_size", crop_size, MIN_SIDE), ("val_size", val_size, MIN_SIDE),
                                 ("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                 ("shuffle_buffer", shuffle_buffer, 0), ("val_count", val_count, 0)):
            at_least(name, value, low)
        if epoch_length is not None:
            at_least("epoch_length", epoch_length, 1)
        if resampled and not epoch_length:
            raise FstError("resampled=True needs epoch_length (batches per epoch per rank)")
        self.train_shards = train_shards
        self.val_photos = val_photos
        self.crop_size = crop_size
        self.val_size = val_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.shuffle_buffer = shuffle_buffer
        self.flip = flip
        self.resampled = resampled
        self.epoch_length = epoch_length
        self.val_count = val_count
        self.pin_memory = pin_memory
        self.decode_on_device = decode_on_device
        self.seed = seed
        self.urls: list[str] = []
        self.photos: list[dict] = []
        self.stream_seed = seed  # re-derived on resume so a resumed run continues with fresh data

    def state_dict(self) -> dict:
        trainer = getattr(self, "trainer", None)
        return {"seed": self.seed, "global_step": int(trainer.global_step) if trainer is not None else 0}

    def load_state_dict(self, state: dict) -> None:
        # An IterableDataset cannot seek; instead of replaying the batches the first run already saw,
        # continue with a stream seeded by (seed, step reached): same run, new data, still reproducible.
        self.stream_seed = make_seed(self.seed, state.get("global_step", 0)) if state.get("global_step") else self.seed

    def prepare_data(self) -> None:
        # Runs once per node before setup: build the sample shards here, not on every rank.
        if SAMPLE in (self.train_shards, self.val_photos):
            from fst.shards import sample_shards

            sample_shards()

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.urls = resolve_shards(self.train_shards)
            self._check_world_size()
        if stage in (None, "fit", "validate") and self.val_photos is not None:
            self.photos = load_photos(self._val_folder(), self.val_count, self.val_size)

    def train_dataloader(self) -> wds.WebLoader:
        if not self.urls:
            self.setup("fit")
        loader = wds.WebLoader(
            self.train_dataset(),
            batch_size=None,  # batches are made in the workers (they carry the skip count)
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(self.stream_seed),
            worker_init_fn=functools.partial(signals.loader_worker, os.getpid(), pipes.kill_all),
        ).compose(_MainProcess(self.urls))
        if self.epoch_length:
            # At the loader, so it counts batches of all workers together: exactly this many per rank.
            loader = loader.with_epoch(self.epoch_length).with_length(self.epoch_length, silent=True)
        return loader

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        trainer = getattr(self, "trainer", None)
        return self.decode(batch, trainer.strategy.root_device if trainer is not None else torch.device("cpu"))

    def decode(self, batch: dict, device: torch.device) -> dict:
        """A `decode_on_device` batch (raw JPEG bytes) -> the contract batch, decoded on `device`."""
        if "jpeg" not in batch:
            return batch
        from fst.device_decode import decode_and_crop

        images, good = decode_and_crop(batch.pop("jpeg"), batch.pop("crop"), self.crop_size, device)
        batch["skipped"] = batch["skipped"] + (len(batch["key"]) - len(good))
        batch["key"] = [batch["key"][i] for i in good]
        batch["image"] = images
        return batch

    def val_dataloader(self) -> DataLoader | list:
        if self.val_photos is None:
            return []
        if not self.photos:
            self.setup("validate")
        return DataLoader(self.photos, batch_size=self.batch_size, collate_fn=_collate_photos)

    def train_dataset(self) -> wds.DataPipeline:
        """The per-worker pipeline (see the module docstring); yields contract batches."""
        if self.resampled:
            shards = [wds.ResampledShards(self.urls, seed=self.stream_seed, deterministic=True, worker_seed=_worker_seed)]
        else:
            shards = [wds.SimpleShardList(self.urls), wds.split_by_node, wds.split_by_worker]
            shards.append(_Shuffle(len(self.urls), self.stream_seed))
        return wds.DataPipeline(
            *shards,
            _ReadShards(),
            _Shuffle(self.shuffle_buffer, self.stream_seed) if self.shuffle_buffer > 1 else None,
            _Augment(self.crop_size, self.flip, self.stream_seed, decode=not self.decode_on_device),
            _Batch(self.batch_size, partial=not self.resampled),
            _errors_as_batches,
        )

    def _val_folder(self) -> Path:
        if self.val_photos == SAMPLE:
            from fst.assets import sample_photos_dir

            return sample_photos_dir()
        folder = Path(self.val_photos).expanduser()
        if not folder.is_dir():
            raise FstError(f"val_photos folder {folder} does not exist")
        return folder

    def _check_world_size(self) -> None:
        # Finite shards split unevenly over ranks would leave one rank waiting forever in DDP.
        trainer = getattr(self, "trainer", None)
        world = trainer.world_size if trainer is not None else 1
        if self.resampled or world == 1:
            return
        if not self.epoch_length:
            raise FstError(f"training on {world} ranks needs resampled=True or epoch_length (uneven shards hang DDP)")
        if len(self.urls) < world:
            raise FstError(f"{len(self.urls)} shards cannot be split over {world} ranks; use resampled=True or more shards")
