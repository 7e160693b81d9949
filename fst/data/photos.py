"""Fixed photos, square and centre-cropped: the validation previews and the study's evaluation set."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2.functional import pil_to_tensor, to_dtype

from fst.core.errors import FstError
from fst.data.batches import collate
from fst.io.images import IMAGE_SUFFIXES, image_files, open_rgb


def square_photo(path: Path, size: int) -> torch.Tensor:
    """(3, size, size) in [0, 1]: the photo's short side resized to `size` and centre-cropped."""
    img = ImageOps.fit(open_rgb(path), (size, size), Image.Resampling.BICUBIC)
    return to_dtype(pil_to_tensor(img), torch.float32, scale=True)


def square_photos(paths: list[Path], size: int) -> torch.Tensor:
    """(P, 3, size, size): a `square_photo` of each path, in order."""
    if not paths:  # torch.stack refuses an empty list; no paths is (0, 3, size, size)
        return torch.empty(0, 3, size, size)
    return torch.stack([square_photo(path, size) for path in paths])


def load_photos(folder: Path, count: int, size: int) -> list[dict]:
    """The first `count` photos of `folder` (sorted), as `square_photos`, each with its file stem as key."""
    files = image_files(folder)
    if not files:
        raise FstError(f"no photos ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    files = files[:count]
    return [{"image": image, "key": path.stem} for path, image in zip(files, square_photos(files, size))]


def collate_photos(photos: list[dict]) -> dict:
    return collate([p["image"] for p in photos], [p["key"] for p in photos], 0)
