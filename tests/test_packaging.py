"""`make setup`'s editable install, built by the real setuptools backend on a copy of the project:
nothing a newcomer reads as a problem, and the install points at the checkout."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_is_one_pth_line_without_notices(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "fst", project / "fst", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    (project / "fst" / "assets").mkdir()
    wheels = tmp_path / "wheels"
    run = subprocess.run([sys.executable, "-W", "always", "-c",
                          f"import setuptools.build_meta as b; print(b.build_editable({str(wheels)!r}))"],
                         cwd=project, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = run.stdout + run.stderr
    for notice in ("Editable installation", "Deprecat", "deprecat", "BuildBackendWarning"):
        assert notice not in out, out[-2000:]
    with zipfile.ZipFile(wheels / run.stdout.strip().splitlines()[-1]) as z:
        pth = [n for n in z.namelist() if n.endswith(".pth")]
        assert len(pth) == 1 and z.read(pth[0]).decode().strip() == str(project.resolve())
