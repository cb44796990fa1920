"""Report: Table I and Figs. 2-6 from a synthetic results directory (no model, no data)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from robench.errors import RobenchError
from robench.report.figures import panel_rows, simplex_projection
from robench.report.loader import load_results, variant_labels
from robench.report.table1 import paper_table1
from robench.report.write import write_report
from robench.results import ATTACK_COLUMNS, write_attack_rows

SCALE = "reduced scale: small-cnn, 3 epochs, CPU"
GCCS = {"mu": 70.0, "sigma": 1.0}

# (run directory, dataset, model, loss, training, seed, loss_hyper, best_test_accuracy)
RUNS = [
    ("fm-gccs-s0", "fashion-mnist", "small-cnn", "gccs", "regular", 0, GCCS, 0.90),
    ("fm-gccs-s1", "fashion-mnist", "small-cnn", "gccs", "regular", 1, GCCS, 0.92),
    ("fm-gccs-ft", "fashion-mnist", "small-cnn", "gccs", "finetune", 0, GCCS, 0.93),
    ("fm-ce", "fashion-mnist", "small-cnn", "ce", "regular", 0, {}, 0.885),
    ("fm-jacobian", "fashion-mnist", "small-cnn", "jacobian", "regular", 0, {"reg_weight": 0.03}, 0.87),
    ("fm-jacobian-ft", "fashion-mnist", "small-cnn", "jacobian", "finetune", 0, {"reg_weight": 0.03}, 0.875),
    ("fm-input-grad-ft", "fashion-mnist", "small-cnn", "input-grad", "finetune", 0, {"reg_weight": 0.1}, 0.86),
    ("digits-ce", "digits", "small-cnn", "ce", "regular", 0, {}, 0.99),
    ("mnist-mu1", "mnist", "resnet18", "gccs", "regular", 0, {"mu": 1.0, "sigma": 1.0}, 0.95),
    ("mnist-mu10", "mnist", "resnet18", "gccs", "regular", 0, {"mu": 10.0, "sigma": 1.0}, 0.985),
    ("mnist-mu100", "mnist", "resnet18", "gccs", "regular", 0, {"mu": 100.0, "sigma": 1.0}, 0.994),
    ("mnist-ce", "mnist", "resnet18", "ce", "regular", 0, {}, 0.9935),
]


def _run_json(path, dataset, model, loss, training, seed, hyper, best, status="finished"):
    path.mkdir(parents=True)
    meta = {"format": "robench-run-1", "status": status, "dataset": dataset, "model": model, "loss": loss,
            "training": training, "seed": seed, "loss_hyper": hyper, "best_test_accuracy": best,
            "test_accuracy": best - 0.01, "epochs": 3, "class_names": [f"c{i}" for i in range(10)],
            "history": [{"epoch": 1, "test_accuracy": best}]}
    (path / "run.json").write_text(json.dumps(meta))


def _attack_row(run, attack, eps, accuracy, *, backend="native", sweep="independent", attack_loss="ce", n=100):
    name, dataset, model, loss, training, seed = run[:6]
    return {"dataset": dataset, "model": model, "loss": loss, "training": training, "seed": seed,
            "checkpoint": f"runs/fake/{name}", "attack": attack, "backend": backend, "attack_loss": attack_loss,
            "targeted": attack != "pgd", "eps": eps, "eps_mode": "relative", "steps": 5, "step_size": 0.5,
            "restarts": 1, "sweep": sweep, "n": n, "n_correct": round(accuracy * n), "accuracy": accuracy,
            "target_success": None, "seconds": 0.1, "attack_seed": 0, "robench_version": "0.1.0"}


def _attack_rows():
    rows = []
    for run in RUNS[:7]:
        for attack, attack_loss in (("pgd", "ce"), ("tgsm", "ce"), ("jsma", "saliency")):
            sweep = "cumulative" if attack == "jsma" else "independent"
            for eps in (0.0, 0.05, 0.1):
                rows.append(_attack_row(run, attack, eps, run[7] * (1 - 4 * eps), sweep=sweep,
                                        attack_loss=attack_loss))
    for eps in (0.0, 0.05, 0.1):  # a cumulative PGD sweep and an ART cross-check: not what Fig. 4 draws
        rows.append(_attack_row(RUNS[3], "pgd", eps, 0.5, sweep="cumulative"))
        rows.append(_attack_row(RUNS[3], "pgd", eps, 0.8 - eps, backend="art", sweep="cumulative"))
    return rows


def _latent(path, run):
    name, dataset, model, loss, training = run[:5]
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 1, 9] * 20)
    z = torch.randn(len(labels), 10, generator=generator) + 5.0 * torch.nn.functional.one_hot(labels, 10)
    meta = {"run": name, "dataset": dataset, "model": model, "loss": loss, "training": training, "seed": "0",
            "attack": "tgsm", "eps": "0.05", "eps_mode": "relative", "classes": "0,1,9"}
    save_file({"z_clean": z.float(), "z_attacked": (0.5 * z).float(), "labels": labels.long()}, str(path),
              metadata=meta)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report") / "fake-recipe"
    for run in RUNS:
        # one run in the flat layout (<run>/run.json), the others under runs/
        _run_json(root / (run[0] if run[0] == "digits-ce" else f"runs/{run[0]}"), *run[1:])
    _run_json(root / "runs/fm-cross-lipschitz", "fashion-mnist", "small-cnn", "cross-lipschitz", "regular", 0, {},
              0.5, status="running")
    (root / "manifest.json").write_text(json.dumps({"name": "fake-recipe", "scale": SCALE}))
    write_attack_rows(root / "attacks.csv", _attack_rows())
    (root / "latent").mkdir()
    for run in (RUNS[0], RUNS[3], RUNS[5]):
        _latent(root / "latent" / f"{run[0]}.safetensors", run)
    return root


@pytest.fixture(scope="module")
def written(results_dir):
    return write_report(results_dir)


def _table(results_dir):
    return pd.read_csv(results_dir / "table1.csv", keep_default_na=False)


def test_table1_is_best_accuracy_mean_over_seeds(results_dir, written):
    table = _table(results_dir)
    gccs = table[(table.loss == "gccs") & (table.training == "regular") & (table.dataset == "fashion-mnist")]
    assert len(gccs) == 1
    row = gccs.iloc[0]
    assert (row.n_seeds, row.seeds, row.model) == (2, "0 1", "small-cnn")
    assert (row.accuracy_mean, row.accuracy_min, row.accuracy_max) == pytest.approx((91.0, 90.0, 92.0))
    ce = table[(table.loss == "ce") & (table.dataset == "digits")].iloc[0]
    assert ce.accuracy_mean == pytest.approx(99.0) and ce.n_seeds == 1
    # the paper's row order; each mu of the sweep is its own row, labelled
    methods = list(dict.fromkeys(table.method))
    assert methods[:4] == ["GCCS - regular training", "GCCS - regular training (mu=1)",
                           "GCCS - regular training (mu=10)", "GCCS - regular training (mu=100)"]
    assert methods[4:] == ["GCCS - fine-tuning", "cross-entropy (no defense)", "Jacobian reg. - regular training",
                           "Jacobian reg. - fine-tuning", "Input gradient reg. - fine-tuning"]
    assert "cross-lipschitz" not in set(table.loss)  # unfinished: skipped


def test_table1_markdown_places_cells_and_labels_scale(results_dir, written):
    text = (results_dir / "table1.md").read_text()
    lines = text.splitlines()
    assert SCALE in lines[2]
    header = next(line for line in lines if line.startswith("| Method"))
    assert header == "| Method | mnist resnet18 | fashion-mnist small-cnn | digits small-cnn |"
    assert "| GCCS - regular training | – | 91.00 (n=2) | – |" in lines
    assert "| cross-entropy (no defense) | 99.35 | 88.50 | 99.00 |" in lines
    assert "Skipped 1 unfinished run(s): fm-cross-lipschitz (running)." in text
    tex = (results_dir / "table1.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and SCALE in tex
    assert r"GCCS - regular training & -- & 91.00 (n=2) & -- \\" in tex


def test_rerun_gives_identical_files(results_dir, written):
    before = {path: path.read_bytes() for path in written}
    again = write_report(results_dir)
    assert again == written
    for path in again:
        assert path.read_bytes() == before[path], path


def test_figures_written(results_dir, written):
    names = sorted(p.name for p in written if p.parent.name == "figures")
    assert names == sorted(f"{stem}.{ext}" for stem in ("fig2-mu", "fig3-latent", "fig4-pgd", "fig5-tgsm", "fig6-jsma")
                           for ext in ("png", "pdf"))
    for path in written:
        data = path.read_bytes()
        assert len(data) > 1000 or path.parent.name != "figures"
        if path.suffix == ".png":
            assert data.startswith(b"\x89PNG")
        elif path.suffix == ".pdf":
            assert data.startswith(b"%PDF")


def test_compare_paper(tmp_path, results_dir):
    import shutil

    root = shutil.copytree(results_dir, tmp_path / "copy")
    write_report(root, compare_paper=True)
    table = pd.read_csv(root / "table1.csv")
    row = table[(table.method == "GCCS - regular training") & (table.dataset == "fashion-mnist")].iloc[0]
    assert (row.paper_model, row.paper_accuracy) == ("resnet18", pytest.approx(92.69))
    assert table[table.dataset == "digits"].paper_accuracy.isna().all()  # no digits in the paper
    text = (root / "table1.md").read_text()
    assert "| GCCS - regular training | – | 91.00 (n=2, paper 92.69) | – |" in text
    assert "| cross-entropy (no defense) | 99.35 (paper 99.35) | 88.50 (paper 91.91) | 99.00 |" in text
    assert "fashion-mnist small-cnn (paper: resnet18)" in text
    assert "mnist resnet18 (paper" not in text  # same architecture as the paper's
    assert "91.00 (n=2, paper 92.69)" in (root / "table1.tex").read_text()


def test_paper_table1_transcription():
    paper = {(r["method_loss"], r["training"], r["dataset"], r["model"]): r["accuracy"] for r in paper_table1()}
    assert len(paper) == 46  # 9 methods x 6 columns, less 8 "-" entries
    assert paper[("ce", "regular", "mnist", "resnet18")] == 99.35
    assert paper[("input-grad", "finetune", "cifar100", "shake-shake-26-2x112d")] == 75.68
    assert paper[("gccs", "finetune", "cifar10", "shake-shake-26-2x96d")] == 97.06
    assert paper[("jacobian", "regular", "cifar10", "resnet18")] == 70.09
    assert paper[("cross-lipschitz", "regular", "mnist", "resnet18")] == 96.78
    assert ("jacobian", "regular", "cifar100", "shake-shake-26-2x112d") not in paper
    assert all("Beyond cross-entropy" in r["source"] for r in paper_table1())


def test_panel_rows_prefer_the_papers_protocol(results_dir):
    results = load_results(results_dir)
    rows = results.attacks
    native, art, omitted = panel_rows(rows, "fashion-mnist", "small-cnn", "pgd")
    assert {(r["backend"], r["sweep"], r["attack_loss"]) for r in native} == {("native", "independent", "ce")}
    assert len(native) == 7 * 3 and omitted == 0
    assert {(r["backend"], r["sweep"]) for r in art} == {("art", "cumulative")} and len(art) == 3
    native, art, _ = panel_rows(rows, "fashion-mnist", "small-cnn", "jsma")
    assert {(r["sweep"], r["attack_loss"]) for r in native} == {("cumulative", "saliency")} and not art
    # a second configuration (more steps) for one method: the most common one is drawn, the rest counted
    extra = [dict(r, steps="10") for r in rows if r["attack"] == "pgd" and r["checkpoint"].endswith("fm-ce")
             and r["backend"] == "native" and r["sweep"] == "independent"]
    native, _, omitted = panel_rows(rows + extra, "fashion-mnist", "small-cnn", "pgd")
    assert {r["steps"] for r in native} == {"5"} and omitted == len(extra) == 3


def test_no_manifest_no_attacks_tables_only(tmp_path):
    root = tmp_path / "plain"
    _run_json(root / "only-ce", "mnist", "small-cnn", "ce", "regular", 0, {}, 0.98)
    written = write_report(root)
    assert [p.name for p in written] == ["table1.csv", "table1.md", "table1.tex"]
    assert (root / "table1.md").read_text().startswith("# Table I: maximum test accuracy (%) — plain\n\n| Method")


def test_variant_labels_and_simplex_projection():
    hypers = [{"mu": 1.0, "sigma": 1.0}, {"mu": 10.0, "sigma": 1.0}, {"mu": 10.0, "sigma": 2.0}]
    assert variant_labels(hypers) == ["mu=1, sigma=1", "mu=10, sigma=1", "mu=10, sigma=2"]
    assert variant_labels(hypers, ignore=("mu",)) == ["sigma=1", "sigma=1", "sigma=2"]
    assert variant_labels([{"a": 1}, {"a": 1}]) == ["", ""]
    z = np.zeros((3, 10))
    z[0, 0], z[1, 1], z[2, 9] = 70.0, 70.0, 70.0
    points = simplex_projection(z, [0, 1, 9])
    assert np.linalg.norm(points, axis=1) == pytest.approx([70.0] * 3)
    angles = sorted(math.degrees(math.atan2(y, x)) % 360 for x, y in points)
    assert angles == pytest.approx([90.0, 210.0, 330.0])


def _one_line(exc_info):
    message = str(exc_info.value)
    assert message and "\n" not in message
    return message


def test_errors_are_one_line(tmp_path, results_dir):
    with pytest.raises(RobenchError) as exc:
        write_report(tmp_path / "missing")
    assert "does not exist" in _one_line(exc)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RobenchError) as exc:
        write_report(tmp_path / "empty")
    assert "no run.json" in _one_line(exc)

    root = tmp_path / "foreign"
    _run_json(root / "runs/ce", "mnist", "small-cnn", "ce", "regular", 0, {}, 0.98)
    (root / "attacks.csv").write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(RobenchError) as exc:
        write_report(root)
    assert "not a robench attacks CSV" in _one_line(exc)
    assert not (root / "table1.csv").exists()

    (root / "attacks.csv").write_text(",".join(ATTACK_COLUMNS) + "\n" + ",".join(["x"] * len(ATTACK_COLUMNS)) + "\n")
    with pytest.raises(RobenchError) as exc:
        write_report(root)
    assert "line 2" in _one_line(exc)

    (root / "attacks.csv").unlink()
    (root / "runs/ce/run.json").write_text("{not json")
    with pytest.raises(RobenchError) as exc:
        write_report(root)
    assert "cannot read" in _one_line(exc)
