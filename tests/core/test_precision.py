"""`auto` precision: bf16 only where the hardware has it natively, decided and said once, recorded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fst.artefacts.checkpoint import load_checkpoint
from fst.cli import main as cli
from fst.core import precision
from fst.stylize.compile_choice import compile_pays
from fst.stylize.image import Options
from fst.stylize.stylizer import Stylizer

from nets import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "tests" / "configs" / "tiny.yaml")
NATIVE, EMULATED = precision.Capability(True, "native"), precision.Capability(False, "emulated")


@pytest.fixture
def forced_cpu(monkeypatch: pytest.MonkeyPatch):
    """Force the CPU's bf16 answer for one test: forced_cpu(True) / forced_cpu(False)."""

    def force(native: bool) -> None:
        monkeypatch.setenv("FST_CPU_BF16", "1" if native else "0")
        precision.cpu_bf16.cache_clear()

    yield force
    precision.cpu_bf16.cache_clear()


@pytest.mark.parametrize(("device", "cap", "expected"), [
    ("cuda", NATIVE, "bf16-mixed"), ("cuda", EMULATED, "16-mixed"),
    ("cpu", NATIVE, "bf16-mixed"), ("cpu", EMULATED, "32-true"),
])
def test_training_choice_under_each_capability(device: str, cap: precision.Capability, expected: str) -> None:
    choice = precision.training_precision(device, cap)
    assert choice.value == expected and choice.why == cap.why


@pytest.mark.parametrize(("device", "cap", "expected"), [
    ("cuda", EMULATED, "fp16"), ("cpu", NATIVE, "bf16"), ("cpu", EMULATED, "fp32"),
])
def test_inference_choice_under_each_capability(device: str, cap: precision.Capability, expected: str) -> None:
    assert precision.inference_dtype(device, cap).value == expected


def test_explicit_precision_passes_through_and_auto_resolves(forced_cpu) -> None:
    forced_cpu(False)
    assert precision.resolve_training("bf16-mixed", "cpu") == ("bf16-mixed", None)
    value, choice = precision.resolve_training("auto", "cpu")
    assert value == "32-true" and choice is not None and "FST_CPU_BF16=0" in choice.why
    forced_cpu(True)
    assert precision.resolve_training("auto", "cpu")[0] == "bf16-mixed"


def test_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert {"avx2", "avx512_bf16"} <= precision.cpu_flags(info)
    assert precision.cpu_flags(tmp_path / "missing") == set()


CAPS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")  # what emulates a smaller CPU (and how CI emulates AVX2)


def _probe_in_child(drop: tuple[str, ...] = (), **env: str) -> str:
    """cpu_bf16() of a fresh process with the real CPU (no forced answer), as 'native|why'."""
    child_env = {k: v for k, v in os.environ.items() if k != "FST_CPU_BF16" and k not in drop} | env
    code = "from fst.core.precision import cpu_bf16; c = cpu_bf16(); print(f'{c.native}|{c.why}')"
    run = subprocess.run([sys.executable, "-c", code], env=child_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_real_cpu_probe_sees_through_an_avx2_cap() -> None:
    """ONEDNN_MAX_CPU_ISA=AVX2 turns a native-bf16 CPU into an emulating one (measured: bf16 autocast
    training at 0.02x fp32), while its cpuinfo flag stays: the probe must say 'not native' either way."""
    native, why = _probe_in_child(ONEDNN_MAX_CPU_ISA="AVX2").split("|", 1)
    assert native == "False", why
    has_flag = bool(precision.cpu_flags() & set(precision.BF16_FLAGS))
    assert ("slower than fp32" in why) if has_flag else ("no avx512_bf16" in why)


def test_real_cpu_probe_without_cap_follows_the_flag() -> None:
    native, why = _probe_in_child(drop=CAPS).split("|", 1)
    if not precision.cpu_flags() & set(precision.BF16_FLAGS):
        assert native == "False" and "no avx512_bf16" in why
    else:  # the flag is there: a working oneDNN runs bf16 natively, which the probe confirms
        assert native == "True", why


def _fit(tmp: Path, *extra: str) -> int:
    return cli(["fit", "--config", TINY, "--trainer.default_root_dir", str(tmp), "--trainer.max_steps", "2",
                "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", str(tmp),
                "--trainer.logger.name", "tb", "--checkpoint.dirpath", str(tmp / "ckpt"), *extra])


@pytest.mark.slow
@pytest.mark.parametrize(("native", "expected"), [(False, "32-true"), (True, "bf16-mixed")])
def test_fit_auto_says_and_records_the_choice(native: bool, expected: str, forced_cpu, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A real short fit on each path; the choice is printed once, kept in config.yaml and the checkpoint."""
    forced_cpu(native)
    assert _fit(tmp_path) == 0
    err = capsys.readouterr().err
    assert err.count("precision auto -> ") == 1 and f"precision auto -> {expected}" in err
    config = yaml.safe_load(next((tmp_path / "tb").rglob("config.yaml")).read_text())
    assert config["trainer"]["precision"] == expected
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert ckpt["fst"]["precision"] == expected
    assert all(v.dtype == torch.float32 for v in ckpt["state_dict"].values())  # mixed: fp32 master weights


def test_explicit_bf16_on_an_emulating_cpu_warns(forced_cpu, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forced_cpu(False)
    assert _fit(tmp_path, "--trainer.precision", "bf16-mixed", "--trainer.max_steps", "1") == 0
    err = capsys.readouterr().err
    assert "tens of times slower than fp32" in err and "precision auto ->" not in err


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.ckpt"
    save_checkpoint(path)
    return path


@pytest.mark.parametrize(("native", "expected"), [(False, "fp32"), (True, "bf16")])
def test_stylize_dtype_auto_on_cpu(native: bool, expected: str, forced_cpu, ckpt: Path) -> None:
    forced_cpu(native)
    s = Stylizer(ckpt, device="cpu")
    assert s.dtype == expected and s.warning is None
    assert next(s.eager.parameters()).dtype == getattr(torch, {"fp32": "float32", "bf16": "bfloat16"}[expected])


def test_stylize_explicit_bf16_on_an_emulating_cpu_warns(forced_cpu, ckpt: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    forced_cpu(False)
    photo = sorted((ROOT / "fst" / "assets" / "photos").glob("*.jpg"))[0]
    args = ["stylize", str(photo), "--model", str(ckpt), "--out", str(tmp_path / "o.png"), "--max-size", "48", "--quiet"]
    assert cli([*args, "--dtype", "bf16"]) == 0
    assert "warning: bf16 on a CPU without native bf16" in capsys.readouterr().err
    assert cli([*args, "--dtype", "fp32"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_compile_auto_only_where_it_pays(forced_cpu, ckpt: Path, tmp_path: Path) -> None:
    forced_cpu(False)
    stylizer = Stylizer(ckpt, device="cpu")
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    from PIL import Image

    Image.new("RGB", (640, 480)).save(small)
    Image.new("RGB", (8000, 6000)).save(large)  # 48 Mpx: fp32 saves ~14 s, less than a ~40 s compile
    assert compile_pays("auto", stylizer, [small], Options())[0] is False
    assert compile_pays("auto", stylizer, [large], Options())[0] is False
    pays, why = compile_pays("auto", stylizer, [large] * 4, Options())  # 192 Mpx of one size: ~58 s saved
    assert pays and "pays" in why
    assert compile_pays("auto", stylizer, [large], Options(max_size=1024))[0] is False  # downscaled first
    assert compile_pays("auto", stylizer, [large], Options(tile=512))[0] is False  # tiles run eager
    assert compile_pays("yes", stylizer, [small], Options())[0] is True
    assert compile_pays("no", stylizer, [large], Options())[0] is False


def test_unknown_precision_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _fit(tmp_path, "--trainer.precision", "fp8") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "fst fit: error: precision 'fp8' is not one of auto, 32-true, bf16-mixed, 16-mixed, bf16-true, 16-true, 64-true"
    assert not (tmp_path / "ckpt").exists()
