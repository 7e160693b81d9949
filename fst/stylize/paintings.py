"""The paintings a universal network is given at inference (`fst stylize --style-image`): read once
per run (`fst.models.painting_stats`: checked, resized, their statistics taken), named here."""

from __future__ import annotations

from pathlib import Path

from fst.models.painting_stats import DEFAULT_STYLE_SIZE, FLAT, load_painting, painting_stats

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
