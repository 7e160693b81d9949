"""AOTInductor packages (``fst export --format aoti``): the one artefact that is machine code.

A package is `torch.export` of the transformer compiled ahead of time by AOTInductor
(`torch._inductor.aoti_compile_and_package`) into a ``.pt2`` zip holding a shared library for one
device (cpu or cuda) and one dtype. It keeps what `torch.compile` gains at stylize time (fused
instance norm, ReLU and padding; no Python per layer) without compiling on the user's machine.

- Calling convention: ``runner(x)`` with ``x`` float32 (B, 3, H, W) RGB in [0, 1] on the package's
  device; float32 back. The cast to the package's dtype (and to channels-last) is inside the graph.
  Dynamic shapes within `BATCH` and `SIDE` (inclusive); larger images are tiled by `fst stylize`.
- Loadable with nothing from fst: ``torch._inductor.aoti_load_package(path)(x)``;
  ``runner.get_metadata()["fst.json"]`` is fst's metadata (style, step, dtype, ...).
- **Loading one runs its code.** fst loads a package only when the user names it and says so
  (``fst stylize --model PKG --trust-compiled``), never because a file looks like one; every other
  format is read as data (`fst.artefacts.exported`). Before that load, fst checks what it can as data: the zip's
  CRCs, its metadata, that the device, machine, CPU instruction set and torch version are this
  machine's (a package is compiled for one; another one may crash instead of failing).
- For tiling (module hooks, `fst.models.tiling`) a package also carries the weights as safetensors
  (``fst/weights.safetensors``, digest-checked like every artefact's), which fst runs in its
  own network; the compiled graph serves whole-image passes.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from fst.core import inductor_cache
from fst.core.errors import FstError, first_line
from fst.core.precision import cpu_flags
from fst.models.transformer import MIN_SIDE, TransformerNet, export_shapes, sample_inputs
from fst.untrusted.plain_data import parse_json
from fst.untrusted.torch_files import MAX_METADATA, open_zip, read_member

BATCH = (1, 64)
SIDE = (MIN_SIDE, 4096)
META_KEY = "fst.json"  # in AOTInductor's own metadata, and as extra/fst.json in the zip
WEIGHTS_MEMBER = "fst/weights.safetensors"  # not in extra/: torch reads those as text
META_MEMBER = "extra/fst.json"
AOTI_FOLDER = "/data/aotinductor/"
TRUST_HINT = "it is compiled machine code that runs when loaded; load it only if you trust who made it, with --trust-compiled"


class Float32Boundary(nn.Module):
    """The network behind the package's calling convention: float32 in, cast inside, float32 out."""

    def __init__(self, net: TransformerNet, channels_last: bool):
        super().__init__()
        self.net = net
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        y = x.to(self.net.weight_dtype)
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        return self.net(y, w).float()


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    """No torch log lines ("No CUDA runtime is found", "Loading outdated pt2 file") around a compile or
    a load: fst's own line says what happened."""
    loggers = [logging.getLogger(n) for n in ("torch.utils.cpp_extension", "torch._inductor")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# --- writing ------------------------------------------------------------------------------------


def write_aoti(net: TransformerNet, meta: dict[str, Any], channels_last: bool = False) -> bytes:
    """The package's bytes, compiled for the device and dtype `net`'s weights are on."""
    from torch.export import Dim

    device = net.weight_device
    dims = {0: Dim("batch", min=BATCH[0], max=BATCH[1]), 2: Dim("height", min=SIDE[0], max=SIDE[1]),
            3: Dim("width", min=SIDE[0], max=SIDE[1])}
    sample = tuple(t.float().contiguous() for t in sample_inputs(net))  # the package takes float32
    with torch.no_grad():
        program = torch.export.export(Float32Boundary(net, channels_last).eval(), sample,
                                      dynamic_shapes=export_shapes(net, dims))
    return package(program, meta, net.state_dict(), device)


def package(program: Any, meta: dict[str, Any], state: dict[str, torch.Tensor], device: torch.device) -> bytes:
    """An exported program compiled by AOTInductor into a package's bytes, with fst's metadata and
    the weights `state` beside the code (what fst reads as data)."""
    meta_json = json.dumps(meta, sort_keys=True, default=str)
    inductor_cache.keyed_by_cpu_isa()
    with tempfile.TemporaryDirectory(prefix="fst-aoti-") as tmp:
        path = Path(tmp) / "model.pt2"
        try:
            with quiet_torch():
                torch._inductor.aoti_compile_and_package(
                    program, package_path=str(path), inductor_configs={"aot_inductor.metadata": {META_KEY: meta_json}})
        except Exception as e:  # noqa: BLE001 - a missing compiler or toolkit fails in many ways
            raise FstError(f"AOTInductor could not compile the network for {device}: {first_line(e)[:300]}") from None
        with zipfile.ZipFile(path) as zf:
            root = package_root(zf.namelist(), str(path))
        state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr(f"{root}/{META_MEMBER}", meta_json)
            zf.writestr(f"{root}/{WEIGHTS_MEMBER}", save_safetensors(state))
        return path.read_bytes()


# --- reading ------------------------------------------------------------------------------------


def is_package(names: list[str]) -> bool:
    """Whether a zip's member names are an AOTInductor package's (names only: nothing is read)."""
    return any(AOTI_FOLDER in n for n in names)


def package_root(names: list[str], origin: str) -> str:
    roots = {n.split("/", 1)[0] for n in names if AOTI_FOLDER in n}
    if len(roots) != 1:
        raise FstError(f"{origin}: not an AOTInductor package (no single data/aotinductor folder)")
    return roots.pop()


def read_package(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, str]]:
    """(weights, fst metadata, AOTInductor's metadata) of a package, read as data: nothing runs."""
    with open_zip(path, str(path), "AOTInductor package") as zf:
        names = zf.namelist()
        root = package_root(names, str(path))
        aoti_meta = [n for n in names if n.startswith(f"{root}/data/aotinductor/") and n.endswith("wrapper_metadata.json")]
        try:
            fst_meta = parse_json(read_member(zf, f"{root}/{META_MEMBER}", MAX_METADATA, str(path)), str(path), META_KEY)
            compiled_for = parse_json(read_member(zf, aoti_meta[0], MAX_METADATA, str(path)), str(path),
                                      aoti_meta[0].rsplit("/", 1)[-1]) if aoti_meta else {}
            state = load_safetensors(zf.read(f"{root}/{WEIGHTS_MEMBER}"))
        except (KeyError, ValueError, SafetensorError) as e:
            raise FstError(f"{path}: not an fst AOTInductor package (no readable fst metadata and weights: "
                           f"{first_line(e)}); was it written by `fst export --format aoti`?") from None
    if not isinstance(fst_meta, dict) or not isinstance(compiled_for, dict):
        raise FstError(f"{path}: fst metadata of an AOTInductor package is not a JSON object")
    return state, fst_meta, {str(k): str(v) for k, v in compiled_for.items()}


def isa_flag(isa: str) -> str:
    """The /proc/cpuinfo flag of an instruction set as AOTInductor names it (AVX2, AVX512_VNNI, AMX_TILE...)."""
    return {"AVX512": "avx512f"}.get(isa, isa.lower())


def runs_here(compiled_for: dict[str, str], device: torch.device, origin: str) -> None:
    """Refuse, with one line, a package compiled for another device, machine, CPU or torch."""
    key = compiled_for.get("AOTI_DEVICE_KEY", "?")
    if key != device.type:
        raise FstError(f"{origin}: compiled for {key}, not {device.type}; run it with --device {key} or re-export "
                       f"with --device {device.type}")
    if key == "cuda" and not torch.cuda.is_available():
        raise FstError(f"{origin}: compiled for cuda, and this machine has no CUDA device")
    machine = compiled_for.get("AOTI_MACHINE")
    if machine and machine != platform.machine():
        raise FstError(f"{origin}: compiled for {machine} CPUs, this one is {platform.machine()}; re-export here")
    if device.type == "cpu":
        flags = cpu_flags()
        missing = [isa for isa in compiled_for.get("AOTI_CPU_ISA", "").split() if isa_flag(isa) not in flags]
        if flags and missing:
            raise FstError(f"{origin}: compiled for a CPU with {' '.join(missing)}, which this CPU lacks; "
                           "re-export on this machine (or one like it)")


def check_torch(meta: dict[str, Any], origin: str) -> None:
    made = str(meta.get("torch_version", "?"))
    if made.split("+")[0] != torch.__version__.split("+")[0]:
        raise FstError(f"{origin}: compiled with torch {made}, this is torch {torch.__version__}; a package "
                       "runs only on the torch that compiled it: re-export")


def load_package(path: Path, *, trusted: bool) -> Any:
    """AOTInductor's runner for a package that passed the checks above. This runs its code, so every
    caller must say it trusts the file (a package it compiled itself, or one the user named with
    --trust-compiled); anything else is refused here, the one place fst loads packages.

    The loader unpacks the package into ``$TMPDIR/aotinductor_*`` and removes that folder only when
    the runner is destroyed: a failed load left it behind. fst points TMPDIR at a folder of its own
    for the load and removes it on failure, or at exit (the loaded library stays mapped)."""
    if trusted is not True:
        raise FstError(f"{path}: an AOTInductor package: {TRUST_HINT}")
    tmp = tempfile.mkdtemp(prefix="fst-aoti-load-")
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = tmp
    try:
        with quiet_torch():
            runner = torch._inductor.aoti_load_package(str(path))
    except Exception as e:  # noqa: BLE001 - the loader's errors are C++ runtime errors of any kind
        shutil.rmtree(tmp, ignore_errors=True)
        raise FstError(f"{path}: AOTInductor could not load the package: {first_line(e)[:300]}") from None
    finally:
        if before is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return runner
