"""The examples run as a user would run them: evaluate one's own model with the CLI and with the Python API."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_cli_example_evaluates_a_user_model_under_linf_and_l2_and_audits_it(tmp_path):
    done = subprocess.run(["bash", str(EXAMPLES / "evaluate_with_cli.sh"), str(tmp_path)], env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, norm in (("linf.csv", "Linf"), ("l2.csv", "L2")):
        rows = list(csv.DictReader(open(tmp_path / "results" / name)))
        assert rows and {r["norm"] for r in rows} == {norm}
    assert json.loads((tmp_path / "results" / "audit" / "audit.json").read_text())["verdict"] in ("pass", "warn",
                                                                                                   "fail")


def test_python_example_does_the_same_through_the_api(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "evaluate_with_python.py"), str(tmp_path)], env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "L-inf" in done.stdout and "L2" in done.stdout and "audit:" in done.stdout
