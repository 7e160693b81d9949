"""Training and preview data: webdataset shards in, dict batches out.

Batch contract (the train and the val loader alike)::

    batch["image"]    FloatTensor [B, 3, S, S], RGB in [0, 1]; S = crop_size (train) or val_size (val)
    batch["skipped"]  LongTensor scalar: bad samples (undecodable image bytes) that the loader
                      worker producing this batch dropped since its previous batch. Workers are
                      separate processes, so the count travels with the data: the LightningModule
                      sums it and logs `data/skipped`. Always 0 for val.
    batch["key"]      list[str], B entries: each image's webdataset `__key__` (file stem for val)
    batch["style"]    FloatTensor [P, 3, S, S], train only and only with `style_shards`: random
                      paintings cropped as the photos are, P = B (style_draw "image") or 1 ("batch");
                      bad paintings are counted in "skipped" too (fst/data/paintings.py)

Train pipeline per worker: shard list -> (finite: split_by_node, split_by_worker, shard shuffle |
resampled: random shards per rank and worker) -> tar samples -> shuffle buffer -> decode to RGB
-> resize short side to crop_size -> random crop -> optional flip -> batch -> (with style_shards)
random paintings, cropped alike, joined to each batch (fst/data/paintings.py).

Bad data is skipped, never waited on: unreadable shards and undecodable samples are warned about
(undecodable ones also counted in "skipped"), with no pause. MAX_TRIES shard reads in a row without a
readable sample, or samples in a row without a decodable image, or a finite epoch with no sample at
all, stop training with one line naming the shards (raised in the main process whichever process
found it). Loader workers die with the main process, and a stop signal ends a wait for data at once
(`fst.core.signals`).

Randomness is a function of `seed`, rank, worker and epoch: reruns see the same batches,
epochs differ. Finite mode keeps partial last batches, so one epoch sees every sample once.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytorch_lightning as pl
import torch
import webdataset as wds
from torch.utils.data import DataLoader
from webdataset.utils import make_seed

from fst.core import signals
from fst.core.domain import at_least
from fst.core.errors import FstError
from fst.data import pipes
from fst.data.batches import Batch, MainProcess, errors_as_batches
from fst.data.paintings import WithPaintings, check_draw, resolve_style_shards
from fst.data.photos import collate_photos, load_photos
from fst.data.specs import SAMPLE, resolve_shards
from fst.data.stages import Augment, ReadShards, Shuffle, worker_seed
from fst.models.transformer import MIN_SIDE


class ShardDataModule(pl.LightningDataModule):
    """Photos for style-transfer training: webdataset shards for training, a few fixed photos
    for validation previews. Batches follow the contract at the top of `fst.data.datamodule`."""

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
        style_shards: str | None = None,
        style_draw: str = "image",
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
                of in the loader workers; see fst/data/device_decode.py.
            seed: seeds shard order, shuffling, crops and flips.
            style_shards: a style corpus for a universal network trained with a style loss: shards that
                `fst shards PAINTINGS_FOLDER --out DIR` made (any spec train_shards takes), or "sample"
                (fst's own paintings); None (the default): photos only.
            style_draw: ``image`` (a painting per photo) or ``batch`` (one painting per batch).
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
        check_draw(style_draw)
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
        self.style_shards = style_shards
        self.style_draw = style_draw
        self.style_urls: list[str] = []
        self.urls: list[str] = []
        self.photos: list[dict] = []
        self.stream_seed = seed  # re-derived on resume so a resumed run continues with fresh data

    def check_inputs(self) -> None:
        """The shards and the preview folder exist (before a run creates any folder); the shard
        list found is the one `setup` uses."""
        self.urls = resolve_shards(self.train_shards)
        if self.style_shards is not None:
            self.style_urls = resolve_style_shards(self.style_shards)
        if self.val_photos is not None:
            self._val_folder()

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
            from fst.data.shards import sample_shards

            sample_shards()
        if self.style_shards == SAMPLE:
            from fst.data.shards import sample_style_shards

            sample_style_shards()

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.urls = self.urls or resolve_shards(self.train_shards)
            if self.style_shards is not None:
                self.style_urls = self.style_urls or resolve_style_shards(self.style_shards)
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
        ).compose(MainProcess(self.urls))
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
        from fst.data.device_decode import decode_and_crop

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
        return DataLoader(self.photos, batch_size=self.batch_size, collate_fn=collate_photos)

    def train_dataset(self) -> wds.DataPipeline:
        """The per-worker pipeline (see the module docstring); yields contract batches."""
        if self.resampled:
            shards = [wds.ResampledShards(self.urls, seed=self.stream_seed, deterministic=True, worker_seed=worker_seed)]
        else:
            shards = [wds.SimpleShardList(self.urls), wds.split_by_node, wds.split_by_worker]
            shards.append(Shuffle(len(self.urls), self.stream_seed))
        return wds.DataPipeline(
            *shards,
            ReadShards(),
            Shuffle(self.shuffle_buffer, self.stream_seed) if self.shuffle_buffer > 1 else None,
            Augment(self.crop_size, self.flip, self.stream_seed, decode=not self.decode_on_device),
            Batch(self.batch_size, partial=not self.resampled),
            WithPaintings(self.style_urls, self.crop_size, self.flip, self.shuffle_buffer, self.stream_seed,
                          self.style_draw) if self.style_urls else None,
            errors_as_batches,
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
