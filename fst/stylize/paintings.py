"""The paintings a universal network is given at inference (`fst stylize --style-image`): read once
per run (`fst.io.style_images`: decoded, resized, checked; one flat colour or too small is one line;
`fst.models.painting_stats`: their statistics taken), and named.
"""

from __future__ import annotations

from pathlib import Path

from fst.io.style_images import DEFAULT_STYLE_SIZE, FLAT, load_painting
from fst.models.painting_stats import painting_stats

__all__ = ["DEFAULT_STYLE_SIZE", "FLAT", "load_painting", "painting_names", "painting_stats"]


def painting_names(paths: list[Path]) -> list[str]:
    """One name per painting for output file names: its stem, numbered where two stems are the same."""
    names: list[str] = []
    for path in paths:
        stem, k = Path(path).stem or "painting", 2
        name = stem
        while name in names:
            name, k = f"{stem}_{k}", k + 1
        names.append(name)
    return names
