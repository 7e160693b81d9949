"""Hostile configs and settings for `fst fit`: YAML whose aliases stand for 10^9 values (a "billion
laughs"), through every way a config reaches jsonargparse; nested configs that are not UTF-8 text;
batch, crop and painting sizes no machine could hold, and paintings too small for the loss network.
Each is one line, exit 2, before the run folder exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fst.cli import main as cli

from runs import ROOT, TINY, fst_env

pytestmark = pytest.mark.usefixtures("one_thread")

LEVELS = 9  # 9^9 = 387 million strings in 0.5 kB: the probe's 8 levels took 29 s and 1.6 GB


def laughs(levels: int = LEVELS, flow: bool = False) -> str:
    """`levels` lists of 9 aliases of the list before: 9**levels values once expanded."""
    lists = ["[" + ",".join(["x"] * 9) + "]"] + ["[" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    if flow:  # one value, e.g. for --model.style_image
        return "[" + ", ".join(f"&a{i} {body}" for i, body in enumerate(lists)) + "]"
    return "".join(f"a{i}: &a{i} {body}\n" for i, body in enumerate(lists)) + f"style_image: *a{levels - 1}\n"


# Runs fst in a process whose address space is limited to what it has after importing everything
# plus 768 MB: expanding the aliases (10^9 values) cannot fit, refusing them costs nothing. A
# control command shows the limit leaves room for a real parse.
UNDER_A_LIMIT = r"""
import contextlib, io, json, re, resource, sys
import fst.cli, fst.training.fit, fst.study.command
with open("/proc/self/status") as f:
    size = int(re.search(r"VmSize:\s+(\d+) kB", f.read()).group(1)) << 10
resource.setrlimit(resource.RLIMIT_AS, (size + (768 << 20), resource.RLIM_INFINITY))
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = fst.cli.main(argv)
        except SystemExit as e:
            rc = e.code
        except MemoryError:
            rc = "MemoryError"
    results.append([rc, err.getvalue()])
print(json.dumps(results))
"""


def test_a_billion_laughs_is_refused_before_it_expands_through_every_way_in(tmp_path: Path) -> None:
    """Seen: 29 s and 1.6 GB before an error holding the expanded value (8 levels; 9 is 10x that)."""
    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(f"model:\n  {laughs().replace(chr(10), chr(10) + '  ').rstrip()}\n")
    model = tmp_path / "model_laughs.yaml"  # a nested config: the model section alone
    model.write_text(laughs())
    outer = tmp_path / "outer.yaml"  # a config naming the nested one
    outer.write_text(f"model: {model}\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model:\n  style_loss: gram\n  lr: &a0 [{','.join(['x'] * 9)}]\n"
                      + "".join(f"  w{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, LEVELS)))
    root = tmp_path / "run"
    fit = ["fit", "--trainer.default_root_dir", str(root)]
    cases = [
        (["fit", "--config", TINY, "--print_config"], 0, None),  # the control: a parse fits in the limit
        ([*fit, "--config", str(bomb)], 2, f"{bomb}: its YAML aliases expand to more than 100000 values"),
        ([*fit, "--config", TINY, "--model", str(model)], 2, f"{model}: its YAML aliases expand"),
        ([*fit, "--config", str(outer)], 2, f"{model}: its YAML aliases expand"),
        ([*fit, "--config", TINY, "--model", str(model), "--print_config"], 2, f"{model}: its YAML aliases expand"),
        (["validate", "--config", TINY, "--model", str(model)], 2, f"{model}: its YAML aliases expand"),
        ([*fit, "--config", TINY, "--model.style_image", laughs(flow=True)], 2, "the YAML value '[&a0 [x,x"),
        ([*fit, "--config", TINY, "--trainer.max_steps", laughs(flow=True)], 2, "its YAML aliases expand"),
        (["compare", "--out", str(tmp_path / "study"), "--baselines", str(recipe)], 2,
         f"{recipe}: its YAML aliases expand"),
    ]
    run = subprocess.run([sys.executable, "-c", UNDER_A_LIMIT, json.dumps([argv for argv, _, _ in cases])],
                         cwd=ROOT, env=fst_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    for (argv, rc, message), (got_rc, err) in zip(cases, json.loads(run.stdout.splitlines()[-1])):
        assert got_rc == rc, (argv[:4], got_rc, err[-2000:])
        if message:
            errors = [line for line in err.splitlines() if line.startswith(f"fst {argv[0]}: error: ")]
            assert "Traceback" not in err and len(errors) == 1 and message in errors[0], err[-2000:]
            assert errors[0].endswith("refused before expanding them")
    assert not root.exists() and not (tmp_path / "study").exists()


def one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """`fst fit` exits 2 with one error line (after its line on the precision chosen); returns it."""
    assert cli(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith(f"fst {argv[0]}: error: ") and all(line.startswith("fst") for line in lines), lines
    return lines[-1]


def test_nested_configs_nested_deep_or_holding_themselves_are_one_line(tmp_path: Path, capsys) -> None:
    """Seen: a UTF-16 nested config, a UnicodeDecodeError traceback; a value nested 990 deep, a
    RecursionError traceback while jsonargparse wrote its error message."""
    utf16 = tmp_path / "model16.yaml"
    utf16.write_text("style_image: sample:the_scream\n", encoding="utf-16")
    deep = tmp_path / "deep.yaml"
    deep.write_text("style_image: " + "[" * 990 + "]" * 990 + "\n")
    itself = tmp_path / "itself.yaml"
    itself.write_text("style_image: &a [x, *a]\n")
    root = tmp_path / "run"
    for path, message in ((utf16, "not UTF-8 text at byte 0"), (deep, "its YAML nests more than 64 levels deep"),
                          (itself, "a YAML alias inside its own anchor")):
        for argv in (["fit", "--config", TINY, "--model", str(path), "--trainer.default_root_dir", str(root)],
                     ["fit", f"--config={path}", "--trainer.default_root_dir", str(root)]):
            assert f"{path}: {message}" in one_line(argv, capsys)
    assert not root.exists()


def test_anchors_within_the_budget_still_load(tmp_path: Path, capsys) -> None:
    shared = tmp_path / "shared.yaml"
    shared.write_text(Path(TINY).read_text().replace("  style_size: 64", "  style_size: &side 64")
                      .replace("  val_size: 32", "  val_size: *side"))
    with pytest.raises(SystemExit) as printed:
        cli(["fit", "--config", str(shared), "--print_config"])
    assert printed.value.code == 0 and "  val_size: 64\n" in capsys.readouterr().out


# ---------------------------------------------------------------- sizes no machine holds


@pytest.fixture(scope="module")
def paintings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("paintings")
    Image.new("RGB", (1, 1), (200, 30, 30)).save(folder / "dot.png")
    Image.new("RGB", (4000, 6), (200, 30, 30)).save(folder / "panorama.png")
    Image.radial_gradient("L").convert("RGB").save(folder / "whole.jpg", quality=90)
    whole = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    Image.radial_gradient("L").convert("RGB").resize((64, 8)).save(folder / "exactly.png")
    return folder


@pytest.mark.parametrize(("extra", "message"), [
    (["--data.batch_size", "1000000000"],
     "batch_size and crop_size: 1000000000 image(s) of 32x32 px need at least 143 TB per step and this machine has"),
    (["--data.crop_size", "1000000"], "batch_size and crop_size: 2 image(s) of 1000000x1000000 px need at least"),
    (["--data.val_size", "1000000"], "batch_size and val_size: 2 image(s) of 1000000x1000000 px need at least"),
    (["--model.style_size", "1000000"], "the_scream.jpg: style image at style_size 1000000: 1 image(s) of"),
    (["--model.style_image", "{paintings}/dot.png", "--model.style_size", "0"],
     "{paintings}/dot.png: style image too small: 1x1 (used as it is); the loss network's layers need at least 8 px"),
    (["--model.style_image", "{paintings}/panorama.png"],
     "{paintings}/panorama.png: style image too small: 4000x6 (64x1 at style_size 64); the loss network's layers "
     "need at least 8 px a side"),
    (["--model.style_images", "[sample:the_scream, {paintings}/panorama.png]"], "{paintings}/panorama.png: style image too small"),
    (["--model.style_image", "{paintings}/truncated.jpg"], "{paintings}/truncated.jpg: truncated"),
])
def test_sizes_no_machine_holds_and_paintings_too_small_are_one_line_before_the_run_folder(
        extra: list[str], message: str, paintings: Path, tmp_path: Path, capsys) -> None:
    """Seen: batch_size 10^9 filled memory sample by sample; crop_size, val_size and style_size 10^5 a
    MemoryError traceback; a 1x1 or 4000x6 painting a max-pool RuntimeError; a truncated painting one
    line; each after the run folder, its config.yaml and lock file were made."""
    root = tmp_path / "run"
    argv = ["fit", "--config", TINY, "--trainer.default_root_dir", str(root), *(a.format(paintings=paintings) for a in extra)]
    assert message.format(paintings=paintings) in one_line(argv, capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_painting_at_exactly_the_smallest_side_trains(paintings: Path, tmp_path: Path) -> None:
    """64x8 at style_size 64 is 64x8: the 8 px the refusal names is enough."""
    root = tmp_path / "run"
    assert cli(["fit", "--config", TINY, "--trainer.default_root_dir", str(root), "--trainer.max_steps", "1",
                "--model.style_image", str(paintings / "exactly.png"), "--trainer.logger", "false",
                "--data.val_photos", "null"]) == 0
    assert (root / "checkpoints" / "last.ckpt").is_file()
