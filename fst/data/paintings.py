"""Paintings for a universal network trained with a style loss (fst/training/universal_style.py): a
second, endless stream of random crops from style shards, joined to each photo batch in the worker.

Style shards are what `fst shards FOLDER --out DIR` makes of any folder of paintings (a WikiArt copy,
scripts/build_style_corpus.py's corpus, fst's own sample paintings as "sample"): a file that cannot be
decoded is skipped there, with its reason in the manifest and one line on the terminal. A bad sample
inside a shard is skipped here as a photo is (warned about, counted in the batch's "skipped"), and
MAX_TRIES bad ones in a row end the run with one line (`fst.data.stages.Tries`).

Paintings are drawn with replacement (shards resampled, samples shuffled), cropped and resized as the
photos are: short side to crop_size, a random square, a random flip. `draw` picks one painting per
photo ("image": batch["style"] is (B, 3, S, S)) or one per batch ("batch": (1, 3, S, S)).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import webdataset as wds
from webdataset.utils import PipelineStage, make_seed

from fst.core.errors import FstError
from fst.data.specs import SAMPLE, resolve_shards
from fst.data.stages import Augment, ReadShards, Shuffle, worker_seed

DRAWS = ("image", "batch")
PAINTINGS_SEED = 0x9A1  # mixed into the stream seed: paintings are not drawn as the photos are


def check_draw(draw: str) -> None:
    if draw not in DRAWS:
        raise FstError(f"unknown style_draw {draw!r} (choose from {', '.join(DRAWS)})")


def resolve_style_shards(spec: str) -> list[str]:
    """Shard URLs of a style corpus: "sample" (fst's own paintings, sharded on demand into
    $FST_CACHE/sample_style_shards) or any spec `train_shards` takes; errors name the option."""
    if spec.strip() == SAMPLE:
        from fst.data.shards import sample_style_shards

        spec = str(sample_style_shards())
    try:
        return resolve_shards(spec)
    except FstError as e:
        raise FstError(f"style_shards: {e} (make style shards with: fst shards PAINTINGS_FOLDER --out DIR)") from None


class WithPaintings(PipelineStage):
    """Photo batches in, the same batches out with ``batch["style"]`` added (see the module docstring)."""

    def __init__(self, urls: list[str], crop_size: int, flip: bool, shuffle_buffer: int, seed: int,
                 draw: str = "image") -> None:
        check_draw(draw)
        self.urls, self.crop_size, self.flip = urls, crop_size, flip
        self.shuffle_buffer, self.seed, self.draw = shuffle_buffer, make_seed(seed, PAINTINGS_SEED), draw

    def paintings(self) -> Iterator[dict]:
        """Endless: shards are drawn with replacement, so the stream ends only by an error."""
        return iter(wds.DataPipeline(
            wds.ResampledShards(self.urls, seed=self.seed, deterministic=True, worker_seed=worker_seed),
            ReadShards(),
            Shuffle(self.shuffle_buffer, self.seed) if self.shuffle_buffer > 1 else None,
            Augment(self.crop_size, self.flip, self.seed),
        ))

    def run(self, src: Iterator[dict]) -> Iterator[dict]:
        paintings: Iterator[dict] | None = None
        for batch in src:
            paintings = paintings or self.paintings()  # opened with the first batch, in the worker
            wanted = len(batch["key"]) if self.draw == "image" else 1
            images: list[torch.Tensor] = []
            skipped = 0
            while len(images) < wanted:
                sample = next(paintings)
                skipped += sample["skipped"]
                if sample["image"] is not None:
                    images.append(sample["image"])
            batch["style"] = torch.stack(images)
            batch["skipped"] = batch["skipped"] + skipped
            yield batch
