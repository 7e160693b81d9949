"""The least memory a training step takes, against what the machine holds.

A batch or image size no machine here could hold (`--data.batch_size 1000000000` filled memory
sample by sample, `--data.crop_size 100000` ran out resizing the first photo, after the run folder
existed) is refused in one line before the run starts. The estimate is a floor, never a guess at the
real need: it refuses only what cannot run, however the run is configured.
"""

from __future__ import annotations

import os

import torch

from fst.core.errors import FstError

HOST_BYTES_PER_PIXEL = 12  # each image of a batch as fp32 RGB, built by the loader in host memory
DEVICE_BYTES_PER_PIXEL = 128  # VGG's first layer on it: 64 channels in bf16, the least precision fst trains in


def machine_memory(device: torch.device) -> tuple[int, int | None]:
    """The host's physical memory and, for a CUDA device, the device's (bytes)."""
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if device.type == "cuda":
        return host, torch.cuda.get_device_properties(device).total_memory
    return host, None


def check_fits(what: str, images: int, width: int, height: int, device: torch.device) -> None:
    """Refuse `images` images of `width`x`height` px per step where the machine cannot hold even
    the floor of their memory; `what` names the settings to change."""
    pixels = images * width * height
    host, on_device = machine_memory(device)
    host_need = pixels * (HOST_BYTES_PER_PIXEL + (DEVICE_BYTES_PER_PIXEL if on_device is None else 0))
    for need, have, where in ((host_need, host, "this machine"), (pixels * DEVICE_BYTES_PER_PIXEL, on_device, str(device))):
        if have is not None and need > have:
            raise FstError(f"{what}: {images} image(s) of {width}x{height} px need at least {_size(need)} per "
                           f"step and {where} has {_size(have)}")


def _size(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e6:.3g} MB"
