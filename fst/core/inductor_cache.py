"""Inductor's on-disk cache kept apart per CPU vector instruction set.

torch chooses the vector ISA of the C++ it generates from ATEN_CPU_CAPABILITY or the CPU, but its
cache of compiled graphs is not keyed by it: a graph compiled for AVX-512 and found again where AVX2
or no vectorisation is chosen (the variable set, a cache folder shared by machines of different
CPUs, an image built on another one) runs code of the wrong vector width. Measured on a Sapphire
Rapids, the default cache warmed by ordinary runs, then ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2: a compiled network's output was half NaN, and a compiled training step
crashed the process. One folder per ISA keeps each kind's graphs apart; a TORCHINDUCTOR_CACHE_DIR
the user chose is left as it is.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any

import torch

VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


def keyed_by_cpu_isa() -> None:
    """Point Inductor's cache at `<its default folder>/cpu-<isa>` unless the user chose a folder;
    called before anything of fst compiles. Torch versions without these internals are left alone."""
    cpp = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found" on import: not ours to say
    level = cpp.level
    cpp.setLevel(logging.ERROR)
    try:
        from torch._inductor.cpu_vec_isa import pick_vec_isa
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:
        return
    finally:
        cpp.setLevel(level)
    default = os.path.abspath(default_cache_dir())
    chosen = os.environ.get(VARIABLE)
    if chosen is not None and os.path.abspath(chosen) != default and os.path.dirname(os.path.abspath(chosen)) != default:
        return  # the user's own folder (torch writes its default back into the variable once used)
    isa = re.sub(r"[^A-Za-z0-9]+", "-", str(pick_vec_isa())).strip("-").lower() or "scalar"
    os.environ[VARIABLE] = os.path.join(default, f"cpu-{isa}")


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`torch.compile(fn)`, its cache in this CPU's folder."""
    keyed_by_cpu_isa()
    return torch.compile(fn)
