"""Photos in: shards built from COCO or any folder, and the loader that streams them to training.

`fst.data.ShardDataModule` (the name configs and users import) is served from `datamodule` on first
use, so that building shards does not import Lightning."""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "ShardDataModule":
        from fst.data.datamodule import ShardDataModule

        return ShardDataModule
    raise AttributeError(f"module 'fst.data' has no attribute {name!r}")
