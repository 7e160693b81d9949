"""JPEG decode + crop on the training device (`data.decode_on_device: true`).

With it, loader workers only read tar samples and draw the random crop parameters; the main process
hands the raw JPEG bytes to ``torchvision.io.decode_jpeg(..., device=...)`` (nvJPEG on CUDA), then
crops, resizes and flips on the device. That moves the most expensive per-image CPU work off the
loader workers, which is what limits a GPU run on a machine with few cores per GPU.

Crop parameters are drawn in the workers (same seeded rng as the CPU path), so a run stays
reproducible: ``u, v`` in [0, 1) place the square box along each axis, ``f < 0.5`` flips.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from fst.core.errors import first_line


def decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """Fallback for a batch that nvJPEG refused: any format torchvision reads, or None if unreadable."""
    try:
        return decode_image(data, mode=ImageReadMode.RGB).to(device)
    except RuntimeError as e:
        warnings.warn(f"skipping bad sample ({first_line(e)[:120]})", stacklevel=2)
        return None


def decode_batch(raw: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    try:  # one call for the whole batch: nvJPEG decodes them together
        return list(decode_jpeg(raw, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:  # one bad or non-JPEG sample: decode them one at a time
        return [decode_one(r, device) for r in raw]


def crop(img: torch.Tensor, uvf: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, H, W) -> float (3, size, size) in [0, 1]: square box at (u, v), resized, maybe flipped."""
    _, h, w = img.shape
    side = min(h, w)
    y, x = int(uvf[1] * (h - side + 1)), int(uvf[0] * (w - side + 1))
    box = img[:, y:y + side, x:x + side].float().div_(255)[None]
    out = F.interpolate(box, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)[0]
    return out.flip(-1) if uvf[2] < 0.5 else out


def decode_and_crop(raw: list[torch.Tensor], uvf: torch.Tensor, size: int,
                    device: torch.device) -> tuple[torch.Tensor, list[int]]:
    """(B', 3, size, size) images of the samples that decoded, and the indices of those samples."""
    images = decode_batch(raw, device)
    good = [i for i, img in enumerate(images) if img is not None]
    if not good:
        return torch.empty(0, 3, size, size, device=device), good
    return torch.stack([crop(images[i], uvf[i], size).clamp_(0, 1) for i in good]), good
