"""Checkpoints are written whole or not at all.

Lightning's TorchCheckpointIO writes through an fsspec transaction whose temporary file lives in
the system temp folder; on commit it is moved to the checkpoint folder, which across filesystems
is a copy, so a full disk left a truncated, unreadable file under the checkpoint's final name.
`AtomicCheckpointIO` writes a temporary file beside the checkpoint, fsyncs it and renames it
(`fst.io.files.atomic_path`). When the write fails, the temporary file is removed and training stops
with one line naming the last good checkpoint. `fst fit` uses it unless a config brings its own
CheckpointIO plugin.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning_utilities.core.apply_func import apply_to_collection
from pytorch_lightning.plugins import CheckpointIO, TorchCheckpointIO

from fst.artefacts.resume import read_resumable
from fst.core.errors import FstError, first_line
from fst.io.files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are atomic and whose failure is one line (see above)."""

    def __init__(self) -> None:
        super().__init__()
        self.last_good: tuple[Path, int] | None = None  # (path, step) of the last save that worked

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # object storage: fsspec's transaction
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        # Serialised in memory first, as Lightning does: torch's zip writer would turn a failed
        # write (ENOSPC, EFBIG) into a cryptic RuntimeError; Python's write says what happened.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes(buffer.getbuffer())
        except OSError as e:
            raise FstError(f"cannot save checkpoint {path}: {e.strerror or first_line(e)}; {self.last_good_text()}") from None
        self.last_good = (path, int(checkpoint.get("global_step", 0)))

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        """Resuming reads the file as data (`fst.untrusted`): Lightning's own loader unpickles with
        torch's default, which runs code on torch < 2.6; and checks it as a checkpoint to resume
        from (`fst.artefacts.resume`), whoever calls `Trainer.fit` with it."""
        if "://" in str(path):  # object storage: fsspec, through torch's weights_only loader
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        checkpoint = read_resumable(Path(path))
        if isinstance(map_location, (str, torch.device)):  # Lightning's default keeps tensors on the CPU
            checkpoint = apply_to_collection(checkpoint, torch.Tensor, lambda t: t.to(map_location))
        return checkpoint

    def last_good_text(self) -> str:
        if self.last_good is None:
            return "this run saved no checkpoint before"
        path, step = self.last_good
        return f"the last good checkpoint is {path} (step {step})"


def with_atomic_checkpoints(plugins: Any) -> list[Any]:
    """Trainer ``plugins`` plus an `AtomicCheckpointIO`, unless they hold a CheckpointIO already."""
    items = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if any(isinstance(p, CheckpointIO) for p in items):
        return items
    return [*items, AtomicCheckpointIO()]
