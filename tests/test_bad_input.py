"""Hostile input to every command: one ``error:`` line, exit code 2, no traceback, no file touched.

Each case runs the CLI in a tmp_path that holds a regular file (``afile``), a finished tiny
checkpoint (``ck``) and a valid recipe (``ok.toml``); every file there is hashed before and after.
Also: ``--resume`` of a finished run is a no-op, and resuming with another torch thread count warns.
"""

import hashlib
import json
import shutil

import pytest
import torch
from conftest import error_line
from typer.testing import CliRunner

import robench.training.loop as train_module
from robench.cli import app
from robench.errors import RobenchError
from robench.training.config import TrainConfig
from robench.training.loop import train

runner = CliRunner(env={"COLUMNS": "200"})
HUGE = "1180591620717411303424"  # 2**70
DATA = ["--dataset", "synthetic", "--dataset-option", "num_classes=4", "--dataset-option", "n_train=64",
        "--dataset-option", "n_test=32", "--dataset-option", "image_size=8"]
TRAIN = ["train", *DATA, "--model", "small-cnn", "--model-option", "hidden=16", "--epochs", "1",
         "--batch-size", "32", "--device", "cpu", "--quiet"]
RECIPE = """\
name = "t"
[train]
datasets = ["digits"]
models = ["small-cnn"]
losses = ["ce", "gccs"]
epochs = 1

[[attack]]
attack = "pgd"
eps = [0, 0.1]
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "ck"
    train(TrainConfig(dataset="synthetic", dataset_options={"num_classes": 4, "n_train": 64, "n_test": 32},
                      model="small-cnn", model_options={"hidden": 16}, loss="ce", out=str(out), epochs=1,
                      batch_size=32), device="cpu", progress=False)
    return out


@pytest.fixture
def tree(tmp_path, checkpoint):
    """tmp_path with ``afile`` (a regular file), ``ck`` (a finished run) and ``ok.toml`` (a valid recipe)."""
    (tmp_path / "afile").write_text("not a directory\n")
    shutil.copytree(checkpoint, tmp_path / "ck")
    (tmp_path / "ok.toml").write_text(RECIPE)
    return tmp_path


def snapshot(root):
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def assert_refused(root, args, fragment):
    """The command fails with one error line holding ``fragment``; every file under root stays as it was."""
    before = snapshot(root)
    result = runner.invoke(app, [a.replace("{tmp}", str(root)) for a in args])
    line = error_line(result)   # exit code 2, exactly one line, starting with "error:", no traceback
    assert fragment in line, line
    after = snapshot(root)
    assert {p: after.get(p) for p in before} == before   # nothing existing modified, truncated or removed
    assert set(after) == set(before), set(after) - set(before)   # refused before any work: nothing new


def _train(*extra, out="{tmp}/run", loss="ce"):
    return [*TRAIN, "--loss", loss, "--out", out, *extra]


TRAIN_CASES = [
    (_train("--seed", HUGE), "--seed must be an integer in 0..2^63-1, got " + HUGE),
    (_train("--seed", "-1"), "--seed must be an integer in 0..2^63-1, got -1"),
    (_train("--force", out="{tmp}/afile"), "afile exists and is not a directory"),
    (_train(out="{tmp}/afile"), "afile exists and is not a directory"),
    (_train("--force", out="{tmp}/afile/run"), "afile is not a directory"),
    (_train("--samples-per-class", "0"), "--samples-per-class must be at least 2"),
    (_train("--samples-per-class", "-1"), "--samples-per-class must be at least 2"),
    (_train("--samples-per-class", "1"), "--samples-per-class must be at least 2"),
    (_train("--samples-per-class", "64"), "need between 1 and 4 classes per batch"),
    (_train("--train-subset", "0"), "--train-subset must be at least 1, got 0"),
    (_train("--test-subset", "-3"), "--test-subset must be at least 1, got -3"),
    (_train("--train-subset", HUGE), "--train-subset must be at most 2^63-1"),
    (_train("--epochs", "0"), "--epochs must be at least 1, got 0"),
    (_train("--batch-size", "0"), "--batch-size must be at least 1, got 0"),
    (_train("--batch-size", HUGE), "--batch-size must be at most 2^63-1"),
    (_train("--lr", "nan"), "--lr must be a positive number, got nan"),
    (_train("--lr", "inf"), "--lr must be a positive number, got inf"),
    (_train("--lr", "0"), "--lr must be a positive number"),
    (_train("--momentum", "nan"), "--momentum must be a finite number >= 0, got nan"),
    (_train("--momentum", "inf"), "--momentum must be a finite number >= 0, got inf"),
    (_train("--momentum", "-1"), "--momentum must be a finite number >= 0"),
    (_train("--weight-decay", "inf"), "--weight-decay must be a finite number >= 0, got inf"),
    (_train("--weight-decay", "nan"), "--weight-decay must be a finite number >= 0, got nan"),
    (_train("--grad-clip", "nan"), "--grad-clip must be a finite number >= 0"),
    (_train("--grad-clip", "inf"), "--grad-clip must be a finite number >= 0"),
    (_train("--grad-clip", "-1"), "--grad-clip must be a finite number >= 0"),
    (_train("--mu", "nan", loss="gccs"), "hyper-parameter mu: expected a finite number, got nan"),
    (_train("--sigma", "inf", loss="gccs"), "hyper-parameter sigma: expected a finite number, got inf"),
    (_train("--kurtosis-weight", "nan", loss="gccs"), "hyper-parameter kurtosis_weight: expected a finite number"),
    (_train("--reg-weight", "nan", loss="jacobian"), "hyper-parameter reg_weight: expected a finite number"),
    (_train("--jacobian-projections", HUGE, loss="jacobian"), "hyper-parameter projections: expected an integer"),
    (_train("--mu", "1"), "loss 'ce' has no hyper-parameter 'mu'"),
    (_train("--model-option", "hidden=abc"), "option 'hidden' must be a positive integer"),
    (_train("--model-option", "width=abc"), "unknown option 'width'"),
    (_train("--model-option", "=3"), "--model-option expects key=value"),
    (_train("--dataset-option", "num_classes=abc"), "num_classes must be an integer in 2..1000, got 'abc'"),
    (_train("--dataset-option", "num_classes=1"), "num_classes must be an integer in 2..1000, got 1"),
    (_train("--dataset", ""), "unknown dataset ''"),
    (_train("--model", ""), "unknown model ''"),
    (_train(loss=""), "unknown loss ''"),
    (_train("--init", "{tmp}/afile"), "not found"),
    (["train", "--dataset", "digits", "--model", "resnet18", "--model-option", "width=abc", "--loss", "ce",
      "--out", "{tmp}/run", "--device", "cpu", "--quiet"], "option 'width' must be a number"),
    (["train", "--dataset", "synthetic", "--dataset-option", "image_size=100000000", "--model", "small-cnn",
      "--loss", "ce", "--out", "{tmp}/run", "--device", "cpu", "--quiet"], "image_size must be an integer in 1..1024"),
    (["train", "--dataset", "synthetic", "--dataset-option", "n_train=1000000", "--dataset-option", "image_size=512",
      "--model", "small-cnn", "--loss", "ce", "--out", "{tmp}/run", "--device", "cpu", "--quiet"],
     "more than 10^9 pixel values"),
    (_train("--mu", "0", loss="gccs"), "mu must be positive"),
    (_train("--jacobian-projections", "1000000000", loss="jacobian"), "jacobian projections must be a whole number"),
]

ATTACK = ["attack", "--checkpoint", "{tmp}/ck", "--out", "{tmp}/attacks.csv", "--n-samples", "8", "--device", "cpu",
          "--quiet"]
ATTACK_CASES = [
    ([*ATTACK, "--step-size", "inf"], "pgd: --step-size must be a finite number > 0"),
    ([*ATTACK, "--step-size", "nan"], "pgd: --step-size must be a finite number > 0"),
    ([*ATTACK, "--step-size", "0"], "pgd: --step-size must be a finite number > 0"),
    ([*ATTACK, "--attack", "tgsm", "--step-size", "inf"], "tgsm: --step-size must be a finite number > 0"),
    ([*ATTACK, "--steps", HUGE], "pgd: --steps must be at most 2^63-1"),
    ([*ATTACK, "--restarts", HUGE], "pgd: --restarts must be at most 2^63-1"),
    ([*ATTACK, "--eps-grid", "0:1:100000000000"], "at most 10000 are allowed"),
    ([*ATTACK, "--eps-grid", "0:inf:3"], "values must be finite and >= 0"),
    ([*ATTACK, "--eps-grid", "0,1e400"], "values must be finite and >= 0, got inf"),
    ([*ATTACK, "--batch-size", HUGE], "--batch-size must be at most 2^63-1"),
    ([*ATTACK, "--backend", ""], "--backend is empty"),
    ([*ATTACK, "--attack", ""], "give at least one attack"),
    ([*ATTACK, "--attack", "jsma", "--steps", HUGE], "jsma: --steps must be at most 2^63-1"),
    (["report", "{tmp}/afile"], "is not a directory"),
]

AUDIT = ["audit", "{tmp}/ck", "--n-samples", "8", "--device", "cpu", "--quiet"]
AUDIT_CASES = [
    ([*AUDIT, "--out", "{tmp}/afile"], "--out {tmp}/afile exists and is not a directory"),
    ([*AUDIT, "--out", "{tmp}/afile/sub"], "afile is not a directory"),
    ([*AUDIT, "--out", "{tmp}/ck/run.json"], "run.json exists and is not a directory"),
    ([*AUDIT, "--csv", "{tmp}/afile/audit.csv"], "afile is not a directory"),
    ([*AUDIT, "--eps-check", "nan"], "--eps-check must be a finite number > 0, got nan"),
    ([*AUDIT, "--eps-check", "inf"], "--eps-check must be a finite number > 0, got inf"),
    ([*AUDIT, "--eps-check", "-0.1"], "--eps-check must be a finite number > 0, got -0.1"),
    ([*AUDIT, "--eps-grid", "0,inf"], "values must be finite and >= 0, got inf"),
    ([*AUDIT, "--seed", "-1"], "--seed must be an integer in 0..2^63-1, got -1"),
    ([*AUDIT, "--seed", HUGE], "--seed must be an integer in 0..2^63-1"),
    ([*AUDIT, "--batch-size", HUGE], "--batch-size must be at most 2^63-1"),
    ([*AUDIT, "--strong-steps", HUGE], "--strong-steps must be at most 2^63-1"),
]

RUN_CASES = [
    (["run", "{tmp}/ok.toml", "--results", "{tmp}/afile", "--quiet", "--device", "cpu"],
     "--results {tmp}/afile exists and is not a directory"),
    (["run", "{tmp}/ok.toml", "--runs", "{tmp}/afile", "--quiet", "--device", "cpu"],
     "--runs {tmp}/afile exists and is not a directory"),
    (["run", "{tmp}/ok.toml", "--runs", "{tmp}/afile", "--dry-run"], "--runs {tmp}/afile exists and is not a directory"),
    (["run", "{tmp}/ok.toml", "--results", "{tmp}/afile/res", "--runs", "{tmp}/runs"], "afile is not a directory"),
]


@pytest.mark.parametrize("args,fragment", TRAIN_CASES + ATTACK_CASES + AUDIT_CASES + RUN_CASES,
                         ids=lambda v: " ".join(v[-4:]) if isinstance(v, list) else None)
def test_bad_command_line_is_one_error_line(tree, args, fragment):
    assert_refused(tree, args, fragment.replace("{tmp}", str(tree)))


NO_ATTACK = RECIPE.split("[[attack]]")[0]
RECIPE_CASES = [   # (recipe text, fragment after "error: <file>, ")
    ('report = 5\n' + RECIPE, "line 1: report: expected a [report] table, got 5"),
    ('attack = [5]\n' + NO_ATTACK, "line 1: attack: write attacks as [[attack]] tables, got [5]"),
    ('latent = 5\n' + RECIPE, "line 1: latent: expected a [latent] table, got 5"),
    ('audit = 5\n' + RECIPE, "line 1: audit: expected a [audit] table, got 5"),
    ('name = "t"\ntrain = 5\n', "line 2: train: expected a [train] table, got 5"),
    (RECIPE.replace("epochs = 1", "epochs = 1\nloss_hyper = {ce = 5}"),
     "line 7: train.loss_hyper.ce: expected a table of hyper-parameters, got 5"),
    (RECIPE.replace("epochs = 1", 'epochs = 1\nloss_hyper = {gccs = {mu = "abc"}}'),
     "line 7: train.loss_hyper.gccs.mu: expected a finite number, got 'abc'"),
    (RECIPE.replace("epochs = 1", "epochs = 1\nloss_hyper = {gccs = {mu = true}}"),
     "line 7: train.loss_hyper.gccs.mu: expected a finite number, got True"),
    (RECIPE.replace("epochs = 1", "epochs = 1\nloss_hyper = {gccs = {covariance = 5}}"),
     "line 7: train.loss_hyper.gccs.covariance: expected a string, got 5"),
    (RECIPE + '\n[train.loss_hyper.gccs]\nmu = nan\n', "line 13: train.loss_hyper.gccs.mu: expected a finite number"),
    (RECIPE.replace("epochs = 1", 'epochs = 1\nhyper_grid = {gccs = {mu = ["abc"]}}'),
     "line 7: train.hyper_grid.gccs.mu: expected a finite number, got 'abc'"),
    (RECIPE.replace("epochs = 1", "epochs = 1\nhyper_grid = {gccs = 5}"),
     "line 7: train.hyper_grid.gccs: expected a table of hyper-parameters, got 5"),
    (RECIPE.replace("epochs = 1", "epochs = 1\ndataset_options = 5"), "line 7: train.dataset_options: expected a table"),
    (RECIPE.replace("epochs = 1", "epochs = 1\nmodel_options = 5"), "line 7: train.model_options: expected a table"),
    (RECIPE.replace("epochs = 1", "epochs = 1\nmodel_options = {width = 0.5}"),
     "line 7: train.model_options: model 'small-cnn' takes no option 'width'"),
    (RECIPE.replace("epochs = 1", "epochs = 1\nseeds = [0, -1]"),
     "line 7: train.seeds: must be an integer in 0..2^63-1, got -1"),
    (RECIPE.replace("epochs = 1", "epochs = 1\nlr = inf"), "line 7: train.lr: must be a finite number > 0, got inf"),
    (RECIPE.replace("epochs = 1", "epochs = 1\nmomentum = nan"), "line 7: train.momentum: must be a finite number"),
    (RECIPE.replace("epochs = 1", "epochs = 1\nepochs_x = 1"), "line 7: train.epochs_x: unknown key"),
    (RECIPE + "seed = -1\n", "line 11: attack.seed: must be an integer in 0..2^63-1, got -1"),
    (RECIPE + "step_size = inf\n", "line 11: attack.step_size: must be a finite number > 0, got inf"),
    (RECIPE + "restarts = 0\n", "line 11: attack.restarts: must be a positive integer, got 0"),
    (RECIPE.replace("eps = [0, 0.1]", 'eps = "0:1:100000000000"'), "line 10: attack.eps: "),
    (RECIPE + "\n[latent]\nseed = -1\n", "line 13: latent.seed: must be an integer in 0..2^63-1, got -1"),
    (RECIPE + "\n[latent]\neps = inf\n", "line 13: latent.eps: must be a finite number >= 0, got inf"),
    (RECIPE + "\n[latent]\nclasses = [true]\n", "line 13: latent.classes: expected a non-empty list of class"),
    (RECIPE + "\n[audit]\nseed = -1\n", "line 13: audit.seed: must be an integer in 0..2^63-1, got -1"),
    (RECIPE + "\n[audit]\neps_check = inf\n", "line 13: audit.eps_check: must be a finite number > 0, got inf"),
]


@pytest.mark.parametrize("text,fragment", RECIPE_CASES, ids=[f[1][:48] for f in RECIPE_CASES])
def test_bad_recipe_is_one_error_line_naming_file_key_and_line(tree, text, fragment):
    (tree / "bad.toml").write_text(text)
    assert_refused(tree, ["run", "{tmp}/bad.toml", "--dry-run", "--results", "{tmp}/res", "--runs", "{tmp}/runs"],
                   f"error: {tree / 'bad.toml'}, {fragment}")


def test_resume_of_a_finished_run_is_a_no_op(tree, monkeypatch):
    args = _train(out=str(tree / "run"))
    assert runner.invoke(app, args).exit_code == 0
    meta = json.loads((tree / "run" / "run.json").read_text())
    monkeypatch.setattr(train_module, "write_epoch", _fail)  # no epoch may be trained or written
    before = snapshot(tree)
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (f"{tree / 'run'}: already finished ({meta['epochs_done']} epochs, test accuracy "
                                     f"{meta['test_accuracy']:.4f})")
    assert snapshot(tree) == before
    assert_refused(tree, args, "holds a finished run")                       # without --resume: as before
    assert_refused(tree, [*args, "--resume", "--lr", "0.1"], "of another command (lr: 0.01 -> 0.1)")


def test_library_resume_of_a_finished_run_returns_its_metadata(tree, monkeypatch):
    config = TrainConfig(dataset="synthetic", dataset_options={"num_classes": 4, "n_train": 64, "n_test": 32},
                         model="small-cnn", model_options={"hidden": 16}, loss="ce", out=str(tree / "ck"), epochs=1,
                         batch_size=32)
    monkeypatch.setattr(train_module, "write_epoch", _fail)
    meta = train(config, device="cpu", progress=False, resume=True)
    assert meta == json.loads((tree / "ck" / "run.json").read_text())


def _fail(*args, **kwargs):
    raise AssertionError("a finished run was trained again")


def test_resume_with_another_thread_count_warns_and_continues(tmp_path, monkeypatch):
    args = [*TRAIN[:TRAIN.index("--epochs")], "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--quiet",
            "--loss", "ce", "--out", str(tmp_path / "run")]
    real_write = train_module.write_epoch

    def write_then_stop(*a, **kw):
        real_write(*a, **kw)
        raise RobenchError("stopped after one epoch")

    monkeypatch.setattr(train_module, "write_epoch", write_then_stop)
    assert "stopped after one epoch" in error_line(runner.invoke(app, args))
    monkeypatch.undo()
    meta_path = tmp_path / "run" / "run.json"
    meta = json.loads(meta_path.read_text())
    assert meta["status"] == "running" and meta["epochs_done"] == 1
    assert meta["environment"]["torch_threads"] == torch.get_num_threads() == 1   # conftest: one thread
    meta["environment"]["torch_threads"] = 2
    meta_path.write_text(json.dumps(meta))
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == ("warning: resuming with 1 torch threads; its last session ran with 2 — on CPU the weights "
                        "will not be bit-identical to an uninterrupted run")
    assert len(lines) == 2 and "2 epochs" in lines[1]
    assert json.loads(meta_path.read_text())["status"] == "finished"


@pytest.mark.parametrize("args, fragment", [
    (["train", "--epochs", "abc"], "Invalid value for '--epochs'"),
    (["train", "--seed", "1.5"], "Invalid value for '--seed'"),
    (["list", "foo"], "'foo' is not one of 'datasets'"),
    (["attack"], "Missing option '--out'"),
    (["--no-such-flag"], "No such option: --no-such-flag"),
])
def test_usage_errors_of_the_console_script_are_one_line(args, fragment, capsys):
    """What Click reports in a multi-line box, the ``robench`` script reports as one ``error:`` line, exit 2."""
    from robench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0]
    assert "Value error" not in lines[0]


def test_the_console_script_prints_help_alone_and_its_version(capsys):
    from robench.cli import main
    from robench.version import __version__

    for args, expected in (([], "Usage: robench"), (["--version"], f"robench {__version__}")):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 0 and expected in capsys.readouterr().out
