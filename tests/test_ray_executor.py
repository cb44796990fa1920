"""robench run --executor ray: the local executor's rows on a 2-CPU local Ray instance, a dead worker's job
retried, resume, and one-line errors (Ray missing, bad options)."""

import json
import os
import sys

import pytest
from typer.testing import CliRunner

import robench.pipeline.ray_executor as executors
from robench.cli import app
from robench.evaluation.store import ResultStore, slot_of
from robench.results import read_attack_rows
from tests.conftest import error_line
from tests.test_runner import AUDIT, TINY

RECIPE = TINY.replace('eps = [0, 0.1, 0.3]\nsweep = "independent"',
                      'eps = [0, 0.1, 0.3]\nsweep = "independent"\nn_samples = 32') + AUDIT
TIMING = {"seconds"}
AUDIT_TIMING = {"started_at", "finished_at", "seconds", "environment"}
CE, GCCS, FINETUNE = (f"synthetic-small-cnn-{name}-s0" for name in ("ce-regular", "gccs-regular", "gccs-finetune"))


def run(*args):
    return CliRunner().invoke(app, ["run", "tiny.toml", "--device", "cpu", "--quiet", *args])


def tidy(root):
    """The attacks CSV in file order, without timing columns."""
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_attack_rows(root / "attacks.csv")]


def audits(root):
    return {p.parent.name: {k: v for k, v in json.loads(p.read_text()).items() if k not in AUDIT_TIMING}
            for p in sorted(root.glob("runs/*/audit.json"))}


def per_image(root):
    """Every row's per-image record in the store, by slot."""
    return {slot_of(row): tuple(flags.tolist() for flags in record)
            for row, record in ResultStore(root / "attacks.csv").items() if record is not None}


def seconds(root):
    return set(json.loads((root / "manifest.json").read_text())["seconds_this_invocation"])


def undo_some_work(root):
    """Forget one latent snapshot, one audit verdict and one checkpoint's tgsm rows."""
    (root / "latent" / f"{GCCS}.safetensors").unlink()
    (root / "runs" / CE / "audit.json").unlink()
    store = ResultStore(root / "attacks.csv")
    store.put_many([], delete=[r for r in store.rows() if r["attack"] == "tgsm" and r["checkpoint"].endswith(FINETUNE)])


@pytest.fixture
def dirs(tmp_path):
    for name in ("local", "ray"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "tiny.toml").write_text(RECIPE)
    return tmp_path / "local", tmp_path / "ray"


def test_ray_writes_the_local_rows_retries_a_dead_worker_and_resumes(dirs, tmp_path, monkeypatch):
    import ray  # noqa: F401  (in the test extra: this test must run, not skip)

    local, remote = dirs
    monkeypatch.chdir(local)
    result = run()
    assert result.exit_code == 0, result.output

    died = tmp_path / "died"
    real_sweep_job = executors.sweep_job

    def dying_sweep_job(**kwargs):  # pickled by value into the worker: the first sweep job to finish dies there
        real_sweep_job(**kwargs)
        try:
            os.close(os.open(died, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return
        os._exit(1)

    monkeypatch.setattr(executors, "sweep_job", dying_sweep_job)
    monkeypatch.chdir(remote)
    result = run("--executor", "ray", "--ray-cpus", "2")
    assert result.exit_code == 0, result.output
    assert died.exists()  # a worker died after its rows, and Ray re-ran the job
    mine, theirs = remote / "results" / "tiny", local / "results" / "tiny"
    assert tidy(mine) == tidy(theirs)  # same rows, values and order; only seconds differ
    assert len(tidy(mine)) == 68 and {r["attack"] for r in tidy(mine)} >= {"pgd", "tgsm", "apgd", "fab", "square", "worst"}
    assert per_image(mine) == per_image(theirs)
    assert audits(mine) == audits(theirs) and len(audits(mine)) == 3
    assert sorted(p.name for p in (mine / "latent").iterdir()) == sorted(p.name for p in (theirs / "latent").iterdir())
    assert not (mine / ".staging").exists()
    manifest = json.loads((mine / "manifest.json").read_text())
    assert manifest["executor"]["name"] == "ray" and manifest["executor"]["cpus_per_task"] == 1
    assert manifest["environment"]["device"] == "cpu" and seconds(mine) == seconds(theirs)

    for root in (mine, theirs):
        undo_some_work(root)
    monkeypatch.chdir(local)
    assert run().exit_code == 0
    monkeypatch.chdir(remote)
    result = run("--executor", "ray", "--ray-cpus", "2")
    assert result.exit_code == 0, result.output
    assert seconds(mine) == {f"latent {GCCS}", f"audit {CE}", "tgsm native cumulative synthetic"}  # only those
    assert tidy(mine) == tidy(theirs) and audits(mine) == audits(theirs) and per_image(mine) == per_image(theirs)

    before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
    again = run("--executor", "ray")
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()} == before


def test_without_ray_one_line_says_how_to_install(dirs, monkeypatch):
    monkeypatch.chdir(dirs[1])
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    assert "pip install -e '.[ray]'" in error_line(run("--executor", "ray"))
    assert not (dirs[1] / "results").exists()


@pytest.mark.parametrize("args, message", [
    (["--executor", "slurm"], "unknown executor 'slurm'"),
    (["--address", "auto"], "apply to --executor ray only"),
    (["--executor", "ray", "--cpus-per-task", "0"], "--cpus-per-task must be at least 1"),
    (["--executor", "ray", "--address", "auto", "--ray-cpus", "2"], "--ray-cpus sizes the local Ray instance"),
])
def test_bad_executor_options_are_one_line_exit_2(dirs, monkeypatch, args, message):
    monkeypatch.chdir(dirs[1])
    assert message in error_line(run(*args))
