"""The sample data shipped inside fst (fst/assets, licences in fst/assets/ATTRIBUTION.tsv): the 100
photos the demo trains on, the paintings ``sample:NAME`` names, and a trained universal network
(``--model sample:universal``)."""

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


def resolve_model_path(model: str | Path) -> Path:
    """A path, or ``sample:NAME`` for a network shipped in fst/assets/models (``sample:universal``)."""
    model = str(model)
    if model.startswith(SAMPLE):
        return ASSETS / "models" / f"{model.removeprefix(SAMPLE)}.ckpt"
    return Path(model).expanduser()
