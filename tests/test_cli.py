"""The robench command line: help, list, train, inspect, quickstart and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest
from conftest import error_line
from typer.testing import CliRunner

import robench.data.sources as data_module
from robench.cli import app
from robench.data import DATASETS
from robench.losses import LOSSES
from robench.models import MODELS

runner = CliRunner(env={"COLUMNS": "200"})
SYNTH_ARGS = ["--dataset", "synthetic", "--dataset-option", "num_classes=4", "--dataset-option", "n_train=64",
              "--dataset-option", "n_test=32", "--model", "small-cnn", "--model-option", "hidden=16",
              "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--quiet"]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", [[], ["train"], ["list"], ["inspect"], ["quickstart"]])
def test_every_command_explains_itself(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output) > 200


def test_train_help_mentions_every_option_group():
    out = invoke("train", "--help").output
    for option in ("--dataset", "--loss", "--epochs", "--lr", "--init", "--resume", "--force", "--device", "--mu",
                   "--samples-per-class", "--grad-clip"):
        assert option in out


@pytest.mark.parametrize("kind,registry", [("datasets", DATASETS), ("models", MODELS), ("losses", LOSSES)])
def test_list_prints_every_name_with_a_description(kind, registry):
    result = invoke("list", kind)
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == registry.names()
    assert all(len(line.split()) > 2 for line in lines)


def test_train_then_inspect(tmp_path):
    out = tmp_path / "run"
    result = invoke("train", *SYNTH_ARGS, "--loss", "gccs", "--mu", "10", "--out", out)
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    meta = json.loads((out / "run.json").read_text())
    assert meta["loss_hyper"]["mu"] == 10.0 and meta["model_options"] == {"hidden": 16}
    shown = invoke("inspect", out)
    assert shown.exit_code == 0
    for fact in ("gccs", "mu=10", "synthetic", "small-cnn", "regular", "git commit", "epoch"):
        assert fact in shown.output




@pytest.mark.parametrize("override,match", [
    (["--dataset", "cifar"], "unknown dataset 'cifar'"),
    (["--model", "resnet"], "unknown model 'resnet'"),
    (["--loss", "xent"], "unknown loss 'xent'"),
    (["--epochs", "-1"], "--epochs must be at least 1"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--model-option", "depth=3"], "unknown option 'depth'"),
    (["--model-option", "depth"], "expects key=value"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, override, match):
    result = invoke("train", *SYNTH_ARGS, "--loss", "ce", "--out", tmp_path / "run", *override)
    assert match in error_line(result)
    assert not (tmp_path / "run").exists()


def test_cuda_without_gpu_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = invoke("train", *SYNTH_ARGS, "--loss", "ce", "--out", tmp_path / "run", "--device", "cuda")
    assert "no CUDA GPU" in error_line(result)


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")
    result = invoke("train", "--dataset", "fashion-mnist", "--model", "small-cnn", "--loss", "ce",
                    "--out", tmp_path / "run", "--data-dir", tmp_path / "data", "--device", "cpu")
    line = error_line(result)
    for hint in ("--download", "--data-dir", "apt-get install dataset-fashion-mnist", "train-images-idx3-ubyte"):
        assert hint in line


def test_existing_run_is_refused_and_kept(tmp_path):
    out = tmp_path / "run"
    assert invoke("train", *SYNTH_ARGS, "--loss", "ce", "--out", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "--force" in error_line(invoke("train", *SYNTH_ARGS, "--loss", "ce", "--out", out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_mismatched_init_is_refused(tmp_path):
    parent = tmp_path / "parent"
    assert invoke("train", *SYNTH_ARGS, "--loss", "ce", "--out", parent).exit_code == 0
    args = [a if a != "num_classes=4" else "num_classes=3" for a in SYNTH_ARGS]
    line = error_line(invoke("train", *args, "--loss", "gccs", "--init", parent, "--out", tmp_path / "child"))
    assert "does not match this run" in line and "num_classes" in line
    line = error_line(invoke("train", *SYNTH_ARGS, "--loss", "gccs", "--init", tmp_path / "nope",
                             "--out", tmp_path / "child"))
    assert "not found" in line


def test_inspect_of_a_non_run_is_an_error(tmp_path):
    assert "run.json is missing" in error_line(invoke("inspect", tmp_path))


def test_quickstart_trains_both_losses_and_reuses_them(tmp_path):
    result = invoke("quickstart", "--out", tmp_path / "qs", "--epochs", "2", "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith(("ce ", "gccs "))]
    assert [r[0] for r in rows] == ["ce", "gccs"]
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows)
    again = invoke("quickstart", "--out", tmp_path / "qs", "--epochs", "2", "--device", "cpu", "--quiet")
    assert again.output.count("(reused)") == 2


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "robench", "list", "losses"], capture_output=True, text=True)
    assert result.returncode == 0 and "gccs" in result.stdout


def test_train_with_a_penalised_loss_and_inspect_its_gradient_statistics(tmp_path):
    out = tmp_path / "jac"
    result = invoke("train", *SYNTH_ARGS, "--loss", "jacobian", "--reg-weight", "0.05", "--jacobian-projections", "1",
                    "--out", out)
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "run.json").read_text())
    assert meta["loss_hyper"] == {"reg_weight": 0.05, "projections": 1}
    stats = meta["gradient_statistics"]
    assert set(stats) == {"jacobian_frobenius", "ce_input_gradient", "cross_lipschitz", "n_images"}
    assert stats["n_images"] == 32 and all(v > 0 for v in stats.values())
    shown = invoke("inspect", out).output
    assert "jacobian_frobenius" in shown and "reg_weight=0.05" in shown


def test_reg_weight_on_a_loss_without_it_is_an_error(tmp_path):
    line = error_line(invoke("train", *SYNTH_ARGS, "--loss", "gccs", "--reg-weight", "1", "--out", tmp_path / "r"))
    assert "no hyper-parameter 'reg_weight'" in line


def test_version_prints_the_package_version():
    from robench.version import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"robench {__version__}"
    assert __version__.count(".") >= 1 and __version__[0].isdigit()
