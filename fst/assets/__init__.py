"""The sample data shipped inside fst (fst/assets, licences in fst/assets/ATTRIBUTION.tsv): the 100
photos the demo trains on and the paintings ``sample:NAME`` names."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent
SAMPLE = "sample:"


def sample_photos_dir() -> Path:
    """The 100 embedded photos (short side 384 px)."""
    return ASSETS / "photos"


def sample_styles_dir() -> Path:
    """The embedded paintings."""
    return ASSETS / "styles"


def resolve_style_path(style_image: str) -> Path:
    """A path, or ``sample:NAME`` for one of the embedded paintings."""
    if style_image.startswith(SAMPLE):
        return sample_styles_dir() / f"{style_image.removeprefix(SAMPLE)}.jpg"
    return Path(style_image).expanduser()
