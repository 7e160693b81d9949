"""`fst fit` / `fst validate`: LightningCLI over StyleTransferModule and ShardDataModule.

The typed ``__init__`` of each class is the config schema: ``fst fit --print_config`` shows every key,
``fst fit --config configs/quickstart.yaml --trainer.max_steps 50`` overrides one. A ``checkpoint:``
section configures periodic checkpoints (every N steps, keep the last K, plus ``last.ckpt``), so
``fst fit --config X --ckpt_path last`` resumes where a run stopped.
"""

from __future__ import annotations

import sys

import torch
from jsonargparse import ArgumentError
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from fst.data import ShardDataModule
from fst.errors import FstError
from fst.module import StyleTransferModule


class FstCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.filename": "step{step:07d}",
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.every_n_train_steps": 100,
            "checkpoint.save_top_k": 3,  # keep the last 3 periodic checkpoints...
            "checkpoint.monitor": "global_step",  # ...ranked by step, newest kept
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
            # Save at the step itself even on an epoch's last batch (else Lightning defers that save
            # to a validation run that may never come, and the periodic checkpoint is lost).
            "checkpoint.save_on_train_epoch_end": True,
        })


def main(argv: list[str]) -> int:
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 for the fp32 parts on Ampere and newer
    # Lightning's DDP launcher re-runs sys.argv in each worker; only pass args when called from Python.
    args = None if argv == sys.argv[1:] else argv
    try:
        FstCLI(StyleTransferModule, ShardDataModule, args=args, save_config_kwargs={"overwrite": True},
               auto_configure_optimizers=False, parser_kwargs={"exit_on_error": False})
    except ArgumentError as e:  # unknown key, bad type, missing file: one line, not a page of usage
        raise FstError(" ".join(str(e).split())) from None
    return 0
