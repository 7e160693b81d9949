"""Training end to end with the real Trainer, real shards, real VGG, real TensorBoard files."""

from __future__ import annotations

import signal
import time

import pytest
import torch
import yaml

from fst.artefacts.checkpoint import load_checkpoint, transformer_from_checkpoint
from fst.cli import main as cli

from runs import ROOT, events, fst_subprocess, run_args


@pytest.mark.slow
def test_fit_logs_scalars_images_and_writes_fst_checkpoints(tmp_path):
    assert cli(run_args(tmp_path)) == 0
    acc = events(tmp_path)
    scalars = set(acc.Tags()["scalars"])
    for tag in ["loss/total", "loss/content", "loss/style", "loss/tv", "loss/style/relu1_2", "loss/style/relu4_3",
                "lr", "perf/images_per_sec", "output/min", "output/max", "output/mean", "val/total"]:
        assert tag in scalars, tag
    steps = [e.step for e in acc.Scalars("loss/total")]
    assert len(steps) == 4 and all(torch.isfinite(torch.tensor(e.value)) for e in acc.Scalars("loss/total"))
    images = set(acc.Tags()["images"])
    assert {"style", "preview/photos_vs_stylized"} <= images
    grid = acc.Images("preview/photos_vs_stylized")[-1]
    assert (grid.width, grid.height) == (2 * 32 + 3 * 2, 2 * 32 + 3 * 2)  # 2 photos over their 2 stylized versions
    assert (next((tmp_path / "tb").rglob("config.yaml"))).is_file() and next((tmp_path / "tb").rglob("hparams.yaml"))

    ckpts = sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt"))
    assert ckpts == ["last.ckpt", "step0000002.ckpt", "step0000004.ckpt"]
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert ckpt["global_step"] == 4 and ckpt["fst"]["style_name"] == "the_scream"
    assert ckpt["fst"]["style_loss"] == "gram" and ckpt["fst"]["net"] == {"channels": 8, "n_residual": 1, "output": "linear", "output_gain": 4.0, "n_styles": 1}
    assert not any(k.startswith("criterion.vgg.") for k in ckpt["state_dict"])  # VGG is not duplicated
    assert any(k.startswith("criterion.targets.0.relu1_2__") for k in ckpt["state_dict"])
    net, meta = transformer_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert net(torch.rand(1, 3, 20, 30)).shape == (1, 3, 20, 30)


@pytest.mark.slow
def test_keep_last_k(tmp_path):
    assert cli(run_args(tmp_path, "--trainer.max_steps", "6", "--checkpoint.every_n_train_steps", "1",
                        "--checkpoint.save_top_k", "2", "--trainer.val_check_interval", "100")) == 0
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt")) == [
        "last.ckpt", "step0000005.ckpt", "step0000006.ckpt"]


@pytest.mark.slow
def test_resume_says_which_model_settings_the_checkpoint_overrides(tmp_path, capsys):
    assert cli(run_args(tmp_path, "--trainer.max_steps", "2")) == 0
    resume = ["--trainer.max_steps", "4", "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")]
    capsys.readouterr()
    assert cli(run_args(tmp_path, "--model.lr", "0.02", *resume)) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "rebuilds the model" in line]
    assert len(warning) == 1 and "ignored: lr=0.02 (resuming with 0.001)" in warning[0]
    assert load_checkpoint(tmp_path / "ckpt" / "last.ckpt")["hyper_parameters"]["lr"] == 0.001
    assert cli(run_args(tmp_path, "--trainer.max_steps", "6", "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt"))) == 0
    assert "rebuilds the model" not in capsys.readouterr().err  # nothing changed: nothing said


@pytest.mark.slow
def test_sigkill_then_resume_continues(tmp_path, tmp_path_factory):
    other_style = tmp_path_factory.mktemp("style") / "painting.jpg"  # resuming must not need it
    other_style.write_bytes((ROOT / "fst/assets/styles/udnie.jpg").read_bytes())
    args = run_args(tmp_path, "--trainer.max_steps", "1000000", "--model.style_image", str(other_style),
                    "--trainer.val_check_interval", "1000", "--trainer.callbacks+=fst_test_callbacks.SlowDown",
                    "--trainer.callbacks.seconds", "0.3")
    proc = fst_subprocess(args)
    # Lightning writes step N's numbered file, then last.ckpt: once a file of step 6 or later is there,
    # last.ckpt holds step 4 or later, whenever the kill lands. (Not step 6's file by name: the run
    # deletes it again two intervals on, and a busy machine's poll could miss it; nor a run that can
    # end on its own before the kill.)
    saved = lambda: max((int(p.stem[len("step"):]) for p in (tmp_path / "ckpt").glob("step*.ckpt")), default=0)  # noqa: E731
    deadline = time.time() + 240
    while saved() < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert saved() >= 6, proc.communicate()[0][-2000:] if proc.poll() is not None else "timeout"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    killed_at = last["global_step"]
    newest = max(int(p.stem[len("step"):]) for p in (tmp_path / "ckpt").glob("step*.ckpt"))
    assert killed_at >= 4 and killed_at % 2 == 0
    assert newest - killed_at <= 2  # a kill loses at most one interval (2 steps) of saved work
    first_config = (next((tmp_path / "tb").rglob("config.yaml"))).read_text()

    other_style.unlink()
    resume = fst_subprocess(run_args(tmp_path, "--trainer.max_steps", str(killed_at + 2), "--model.style_image",
                                     str(other_style), "--trainer.val_check_interval", "1000", "--ckpt_path", "last"))
    out = resume.communicate(timeout=300)[0]
    assert resume.returncode == 0, out[-3000:]
    final = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert final["global_step"] == killed_at + 2
    # the optimizer state came back too (Adam's step count continues, it did not restart at 2)
    assert int(final["optimizer_states"][0]["state"][0]["step"]) == killed_at + 2
    configs = sorted((tmp_path / "tb").rglob("config.yaml"))
    assert len(configs) == 2
    strip = lambda text: {k: v for k, v in yaml.safe_load(text).items() if k not in ("ckpt_path", "trainer")}  # noqa: E731
    assert strip(configs[-1].read_text()) == strip(first_config)


@pytest.mark.slow
def test_nan_stops_with_the_step_and_keeps_good_checkpoints(tmp_path, capsys):
    code = cli(run_args(tmp_path, "--trainer.max_steps", "10", "--checkpoint.every_n_train_steps", "1",
                        "--trainer.callbacks+=fst_test_callbacks.PoisonAt", "--trainer.callbacks.step", "3"))
    assert code == 2
    err = capsys.readouterr().err
    assert "loss is nan at step 3" in err
    last = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert last["global_step"] == 3  # the steps before the NaN are saved...
    net, _ = transformer_from_checkpoint(last)
    assert all(torch.isfinite(p).all() for p in net.parameters())  # ...and none of it is NaN


@pytest.mark.parametrize("extra,message", [
    (["--model.style_loss", "gramm"], "unknown style loss 'gramm'"),
    (["--model.style_image", "/no/such.jpg"], "/no/such.jpg: style image not found"),
    (["--data.train_shards", "/no/shards-{000..003}.tar"], "missing shard /no/shards-000.tar"),
    (["--model.bogus", "1"], "unrecognized arguments: --model.bogus"),
])
def test_bad_config_fails_before_training_with_one_line(tmp_path, capsys, extra, message):
    assert cli(run_args(tmp_path, *extra)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fst fit: error:")]
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.slow
def test_ddp_two_ranks_train_on_different_data_and_save_one_checkpoint(tmp_path):
    keys = tmp_path / "keys"
    proc = fst_subprocess(run_args(
        tmp_path, "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.max_steps", "3",
        "--data.resampled", "false", "--data.epoch_length", "3", "--trainer.val_check_interval", "1000",
        "--checkpoint.every_n_train_steps", "3",
        "--trainer.callbacks+=fst_test_callbacks.RecordKeys", f"--trainer.callbacks.out={keys}"))
    out = proc.communicate(timeout=400)[0]
    assert proc.returncode == 0, out[-3000:]
    seen = {r: [line.split()[1] for line in (keys / f"rank{r}.txt").read_text().splitlines()] for r in (0, 1)}
    assert len(seen[0]) == len(seen[1]) == 6  # 3 steps x batch 2 on each rank
    assert not set(seen[0]) & set(seen[1])  # split_by_node: disjoint shards per rank
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt")) == ["last.ckpt", "step0000003.ckpt"]


@pytest.mark.slow
def test_bf16_mixed_on_cpu_then_validate_the_checkpoint(tmp_path, capsys):
    assert cli(run_args(tmp_path, "--trainer.precision", "bf16-mixed", "--trainer.max_steps", "2",
                        "--model.channels_last", "true")) == 0
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    net, _ = transformer_from_checkpoint(ckpt)
    assert ckpt["global_step"] == 2 and all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in net.parameters())
    val = ["validate", *run_args(tmp_path)[1:], "--ckpt_path", str(tmp_path / "ckpt" / "last.ckpt")]
    assert cli(val) == 0
    assert "val/total" in capsys.readouterr().out  # Lightning prints the validation metrics table


@pytest.mark.slow
def test_fit_with_decode_on_device(tmp_path):
    assert cli(run_args(tmp_path, "--trainer.max_steps", "2", "--data.decode_on_device", "true")) == 0
    assert load_checkpoint(tmp_path / "ckpt" / "last.ckpt")["global_step"] == 2
    assert "data/skipped" not in events(tmp_path).Tags()["scalars"]  # logged only when a sample was skipped


@pytest.mark.slow
def test_compiled_transformer_trains_like_eager_and_checkpoints_one_copy(tmp_path):
    """`model.compile: true` runs real inductor code on CPU: same first loss as eager (same seed,
    same data), and the checkpoint holds the transformer once, loadable without torch.compile."""
    runs = {flag: tmp_path / flag for flag in ("false", "true")}
    for flag, out in runs.items():
        assert cli(run_args(out, "--trainer.max_steps", "2", "--trainer.val_check_interval", "100",
                            "--model.compile", flag)) == 0
    eager, compiled = (events(out).Scalars("loss/total")[0].value for out in runs.values())
    assert compiled == pytest.approx(eager, rel=1e-4)
    ckpt = load_checkpoint(runs["true"] / "ckpt" / "last.ckpt")
    assert ckpt["global_step"] == 2 and not any("_orig_mod" in k for k in ckpt["state_dict"])
    net, _ = transformer_from_checkpoint(ckpt)
    assert net(torch.rand(1, 3, 20, 30)).shape == (1, 3, 20, 30)
