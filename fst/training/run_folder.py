"""One folder per run: ``--trainer.default_root_dir DIR`` alone puts the run's TensorBoard logs in
``DIR/<logger name>`` and its checkpoints in ``DIR/checkpoints``.

The configs name only the root; the logger's ``save_dir`` and ``checkpoint.dirpath`` follow it unless
a config or the command line sets them, so overriding the root cannot leave half a run in the
config's folder and half in the new one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"


def logger_specs(logger: Any) -> list[Any]:
    """The ``class_path``/``init_args`` entries of a parsed ``trainer.logger`` (one, a list, or a bool)."""
    specs = logger if isinstance(logger, list) else [logger]
    return [s for s in specs if hasattr(s, "get") and s.get("init_args") is not None]


def follow_root(config: Any) -> None:
    """Fill the logger's save_dir and the checkpoint dirpath left unset from trainer.default_root_dir.

    `config` is one subcommand's parsed namespace (LightningCLI's, before classes are built)."""
    root = config.trainer.get("default_root_dir")
    if not root:  # Lightning's own defaults (the working directory) apply
        return
    checkpoint = config.get("checkpoint")
    if checkpoint is not None and not checkpoint.get("dirpath"):
        checkpoint.dirpath = str(Path(root) / CHECKPOINTS)
    for spec in logger_specs(config.trainer.get("logger")):
        # Only loggers that write to a folder (TensorBoard, CSV) have a save_dir key.
        if "save_dir" in spec.init_args and not spec.init_args.save_dir:
            spec.init_args.save_dir = str(root)
