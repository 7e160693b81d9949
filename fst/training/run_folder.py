"""One folder per run: ``--trainer.default_root_dir DIR`` alone puts the run's TensorBoard logs in
``DIR/<logger name>`` and its checkpoints in ``DIR/checkpoints``.

The configs name only the root; the logger's ``save_dir`` and ``checkpoint.dirpath`` follow it unless
a config or the command line sets them, so overriding the root cannot leave half a run in the
config's folder and half in the new one.

Runs may share one logs folder (each with its own checkpoint folder); each then gets a version folder
of its own, claimed before the run writes anything (`claim_log_versions`).
"""

from __future__ import annotations

import os
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


def claim_version(root: Path, first: int) -> int:
    """The lowest N >= `first` whose ``root/version_N`` this call creates. mkdir is the claim: of two
    runs that listed `root` at the same time, and so both chose `first`, one wins it, the other the next."""
    root.mkdir(parents=True, exist_ok=True)
    version = first
    while True:
        try:
            (root / f"version_{version}").mkdir()
            return version
        except FileExistsError:
            version += 1


def claim_log_versions(loggers: list[Any]) -> None:
    """Give each logger that numbers its runs (TensorBoard's, CSV's) a version folder claimed now.

    Lightning lists the logs folder, takes the highest version + 1 and creates it only when it first
    writes there: two runs started together into one logs folder both took version_0, their events
    mixed and one run's config.yaml was lost. A version the user set is left alone."""
    for logger in loggers:
        if getattr(logger, "_version", 0) is not None or not hasattr(logger, "_get_next_version"):
            continue
        root = os.path.expanduser(os.path.expandvars(str(logger.root_dir)))  # as Lightning's log_dir does
        if "://" in root:  # a remote store: no mkdir to claim with; Lightning numbers it
            continue
        # Lightning's listing is where the search starts; the claim is what makes the version ours.
        logger._version = claim_version(Path(root), logger._get_next_version())
