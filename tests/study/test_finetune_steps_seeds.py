"""scripts/finetune_steps.py: the runs of one recipe with different seeds (labels NAME#SEED) become one
row each recipe, with the mean and the spread (max - min) of every metric; other labels get none."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "finetune_steps.py"
spec = importlib.util.spec_from_file_location("finetune_steps", SCRIPT)
steps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(steps)


def row(style: float, content: float) -> dict:
    return {k: style for k in steps.COLUMNS} | {"content": content}


def test_seeds_of_a_recipe_give_mean_and_spread_in_label_order() -> None:
    rows = [("photo", row(1.0, 0.0)), ("ft#0", row(0.30, 0.9)), ("base", row(0.5, 1.0)),
            ("other#0", row(0.8, 0.1)), ("ft#1", row(0.34, 0.7)), ("ft#2", row(0.32, 0.8))]
    groups = steps.seed_groups(rows)
    assert [(name, n) for name, _, _, n in groups] == [("ft", 3), ("other", 1)]
    _, mean, spread, _ = groups[0]
    assert mean["style_vs_photo"] == pytest.approx(0.32) and spread["style_vs_photo"] == pytest.approx(0.04)
    assert mean["content"] == pytest.approx(0.8) and spread["content"] == pytest.approx(0.2)
    assert groups[1][2]["content"] == 0.0  # one seed: no spread


def test_labels_without_a_seed_make_no_group() -> None:
    assert steps.seed_groups([("photo", row(1.0, 0.0)), ("scratch400", row(0.34, 1.1))]) == []
