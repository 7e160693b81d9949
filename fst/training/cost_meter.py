"""The cost of a training run, measured inside `fst fit`: a Lightning callback that times every
step and reads the run's peak memory (CUDA: max allocated; CPU: peak RSS from /proc), written as
JSON. `fst compare` puts it in each run's config, so a run's child process imports only this file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from fst.io.files import write_atomic


class CostMeter(pl.Callback):
    """Time of every training step (forward, backward, optimizer step; the report summarises them with
    `fast_step_ms`, skipping `warmup` steps) and peak training memory (CUDA: max allocated; CPU: peak
    RSS growth over the RSS at the first step), written as JSON to `out` when training ends; loaded by
    `fst fit` from the generated config."""

    def __init__(self, out: str, warmup: int = 2):
        self.out, self.warmup = Path(out), warmup
        self.times: list[float] = []
        self.t0 = self.start = 0.0
        self.base_mb, self.hwm_reset = 0.0, False

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self.hwm_reset = reset_peak_rss()
            self.base_mb = proc_status_mb("VmRSS")
        self.start = time.perf_counter()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        sync(module.device)
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        sync(module.device)
        self.times.append((time.perf_counter() - self.t0) * 1e3)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        cuda = module.device.type == "cuda"
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else proc_status_mb("VmHWM") - self.base_mb
        write_atomic(self.out, json.dumps({
            "steps": len(self.times), "train_s": time.perf_counter() - self.start,
            "peak_mem_mb": peak, "memory": "cuda max_memory_allocated" if cuda else "cpu peak RSS growth",
            "hwm_reset": self.hwm_reset or cuda, "style_loss": module.style_loss.name, "warmup": self.warmup,
            "weight": module.style_loss.weight, "step_ms": [round(t, 1) for t in self.times]}, indent=1))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0), so the peak is this run's training alone."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def proc_status_mb(field: str) -> float:
    """A memory field of /proc/self/status (kB) in MiB; 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def fast_step_ms(cost: dict) -> float:
    """The 10th percentile of a run's step times after warm-up: on a shared machine other jobs only
    ever add time, and a median can be all contention (seen here: 3.3 s against 0.42 s uncontended)."""
    timed = sorted(cost["step_ms"][cost.get("warmup", 2):] or cost["step_ms"])
    return timed[len(timed) // 10]
