"""Throughput of the training loader (decode + resize + random crop + flip + batch), images/s
per worker count, printed as a Markdown table for docs/benchmarks.md.

    .venv/bin/python scripts/bench_data.py                       # the embedded sample shards
    .venv/bin/python scripts/bench_data.py --shards '/data/coco-{000000..000099}.tar' --workers 0,4,8

The first batch of each run (worker start-up, shard open) is not timed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch

from fst.data.datamodule import ShardDataModule


def images_per_second(shards: str, workers: int, crop: int, batch_size: int, batches: int, seed: int,
                      device: str | None = None) -> float:
    """device=None: decode in the workers (PIL); else decode + crop there (fst.data.device_decode)."""
    dm = ShardDataModule(
        shards, val_photos=None, crop_size=crop, batch_size=batch_size, num_workers=workers,
        resampled=True, epoch_length=batches + 1, pin_memory=False, seed=seed, decode_on_device=device is not None,
    )
    dm.setup("fit")
    loader = iter(dm.train_dataloader())
    next(loader)  # start-up is not throughput
    start, count = time.perf_counter(), 0
    for batch in loader:
        if device is not None:
            batch = dm.decode(batch, torch.device(device))  # what the Trainer's hook does
            if device == "cuda":
                torch.cuda.synchronize()
        count += batch["image"].shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", default="sample", help="shard spec, as ShardDataModule.train_shards (default: sample)")
    p.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (default 0,1,2)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batches", type=int, default=40, help="timed batches per run (default 40)")
    p.add_argument("--repeats", type=int, default=3, help="runs per worker count; the median is reported (default 3)")
    p.add_argument("--decode-on-device", choices=["cpu", "cuda"],
                   help="time data.decode_on_device: torchvision decode + crop in the main process on this device")
    args = p.parse_args()

    torch.set_num_threads(1)  # the loader is PIL work; keep torch from competing for cores
    rows = []
    for workers in (int(w) for w in args.workers.split(",")):
        runs = [
            images_per_second(args.shards, workers, args.crop, args.batch_size, args.batches, seed, args.decode_on_device)
            for seed in range(args.repeats)
        ]
        median = statistics.median(runs)
        per_worker = median / max(workers, 1)
        rows.append(f"| {workers} | {median:.0f} | {min(runs):.0f}–{max(runs):.0f} | {per_worker:.0f} |")

    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, Python {platform.python_version()}; {datetime.date.today()}")
    where = f"decode on {args.decode_on_device} (main process)" if args.decode_on_device else "decode in workers (PIL)"
    print(f"Shards: {args.shards}; {where}; crop {args.crop}, batch {args.batch_size}, {args.batches} timed batches, "
          f"median of {args.repeats} runs\n")
    print("| workers | images/s (median) | range | images/s per worker |")
    print("|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
