"""What `fst fit` prints and what TensorBoard serves of a run: a real tiny run, a real TensorBoard
server on 127.0.0.1, read through its HTTP data API (fst.training.console, monitoring, run_logger)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import pytest

from fst.training.console import known_noise

from runs import TINY, fst_subprocess

NOISE = ("module(s) in eval mode", "LeafSpec", "is not supported by the model summary", "Tip:", "litlogger")


def tiny_run(root: Path, *extra: str) -> str:
    proc = fst_subprocess(["fit", "--config", TINY, "--trainer.default_root_dir", str(root), "--trainer.logger",
                           "fst.training.run_logger.RunLogger", "--trainer.enable_model_summary", "true", *extra])
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.mark.slow
def test_fit_prints_no_lightning_noise_but_fst_lines(tmp_path):
    out = tiny_run(tmp_path, "--trainer.precision", "auto")
    assert [line for line in out.splitlines() if any(n in line for n in NOISE)] == [], out
    assert any(line.startswith("fst: ") for line in out.splitlines()), out  # the precision fst chose, and why
    assert "`Trainer.fit` stopped: `max_steps=4` reached." in out


def test_noise_filters_name_one_message_and_end_with_the_command():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with known_noise():
            warnings.warn("Precision bf16-mixed is not supported by the model summary.  Estimated ...", UserWarning)
            warnings.warn("some other warning", UserWarning)
        warnings.warn("Precision bf16-mixed is not supported by the model summary.", UserWarning)
    assert [str(w.message) for w in seen] == ["some other warning", "Precision bf16-mixed is not supported by the "
                                              "model summary."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(base: str, path: str, **query: str):
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_tensorboard_serves_losses_first_quality_previews_and_hparams(tmp_path):
    tiny_run(tmp_path, "--trainer.precision", "32-true")
    logdir = tmp_path / "tensorboard"
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
                               "--port", str(port), "--reload_interval", "0", "--load_fast", "false"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 20
        runs: list[str] = []
        while time.time() < deadline and server.poll() is None:
            try:
                runs = get(base, "/data/runs")
                if runs and get(base, "/data/plugin/scalars/tags").get(runs[0]):
                    break
            except OSError:  # not listening yet
                pass
            time.sleep(0.3)
        assert runs == ["version_0"], server.stderr.read() if server.poll() is not None else runs
        run = runs[0]
        tags = list(get(base, "/data/plugin/scalars/tags")[run])
        assert sorted(tags)[0].startswith("loss/"), sorted(tags)  # the scalars page opens on the loss terms
        assert {"loss/total", "loss/content", "loss/style", "loss/tv", "quality/style_mean_std", "quality/content",
                "quality/color", "quality/clipped_pct", "perf/quality_seconds", "val/temporal"} <= set(tags)
        assert "data/skipped" not in tags and "hp_metric" not in tags  # nothing skipped; no -1 placeholder
        quality = get(base, "/data/plugin/scalars/scalars", run=run, tag="quality/style_mean_std")
        assert [step for _, step, _ in quality] == [1, 3]  # each validation (val_check_interval 2)

        page = get(base, "/data/plugin/custom_scalars/layout")
        assert [c["title"] for c in page["category"]] == ["loss", "quality"]
        charts = {ch["title"]: ch["multiline"]["tag"] for ch in page["category"][0]["chart"]}
        assert list(charts)[:5] == ["total", "content", "style", "tv", "temporal"]
        assert charts["total"] == ["^(loss|val)/total$"] and charts["temporal"] == ["^(loss|val)/temporal$"]
        assert "style per painting" not in charts  # one painting: no empty chart

        images = get(base, "/data/plugin/images/tags")[run]
        assert {"style", "preview/photos_vs_stylized"} <= set(images)

        request = json.dumps({"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"], "colParams": [],
                              "startIndex": 0, "sliceSize": 10}).encode()
        with urllib.request.urlopen(urllib.request.Request(f"{base}/data/plugin/hparams/experiment",
                                                           data=json.dumps({"experimentName": ""}).encode(),
                                                           headers={"Content-Type": "application/json"}), timeout=10) as r:
            experiment = json.loads(r.read())
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert metrics == {"run/loss", "run/style_distance", "run/content_distance", "run/temporal"}
        assert {"lr", "style_image"} <= {h["name"] for h in experiment["hparamInfos"]}
        with urllib.request.urlopen(urllib.request.Request(f"{base}/data/plugin/hparams/session_groups", data=request,
                                                           headers={"Content-Type": "application/json"}), timeout=10) as r:
            groups = json.loads(r.read())["sessionGroups"]
        values = {m["name"]["tag"]: m["value"] for m in groups[0]["metricValues"]}
        assert len(groups) == 1 and all(v == v and v > 0 for v in values.values()), values  # real, finite, not -1
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stderr.close()


def test_the_layout_has_a_chart_per_painting_only_for_several() -> None:
    from fst.training.monitoring import layout

    assert "style per painting" not in layout(1)["loss"] and "style per painting" in layout(3)["loss"]
