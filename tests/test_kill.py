"""kill -9 at a random moment of ``robench train``, ``robench attack`` and ``robench run``: the same command
run again ends with exactly the rows and weights of an uninterrupted run (same torch thread count)."""

import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from robench.files import file_sha256
from tests.test_runner import TINY

SYNTH = ["--dataset-option", "num_classes=4", "--dataset-option", "n_train=256", "--dataset-option", "n_test=64"]
TRAIN = ["train", "--dataset", "synthetic", "--model", "small-cnn", "--loss", "ce", "--epochs", "8", "--batch-size",
         "32", "--model-option", "hidden=16", *SYNTH]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one torch thread in every process: weights comparable bit for bit


def robench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "robench", *map(str, args), "--device", "cpu", "--quiet"], cwd=cwd,
                          env=ENV, capture_output=True, text=True, timeout=600)


def killed(*args, cwd=None, after: float) -> None:
    """Start the command and SIGKILL it ``after`` seconds later (or let it finish first)."""
    proc = subprocess.Popen([sys.executable, "-m", "robench", *map(str, args), "--device", "cpu", "--quiet"],
                            cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def rows(csv):
    return pd.read_csv(csv).drop(columns=["seconds"])


def timed(*args, cwd=None) -> float:
    """Run the command to completion; its wall time (to draw kill moments within it)."""
    t0 = time.perf_counter()
    done = robench(*args, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return time.perf_counter() - t0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    seconds = {"train": timed(*TRAIN, "--out", root / "ck")}
    seconds["attack"] = timed("attack", "--checkpoint", root / "ck", "--out", root / "a.csv", "--attack", "pgd,tgsm",
                              "--eps-grid", "0,0.05,0.1,0.2,0.3", "--n-samples", "48")
    return root, seconds


def moment(seconds: float, seed: int) -> float:
    """A random moment in the second half of a run that took ``seconds`` (the first ~2 s import torch)."""
    return random.Random(seed).uniform(0.4, 0.85) * seconds


@pytest.mark.parametrize("trial", range(2))
def test_killed_train_resumes_to_the_same_weights(reference, tmp_path, trial):
    reference, seconds = reference
    killed(*TRAIN, "--out", tmp_path / "ck", after=moment(seconds["train"], trial))
    resumed = robench(*TRAIN, "--out", tmp_path / "ck", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert file_sha256(tmp_path / "ck" / "model.safetensors") == file_sha256(reference / "ck" / "model.safetensors")


@pytest.mark.parametrize("trial", range(2))
def test_killed_attack_resumes_to_the_same_rows(reference, tmp_path, trial):
    reference, seconds = reference
    args = ["attack", "--checkpoint", reference / "ck", "--out", tmp_path / "a.csv", "--attack", "pgd,tgsm",
            "--eps-grid", "0,0.05,0.1,0.2,0.3", "--n-samples", "48"]
    killed(*args, after=moment(seconds["attack"], 10 + trial))
    resumed = robench(*args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    pd.testing.assert_frame_equal(rows(tmp_path / "a.csv"), rows(reference / "a.csv"))


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_killed_run_resumes_to_the_same_rows_and_weights(tmp_path, trial):
    for name in ("reference", "killed"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tiny.toml").write_text(TINY)
    seconds = timed("run", "tiny.toml", cwd=tmp_path / "reference")
    killed("run", "tiny.toml", cwd=tmp_path / "killed", after=moment(seconds, 20 + trial))
    resumed = robench("run", "tiny.toml", cwd=tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    got, want = (tmp_path / name / "results" / "tiny" for name in ("killed", "reference"))
    pd.testing.assert_frame_equal(rows(got / "attacks.csv").drop(columns=["checkpoint"]),
                                  rows(want / "attacks.csv").drop(columns=["checkpoint"]))
    for weights in (tmp_path / "reference" / "runs" / "tiny").glob("*/model.safetensors"):
        assert file_sha256(weights) == file_sha256(tmp_path / "killed" / weights.relative_to(tmp_path / "reference"))
