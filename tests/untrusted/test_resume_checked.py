"""`fst fit --ckpt_path` checks every tensor of the checkpoint it resumes from (weights, style
statistics, optimizer state) against the network of the checkpoint's config, and refuses views
that repeat storage elements in every file, before a log folder exists or anything runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from fst.cli import main as cli

from crafted import load_in_child
from runs import run_args

pytestmark = pytest.mark.usefixtures("one_thread")

HUGE = 316_228  # a side whose square is 10^11 elements: 400 GB of float32


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint of the tiny config, two steps in: weights, gram statistics, Adam's state."""
    run = tmp_path_factory.mktemp("trained")
    assert cli(run_args(run, "--trainer.max_steps", "2")) == 0
    return run / "ckpt" / "last.ckpt"


def zero_stride_statistic(ckpt: dict[str, Any]) -> None:
    ckpt["state_dict"]["criterion.targets.0.relu1_2__gram"] = torch.zeros(1).expand(HUGE, HUGE)


def zero_stride_moment(ckpt: dict[str, Any]) -> None:
    ckpt["optimizer_states"][0]["state"][0]["exp_avg"] = torch.zeros(1).expand(8, 3, 9, 9)


def moment_of_another_shape(ckpt: dict[str, Any]) -> None:
    ckpt["optimizer_states"][0]["state"][0]["exp_avg"] = torch.zeros(5)


def statistic_of_a_style_beyond_the_net(ckpt: dict[str, Any]) -> None:
    ckpt["state_dict"]["criterion.targets.1000000000.relu1_2__gram"] = torch.zeros(2, 2)


def statistic_of_three_dimensions(ckpt: dict[str, Any]) -> None:
    ckpt["state_dict"]["criterion.targets.0.relu1_2__gram"] = torch.zeros(64, 64, 2)


def state_for_a_parameter_not_trained(ckpt: dict[str, Any]) -> None:
    ckpt["optimizer_states"][0]["state"][99] = {"step": torch.tensor(2.0), "exp_avg": torch.zeros(3)}


CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "zero-stride statistic": (zero_stride_statistic, "a tensor of size [316228, 316228] with strides [0, 0] repeats "
                                                     "elements of its storage"),
    "zero-stride Adam moment": (zero_stride_moment, "a tensor of size [8, 3, 9, 9] with strides [0, 0, 0, 0] repeats"),
    "Adam moment of another shape": (moment_of_another_shape, "its optimizer's 'exp_avg' for conv_in.1.weight is a "
                                     "torch.float32 tensor of shape (5,); expected a float tensor of shape (8, 3, 9, 9)"),
    "statistic of style 10^9": (statistic_of_a_style_beyond_the_net, "style statistic 'criterion.targets.1000000000."
                                "relu1_2__gram' is not named <style>.<layer>__<stat> for one of its 1 styles"),
    "3-D statistic": (statistic_of_three_dimensions, "style statistic criterion.targets.0.relu1_2__gram is a "
                      "torch.float32 tensor of shape (64, 64, 2)"),
    "state of an untrained parameter": (state_for_a_parameter_not_trained, "its optimizer holds state for parameter 99, "
                                        "which it does not train"),
}


def crafted(trained: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    ckpt = torch.load(trained, weights_only=True)
    change(ckpt)
    torch.save(ckpt, tmp_path / "crafted.ckpt")
    return tmp_path / "crafted.ckpt"


@pytest.mark.parametrize("case", list(CASES))
def test_resume_from_a_crafted_checkpoint_is_one_line_and_creates_nothing(case: str, trained: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Before: an allocation traceback (the statistic), an Adam traceback (the moment), each after
    the run's log folder was created."""
    change, message = CASES[case]
    bad = crafted(trained, tmp_path, change)
    run = tmp_path / "run"
    capsys.readouterr()
    assert cli(run_args(run, "--trainer.max_steps", "3", "--ckpt_path", str(bad))) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err and last.startswith("fst fit: error: ") and "crafted.ckpt" in last, err
    assert message in last, last
    assert not run.exists()


def test_resumable_checkpoint_is_read_whole(trained: Path) -> None:
    from fst.artefacts.resume import read_resumable

    got, want = read_resumable(trained), torch.load(trained, weights_only=True)
    assert got["global_step"] == want["global_step"] == 2
    assert all(torch.equal(got["state_dict"][k], v) for k, v in want["state_dict"].items())
    moments = got["optimizer_states"][0]["state"]
    assert all(torch.equal(moments[i]["exp_avg"], s["exp_avg"]) for i, s in want["optimizer_states"][0]["state"].items())


def test_a_huge_zero_stride_view_costs_nothing_in_any_file(trained: Path, tmp_path: Path) -> None:
    """The unpickler refuses the view for every reader, not only when resuming."""
    bad = crafted(trained, tmp_path, zero_stride_statistic)
    result = load_in_child("checkpoint", bad, timeout=60)
    assert "repeats elements of its storage" in result.get("error", ""), result
    assert result["seconds"] < 5, result
