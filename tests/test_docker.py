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


def test_weights_are_fetched_as_the_runtime_user_into_a_cache_it_owns():
    # The weights are written 0600 by whoever fetches them: fetched as root, the container's user could
    # not read them (and `fst shards --sample` could not write beside them). `make docker-check` found it.
    runtime_user = instr("USER")[-1]
    steps = [line.split(None, 1) for line in INSTRUCTIONS]
    fetch = next(i for i, (k, rest) in enumerate(steps) if k.upper() == "RUN" and "fst weights fetch" in rest)
    users_before = [rest.strip() for k, rest in steps[:fetch] if k.upper() == "USER"]
    assert users_before and users_before[-1] == runtime_user, "weights fetched as another user than the container's"
    made_before = " ".join(rest for k, rest in steps[:fetch] if k.upper() == "RUN")
    assert re.search(r'chown \S+ (\S+ )*"?\$FST_CACHE"?', made_before), "the cache is not given to the runtime user"
    assert re.search(r'chmod -R a\+rX "?\$FST_CACHE"?', steps[fetch][1]), "the weights stay unreadable to other uids"


def test_the_weight_step_can_skip_torchvision_on_a_build_that_reaches_only_an_index():
    steps = [line.split(None, 1) for line in INSTRUCTIONS]
    fetch = next(i for i, (k, rest) in enumerate(steps) if k.upper() == "RUN" and "fst weights fetch" in rest)
    assert any(k.upper() == "ARG" and rest.split("=")[0].strip() == "FST_OFFLINE" for k, rest in steps[:fetch])


def test_docker_check_builds_this_dockerfile_with_only_its_base_swapped_and_is_not_in_make_test():
    script = (ROOT / "scripts" / "docker_check.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    assert re.search(r"podman build [^\n]*--from \"\$BASE\"", script) and " -f " not in script.split("# --- 2.")[1]
    assert "--build-arg FST_OFFLINE=1" in script
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^docker-check:\n\tscripts/docker_check\.sh$", makefile, re.M)
    test_prereqs = re.search(r"^test:(.*)$", makefile, re.M).group(1)
    assert "docker-check" not in test_prereqs
