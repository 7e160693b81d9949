"""What can be checked of the Dockerfile without a Docker engine (none runs here)."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTRUCTIONS = [line.strip() for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
                if line.strip() and not line.strip().startswith("#")]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instr(name: str) -> list[str]:
    return [line[len(name):].strip() for line in INSTRUCTIONS if line.upper().startswith(name + " ")]


def ignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pat) or fnmatch.fnmatch(prefix, pat.removeprefix("**/"))
               or fnmatch.fnmatch(parts[-1], pat.removeprefix("**/")) for pat in patterns for prefix in prefixes)


def test_base_image_is_an_official_pinned_pytorch_cuda_runtime_new_enough():
    (base,) = instr("FROM")
    m = re.fullmatch(r"pytorch/pytorch:(\d+)\.(\d+)\.(\d+)-cuda[\d.]+-cudnn\d+-runtime", base)
    assert m, base
    floor = next(d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch>="))
    assert tuple(map(int, m.groups()[:2])) >= tuple(map(int, floor.removeprefix("torch>=").split(".")[:2]))


def test_installs_the_project_as_the_makefile_does_and_fetches_the_same_weights():
    runs = " && ".join(instr("RUN"))
    assert re.search(r"pip install (\S+ )*\.( |$)", runs), "the Dockerfile must pip install the source tree"
    copied = {shlex.split(c)[0] for c in instr("COPY")} | {s for c in instr("COPY") for s in shlex.split(c)[:-1]}
    for needed in ["pyproject.toml", "README.md", *PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]:
        assert needed.rstrip("*") in copied, f"{needed} is not copied into the image"
        assert not ignored(needed.rstrip("*")), f"{needed} is excluded by .dockerignore"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install -q -e '\.\[test\]'", makefile)  # the real install step it mirrors
    make_archs = set(re.findall(r"fst weights fetch --arch (\w+)", makefile))
    docker_archs = set(re.findall(r"fst weights fetch --arch (\w+)", runs))
    assert make_archs == docker_archs == {"vgg16", "vgg19"}


def test_entrypoint_is_the_fst_console_script_and_runs_unprivileged():
    assert instr("ENTRYPOINT") == ['["fst"]']
    assert PYPROJECT["project"]["scripts"]["fst"] == "fst.cli:main"
    users = instr("USER")
    assert users and users[-1] not in ("root", "0")
    volumes = " ".join(instr("VOLUME"))
    assert "/data" in volumes and "/runs" in volumes
    assert any("FST_CACHE=" in e for e in instr("ENV"))


def test_dockerignore_keeps_runs_caches_and_venv_out_of_the_context():
    for path in [".venv/bin/python", "runs/quickstart/checkpoints/last.ckpt", ".cache/fst/vgg16.safetensors",
                 "fst/__pycache__/cli.cpython-311.pyc", ".git/HEAD", "lightning_logs/version_0/x", "model.pt"]:
        assert ignored(path), path
    for path in ["fst/cli.py", "fst/assets/photos/alpaca.jpg", "configs/quickstart.yaml", "pyproject.toml"]:
        assert not ignored(path), path
