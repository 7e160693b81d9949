"""Which numeric precision to train and stylize in, chosen by what the hardware does fast.

bf16 pays only where the hardware multiplies bf16 natively: NVIDIA GPUs from Ampere on, and CPUs
with AVX512-BF16 or AMX. Elsewhere oneDNN emulates it: on an AVX2-only EPYC a bf16-autocast
training step ran at 0.02x the speed of fp32 (docs/benchmarks.md). Hence ``auto``:

    training (Lightning precision)          inference (stylize dtype)
    CUDA with bf16        -> bf16-mixed      CUDA -> fp16
    CUDA without bf16     -> 16-mixed
    CPU with native bf16  -> bf16-mixed      CPU with native bf16 -> bf16
    any other CPU         -> 32-true         any other CPU        -> fp32

"Native bf16 on this CPU" needs both a cpuinfo flag (avx512_bf16 or amx_bf16) and a probe that
times one small convolution in each dtype: flags alone can lie (ONEDNN_MAX_CPU_ISA=AVX2, a
hypervisor, an old oneDNN keep the bf16 kernels off while the flag is still there). The probe
takes ~0.01 s on a native CPU and ~0.5 s on an emulating one, once per process.
``FST_CPU_BF16=1`` / ``0`` forces the answer (tests; a user who knows better).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fst.core.threads import one_thread

AUTO = "auto"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# Native bf16 convs ran 0.3-1x the time of fp32 on Zen 4; emulated ones (ONEDNN_MAX_CPU_ISA=AVX2)
# 40-200x. 3x splits them with room for a noisy machine.
PROBE_SLOWDOWN_LIMIT = 3.0
BF16_PRECISIONS = ("bf16-mixed", "bf16-true", "bf16")
SLOW_BF16_WARNING = ("bf16 on a CPU without native bf16 ({why}) runs tens of times slower than fp32; "
                     "use {auto} (the default) or {fp32}")


@dataclass(frozen=True)
class Capability:
    """Whether bf16 is fast here, and the evidence, in words for the user."""

    native: bool
    why: str


@dataclass(frozen=True)
class Choice:
    """A precision (Lightning's name for training, fp32/fp16/bf16 for inference) and why it was chosen."""

    value: str
    why: str

    def describe(self, what: str) -> str:
        return f"{what} auto -> {self.value} ({self.why})"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags of the first core (empty where /proc/cpuinfo is unreadable: not Linux x86)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _seconds(fn, repeats: int = 5) -> float:
    fn()  # first call pays for oneDNN's kernel selection
    times = []  # the fastest of a few: another process taking the core only ever adds time
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def probe_bf16_slowdown() -> float:
    """Time of a bf16 3x3 conv (64 channels, 32x32) over the same conv in fp32, on this CPU."""
    x = torch.rand(1, 64, 32, 32)
    w = torch.rand(64, 64, 3, 3)
    xb, wb = x.bfloat16(), w.bfloat16()
    # One thread: with several, a busy core stalls every OpenMP barrier and the ratio measures the load.
    with one_thread(), torch.inference_mode():
        fp32 = _seconds(lambda: torch.nn.functional.conv2d(x, w, padding=1))
        bf16 = _seconds(lambda: torch.nn.functional.conv2d(xb, wb, padding=1))
    return bf16 / max(fp32, 1e-9)


@functools.lru_cache(maxsize=1)
def cpu_bf16() -> Capability:
    """Is bf16 fast on this CPU? Forced by FST_CPU_BF16, else flags then a timing probe."""
    forced = os.environ.get("FST_CPU_BF16")
    if forced in ("0", "1"):
        return Capability(forced == "1", f"FST_CPU_BF16={forced}")
    found = sorted(cpu_flags() & set(BF16_FLAGS))
    if not found:
        return Capability(False, "no avx512_bf16/amx_bf16 CPU flag")
    slowdown = probe_bf16_slowdown()
    if slowdown > PROBE_SLOWDOWN_LIMIT:
        return Capability(False, f"CPU flag {found[0]}, but a bf16 conv ran {slowdown:.0f}x slower than fp32 here")
    return Capability(True, f"CPU flag {found[0]}, bf16 conv {slowdown:.1f}x the time of fp32")


def cuda_bf16() -> Capability:
    if torch.cuda.is_bf16_supported():
        return Capability(True, f"{torch.cuda.get_device_name()} supports bf16")
    return Capability(False, f"{torch.cuda.get_device_name()} has no bf16")


def device_type(accelerator: str | None) -> str:
    """'cuda' or 'cpu' for a Lightning accelerator name (auto: CUDA when present)."""
    accelerator = str(accelerator or "auto").lower()
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def training_precision(device: str, capability: Capability) -> Choice:
    """The Lightning precision for `device` given whether bf16 is fast on it."""
    if device == "cuda":
        return Choice("bf16-mixed", capability.why) if capability.native else Choice("16-mixed", capability.why)
    return Choice("bf16-mixed" if capability.native else "32-true", capability.why)


def inference_dtype(device: str, capability: Capability | None = None) -> Choice:
    """The stylize dtype for `device`: fp16 on CUDA (every CUDA GPU has fast fp16), bf16 on a CPU only
    where it is native."""
    if device == "cuda":
        return Choice("fp16", "CUDA")
    capability = capability or cpu_bf16()
    return Choice("bf16" if capability.native else "fp32", capability.why)


def capability(device: str) -> Capability:
    return cuda_bf16() if device == "cuda" else cpu_bf16()


def resolve_training(precision: str | int | None, accelerator: str | None) -> tuple[str | int | None, Choice | None]:
    """`precision` with ``auto`` replaced by this machine's choice (and that choice, else None)."""
    if str(precision) != AUTO:
        return precision, None
    device = device_type(accelerator)
    choice = training_precision(device, capability(device))
    return choice.value, choice


def slow_bf16_warning(device: str, dtype: str, auto: str, fp32: str) -> str | None:
    """A warning when `dtype` asks for bf16 on a CPU that only emulates it, else None."""
    if device != "cpu" or str(dtype) not in (*BF16_PRECISIONS, "bf16"):
        return None
    cap = cpu_bf16()
    return None if cap.native else SLOW_BF16_WARNING.format(why=cap.why, auto=auto, fp32=fp32)


def say(line: str) -> None:
    """One line on stderr, from the first process only (DDP ranks would repeat it)."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0:
        print(line, file=sys.stderr, flush=True)
