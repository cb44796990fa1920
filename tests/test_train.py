"""Training runs, checkpoints, resume, fine-tuning and the refusal to overwrite."""

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import robench.training.loop as train_module
from robench import load_checkpoint
from robench.errors import RobenchError
from robench.training.accuracy import accuracy
from robench.training.batches import balanced_batches
from robench.training.loop import cosine_lr, train


def test_train_writes_a_complete_run(tiny_config):
    meta = train(tiny_config("gccs", epochs=3), device="cpu", progress=False)
    out = meta["config"]["out"]
    saved = json.loads(open(f"{out}/run.json").read())
    assert saved["status"] == "finished" and saved["epochs_done"] == 3
    assert saved["training"] == "regular" and saved["parent"] is None
    assert saved["loss_hyper"] == {"mu": 70.0, "sigma": 1.0, "kurtosis_weight": 0.2, "covariance": "full",
                                   "jitter": 1e-3, "variance_eps": 1e-12}
    assert saved["optimizer"]["grad_clip"] == 5.0 and saved["optimizer"]["schedule"] == "cosine"
    assert len(saved["history"]) == 3 and saved["test_accuracy"] == saved["history"][-1]["test_accuracy"]
    assert saved["environment"]["versions"]["torch"] == torch.__version__
    for key in ("git_commit", "device", "versions"):
        assert key in saved["environment"]
    log = open(f"{out}/train_log.csv").read().splitlines()
    assert log[0] == "epoch,loss,train_accuracy,test_accuracy,seconds,lr" and len(log) == 4
    assert not Path(out, "train_state.safetensors").exists()


@pytest.mark.parametrize("loss", ["ce", "gccs"])
def test_training_learns_synthetic_data(tiny_config, synth_data, loss):
    hyper = {"mu": 10.0} if loss == "gccs" else {}  # 24 SGD steps cannot reach targets at mu = 70
    meta = train(tiny_config(loss, epochs=6, loss_hyper=hyper), device="cpu", progress=False)
    assert meta["best_test_accuracy"] >= 0.9, meta["history"]


def test_load_checkpoint_gives_eval_model_matching_recorded_accuracy(tiny_config, synth_data):
    meta = train(tiny_config(), device="cpu", progress=False)
    model, loaded = load_checkpoint(meta["config"]["out"])
    assert not model.training and loaded["test_accuracy"] == meta["test_accuracy"]
    z = model(synth_data.x_test[:5])
    assert z.shape == (5, 4)
    assert accuracy(model, synth_data.x_test, synth_data.y_test) == meta["test_accuracy"]


def test_resume_after_a_kill_matches_an_uninterrupted_run(tiny_config, monkeypatch):
    full = train(tiny_config(out="full", epochs=3), device="cpu", progress=False)

    real_write = train_module.write_epoch
    calls = []

    def write_then_die(*args, **kwargs):
        real_write(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "write_epoch", write_then_die)
    cfg = tiny_config(out="killed", epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, device="cpu", progress=False)
    assert json.loads(open(f"{cfg.out}/run.json").read())["epochs_done"] == 1
    with pytest.raises(RobenchError, match="add --resume"):
        train(cfg, device="cpu", progress=False)
    resumed = train(cfg, device="cpu", progress=False, resume=True)
    assert resumed["resumed_at_epoch"] == [1]
    a, b = load_file(f"{full['config']['out']}/model.safetensors"), load_file(f"{cfg.out}/model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [h["test_accuracy"] for h in resumed["history"]] == [h["test_accuracy"] for h in full["history"]]


def test_resume_with_a_different_command_is_refused(tiny_config, monkeypatch):
    cfg = tiny_config(epochs=3)
    monkeypatch.setattr(train_module, "write_epoch", _die_after(train_module.write_epoch))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, device="cpu", progress=False)
    monkeypatch.undo()
    with pytest.raises(RobenchError, match="lr: 0.01 -> 0.1"):
        train(tiny_config(epochs=3, lr=0.1), device="cpu", progress=False, resume=True)


def _die_after(write):
    def wrapper(*args, **kwargs):
        write(*args, **kwargs)
        raise KeyboardInterrupt

    return wrapper


def test_finished_run_is_not_overwritten_without_force(tiny_config):
    cfg = tiny_config()
    train(cfg, device="cpu", progress=False)
    before = open(f"{cfg.out}/model.safetensors", "rb").read(), open(f"{cfg.out}/run.json").read()
    with pytest.raises(RobenchError, match="finished run"):
        train(cfg, device="cpu", progress=False)
    assert (open(f"{cfg.out}/model.safetensors", "rb").read(), open(f"{cfg.out}/run.json").read()) == before
    meta = train(cfg, device="cpu", progress=False, force=True)
    assert meta["status"] == "finished"


def test_foreign_directory_is_not_written_into(tiny_config, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(RobenchError, match="without a robench run"):
        train(tiny_config(), device="cpu", progress=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]


def test_finetune_records_parent_and_checks_compatibility(tiny_config):
    parent = train(tiny_config("ce", out="parent"), device="cpu", progress=False)
    child = train(tiny_config("gccs", out="child", init=parent["config"]["out"]), device="cpu", progress=False)
    assert child["training"] == "finetune"
    assert child["parent"]["path"] == parent["config"]["out"]
    assert child["parent"]["sha256"] == parent["weights_sha256"]
    with pytest.raises(RobenchError, match="does not match this run: model_options"):
        train(tiny_config("gccs", out="bad", init=parent["config"]["out"], model_options={"hidden": 8}),
              device="cpu", progress=False)


def test_finetune_starts_from_parent_weights(tiny_config, synth_data):
    parent = train(tiny_config("ce", out="parent", epochs=4), device="cpu", progress=False)
    child = train(tiny_config("ce", out="child", init=parent["config"]["out"], epochs=1, lr=1e-9),
                  device="cpu", progress=False)
    assert child["history"][0]["test_accuracy"] == pytest.approx(parent["test_accuracy"], abs=0.02)


def test_divergence_is_a_clear_error(tiny_config):
    with pytest.raises(RobenchError, match="training diverged"):
        train(tiny_config("gccs", lr=10.0, grad_clip=0.0, epochs=3), device="cpu", progress=False)


@pytest.mark.parametrize("bad,match", [
    (dict(epochs=0), "--epochs must be at least 1"),
    (dict(epochs=-3), "--epochs must be at least 1"),
    (dict(lr=-1.0), "--lr must be a positive"),
    (dict(batch_size=0), "--batch-size"),
    (dict(loss="gcss"), "did you mean 'gccs'"),
    (dict(model="small_cnn"), "unknown model"),
    (dict(loss="gccs", loss_hyper={"mu": 70, "tau": 1}), "no hyper-parameter 'tau'"),
])
def test_bad_configs_are_clear_errors_and_write_nothing(tiny_config, tmp_path, bad, match):
    cfg = tiny_config(**bad)
    with pytest.raises(RobenchError, match=match):
        train(cfg, device="cpu", progress=False)
    assert not (tmp_path / "run").exists()


def test_pickled_weights_are_never_unpickled(tiny_config):
    meta = train(tiny_config(), device="cpu", progress=False)
    out = meta["config"]["out"]

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    with open(f"{out}/model.safetensors", "wb") as fh:
        pickle.dump({"w": Boom()}, fh)
    with pytest.raises(RobenchError, match="is not the file its run.json records"):
        load_checkpoint(out)  # its hash does not match the run.json's
    with pytest.raises(RobenchError, match="cannot read"):
        load_checkpoint(out, verify=False)  # and safetensors never unpickles it


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(RobenchError, match="not found"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RobenchError, match="run.json is missing"):
        load_checkpoint(tmp_path / "empty")


def test_cosine_schedule():
    assert cosine_lr(0.01, 0, 100) == 0.01
    assert cosine_lr(0.01, 50, 100) == pytest.approx(0.005)
    assert cosine_lr(0.01, 100, 100) == pytest.approx(0.0)


def test_balanced_batches_hold_k_rows_of_distinct_classes():
    labels = torch.arange(10).repeat_interleave(20)
    batches = list(balanced_batches(labels, 32, 4, torch.Generator().manual_seed(0)))
    assert len(batches) == 200 // 32
    for idx in batches:
        counts = torch.bincount(labels[idx], minlength=10)
        assert len(idx) == 32 and sorted(counts[counts > 0].tolist()) == [4] * 8
    with pytest.raises(RobenchError, match="at least 2"):
        list(balanced_batches(labels, 32, 1, torch.Generator()))


def test_training_with_balanced_batches(tiny_config):
    meta = train(tiny_config("gccs", samples_per_class=4, batch_size=16, epochs=4, loss_hyper={"mu": 10.0}),
                 device="cpu", progress=False)
    assert meta["optimizer"]["samples_per_class"] == 4 and meta["best_test_accuracy"] >= 0.75


@pytest.mark.parametrize("loss", ["ce", "gccs", "jacobian", "input-grad", "cross-lipschitz"])
def test_every_loss_trains_regular_and_finetuned(tiny_config, loss):
    parent = train(tiny_config("ce", out="parent"), device="cpu", progress=False)
    regular = train(tiny_config(loss, out=f"{loss}-regular"), device="cpu", progress=False)
    child = train(tiny_config(loss, out=f"{loss}-ft", init=parent["config"]["out"], epochs=1),
                  device="cpu", progress=False)
    assert regular["training"] == "regular" and child["training"] == "finetune"
    for meta in (regular, child):
        assert all(torch.isfinite(torch.tensor(h["loss"])) for h in meta["history"])
        assert all(v == v for v in meta["gradient_statistics"].values())  # no NaN


def test_atomic_writes_leave_ordinary_file_permissions(tmp_path):
    import os

    from robench.files import atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert os.stat(tmp_path / "a.txt").st_mode == os.stat(tmp_path / "b.txt").st_mode


def test_git_commit_is_dirty_only_for_code_changes(tmp_path):
    import subprocess

    from robench.provenance import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "robench").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "robench" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "attacks.csv").write_text("a\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    clean = git_commit(tmp_path)
    assert clean and not clean.endswith("+dirty")
    (tmp_path / "results" / "attacks.csv").write_text("a\n1\n")   # a run writing its results
    assert git_commit(tmp_path) == clean
    (tmp_path / "robench" / "code.py").write_text("x = 2\n")       # the code itself changed
    assert git_commit(tmp_path) == clean + "+dirty"
