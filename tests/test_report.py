"""Report: Table I and Figs. 2-6 from a synthetic results directory (no model, no data)."""

import dataclasses
import json
import math
import shutil
from pathlib import Path

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


# --- issue 18: intervals, reports from a bare attacks CSV, norms kept apart --------------------------------


def _wilson(k, n, z=1.959963984540054):
    """The Wilson score interval written out by hand (Wilson 1927), as fractions."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_wilson_interval_against_hand_computed_values():
    from robench.proportions import noise_points, wilson
    from robench.report.intervals import interval_text, small_sample_warning

    # 87 of 100, z = 1.96: p = 0.87, z²/n = 0.038416, centre = (0.87 + 0.019208) / 1.038416 = 0.856313,
    # half = 1.96 · √(0.87 · 0.13 / 100 + 3.8416 / 40000) / 1.038416 = 1.96 · 0.0350291 / 1.038416 = 0.066117
    # so [0.856313 − 0.066117, 0.856313 + 0.066117] = [0.790196, 0.922430], to the 6th digit of the steps
    assert wilson(87, 100, z=1.96) == pytest.approx((0.790196, 0.922430), abs=3e-6)
    assert wilson(87, 100, z=1.96) == pytest.approx(_wilson(87, 100, z=1.96), abs=1e-12)
    # k = 0 and k = n: the interval stays in [0, 1] and has the closed forms [0, z²/(n + z²)] and [n/(n + z²), 1]
    assert wilson(0, 10, z=1.96) == pytest.approx((0.0, 3.8416 / 13.8416))
    assert wilson(10, 10, z=1.96) == pytest.approx((10 / 13.8416, 1.0))
    low, high = wilson(np.array([87, 910]), np.array([100, 1000]))  # vectorised, default z = 1.959964
    assert low == pytest.approx([0.790196, 0.890658], abs=1e-6) and high == pytest.approx([0.922428, 0.926204], abs=1e-6)
    assert np.isnan(wilson(np.array([0]), np.array([0]))[0][0])
    assert noise_points(1000) == pytest.approx(100 * 1.96 * math.sqrt(250 + 0.9604) / 1003.8416, abs=1e-3)
    assert interval_text(87.0, 79.02, 92.24) == "87.00 [79.0, 92.2]" and interval_text(None, 1, 2) == "–"
    assert small_sample_warning(101) is None and "one image is 2.0 points" in small_sample_warning(50)


def test_table1_interval_pools_the_seeds_test_images(tmp_path):
    root = tmp_path / "pooled"
    for name, seed, best in (("ce-s0", 0, 0.90), ("ce-s1", 1, 0.92), ("gccs", 0, 0.87)):
        loss = "gccs" if name == "gccs" else "ce"
        _run_json(root / "runs" / name, "mnist", "small-cnn", loss, "regular", seed, {}, best)
        meta = json.loads((root / "runs" / name / "run.json").read_text())
        (root / "runs" / name / "run.json").write_text(json.dumps(dict(meta, n_test=500 if loss == "ce" else 100)))
    write_report(root)
    table = _table(root).set_index("loss")
    # ce: 450 + 460 correct of 500 + 500 test images, pooled; gccs: 87 of 100
    assert (table.loc["ce", "n_test"], table.loc["ce", "n_correct"]) == (1000, 910)
    assert (table.loc["ce", "accuracy_low"], table.loc["ce", "accuracy_high"]) == pytest.approx((89.0658, 92.6204),
                                                                                                abs=1e-4)
    assert (table.loc["gccs", "accuracy_low"], table.loc["gccs", "accuracy_high"]) == pytest.approx((79.0196, 92.2428),
                                                                                                    abs=1e-4)
    text = (root / "table1.md").read_text()
    assert "| GCCS - regular training | 87.00 [79.0, 92.2] |" in text
    assert "| cross-entropy (no defense) | 91.00 [89.1, 92.6] (n=2) |" in text
    assert "The 95 % intervals here are up to ±6.6 pts (n = 100, 1000 test images)" in text
    assert "87.00 [79.0, 92.2]" in (root / "table1.tex").read_text()


SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64


def _bare_rows():
    """A `robench attack` CSV: fm-ce retrained at one path (two models), fm-gccs elsewhere, PGD in L∞ and L2."""
    rows = []
    for run, sha, base in ((RUNS[3], SHA_A, 0.88), (RUNS[3], SHA_B, 0.70), (RUNS[0], SHA_C, 0.90)):
        for norm, drop in (("Linf", 4.0), ("L2", 1.0)):
            for eps in (0.0, 0.05, 0.1):
                row = _attack_row(run, "pgd", eps, round(base * (1 - drop * eps), 2), n=200)
                rows.append(dict(row, norm=norm, model_sha256=sha, checkpoint=f"runs/x/{run[0]}"))
    return rows


def test_report_from_a_bare_attacks_csv(tmp_path):
    from robench.report.write import skipped_note

    root = tmp_path / "bare"
    root.mkdir()
    write_attack_rows(root / "sweep.csv", _bare_rows())
    written = write_report(root)
    assert sorted(p.name for p in written) == ["fig4-pgd.pdf", "fig4-pgd.png", "robustness.csv", "robustness.md"]
    assert not (root / "table1.csv").exists()
    table = pd.read_csv(root / "robustness.csv", keep_default_na=False)
    assert sorted(set(table.label)) == ["fm-ce (aaaaaaaa)", "fm-ce (bbbbbbbb)", "fm-gccs-s0"]  # bound to identities
    row = table[(table.label == "fm-ce (aaaaaaaa)") & (table.norm == "Linf") & (table.eps == 0.1)].iloc[0]
    assert (row.n, row.n_correct, row.accuracy) == (200, round(0.53 * 200), pytest.approx(53.0))
    assert (row.accuracy_low, row.accuracy_high) == pytest.approx(tuple(100 * v for v in _wilson(106, 200)),
                                                                  abs=1e-4)
    text = (root / "robustness.md").read_text()
    assert "From sweep.csv alone: there is no run metadata here" in text and "leaves out Table I" in text
    assert "| fm-ce (aaaaaaaa) | pgd/native/ce/5x1/independent | 200 | 0 | 88.00 [82.8, 91.8] |" in text
    assert "| fm-ce (aaaaaaaa) | pgd/native/ce/5x1/independent/L2 | 200 | 0 |" in text
    # one table per norm, never mixed, each labelled with its norm and ε mode
    assert text.index("## fashion-mnist small-cnn — ε (L∞, relative: ‖n‖∞ ≤ ε‖x‖∞)") < text.index(
        "## fashion-mnist small-cnn — ε (L2, relative: ‖n‖₂ ≤ ε‖x‖₂)")
    assert "skipped Table I" in skipped_note(load_results(root))
    assert skipped_note(load_results(results_dir_for_note(tmp_path))) is None
    assert write_report(root / "sweep.csv") == written  # the CSV's path works too, and gives the same files
    before = {p: p.read_bytes() for p in written}
    write_report(root)
    assert all(p.read_bytes() == before[p] for p in written)


def results_dir_for_note(tmp_path):
    root = tmp_path / "with-run"
    _run_json(root / "only-ce", "mnist", "small-cnn", "ce", "regular", 0, {}, 0.98)
    return root


def test_bare_csv_errors(tmp_path):
    root = tmp_path / "two"
    root.mkdir()
    write_attack_rows(root / "a.csv", _bare_rows())
    write_attack_rows(root / "b.csv", _bare_rows())
    with pytest.raises(RobenchError) as exc:
        write_report(root)
    assert "several attacks CSVs (a.csv, b.csv)" in _one_line(exc)
    (tmp_path / "empty-csv").mkdir()
    write_attack_rows(tmp_path / "empty-csv" / "attacks.csv", [])
    with pytest.raises(RobenchError) as exc:
        write_report(tmp_path / "empty-csv")
    assert "no run.json" in _one_line(exc)


def _captured(monkeypatch, module):
    figures = []
    monkeypatch.setattr(module, "figure_files", lambda fig, root, stem: figures.append(fig) or {})
    return figures


def test_figures_never_mix_norms(tmp_path, monkeypatch):
    from robench.report import attack_figures, bare_csv

    root = tmp_path / "norms"
    for run in (RUNS[0], RUNS[3]):
        _run_json(root / "runs" / run[0], *run[1:])
    rows = [dict(r, model_sha256="", checkpoint=r["checkpoint"].replace("runs/x", "runs/fake")) for r in _bare_rows()
            if r["model_sha256"] != SHA_B]
    write_attack_rows(root / "attacks.csv", rows)
    results = load_results(root)
    linf, _, _ = panel_rows(results.attacks, "fashion-mnist", "small-cnn", "pgd")
    l2, _, _ = panel_rows(results.attacks, "fashion-mnist", "small-cnn", "pgd", norm="L2")
    assert {r["norm"] for r in linf} == {"Linf"} and {r["norm"] for r in l2} == {"L2"} and len(linf) == len(l2) == 6
    figures = _captured(monkeypatch, attack_figures)
    attack_figures.attack_figure(results, "pgd", "fig4-pgd", "Fig. 4")
    (fig,) = figures
    labels = [ax.get_xlabel() for ax in fig.axes if ax.get_visible()]
    assert labels == ["ε (L∞, relative: ‖n‖∞ ≤ ε‖x‖∞)", "ε (L2, relative: ‖n‖₂ ≤ ε‖x‖₂)"]
    l2_panel = [ax for ax in fig.axes if ax.get_visible()][1]
    assert sorted(round(y, 2) for line in l2_panel.get_lines() for y in line.get_ydata()) == sorted(
        round(100 * r["accuracy"], 2) for r in l2)
    for ax in fig.axes:
        assert "attack loss ce" in ax.get_title() and "ce loss" not in ax.get_title()

    bare = tmp_path / "bare-norms"
    bare.mkdir()
    write_attack_rows(bare / "attacks.csv", _bare_rows())
    figures = _captured(monkeypatch, bare_csv)
    bare_csv.bare_csv_figures(load_results(bare))
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in axes] == ["ε (L∞, relative: ‖n‖∞ ≤ ε‖x‖∞)", "ε (L2, relative: ‖n‖₂ ≤ ε‖x‖₂)"]
    assert [len(ax.get_lines()) for ax in axes] == [3, 3]  # one line per (checkpoint, model_sha256)
    assert {ln.get_label() for ln in axes[0].get_lines()} == {"fm-ce (aaaaaaaa)", "fm-ce (bbbbbbbb)", "fm-gccs-s0"}


def test_figure_layout_shared_latent_scale_and_fitted_jsma_axis(results_dir, monkeypatch):
    import robench.report.figures as figures_module
    from robench.report import attack_figures
    from robench.report.plotting import fitted_ylim

    results = load_results(results_dir)
    figures = _captured(monkeypatch, figures_module)
    figures_module.latent_figure(results)
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6 and len({ax.get_xlim() for ax in axes}) == 1 and len({ax.get_ylim() for ax in axes}) == 1
    assert any(ax.get_xlabel() for ax in axes) and any(ax.get_ylabel() for ax in axes)
    assert fitted_ylim([87.0, 95.0, 91.2]) == ((85, 97), True)  # at least 10 points, padded
    assert fitted_ylim([17.0, 88.0]) == ((-2.0, 102.0), False)
    jsma = [dict(r, accuracy=0.9 - 0.01 * r["eps"], n_correct=str(round((0.9 - 0.01 * r["eps"]) * 1000)), n="1000")
            for r in results.attacks if r["attack"] == "jsma"]
    figures = _captured(monkeypatch, attack_figures)
    tiny = [dataclasses.replace(r, input_shape=(1, 2, 2)) for r in results.runs]  # 4-pixel images, 5 JSMA steps
    attack_figures.attack_figure(dataclasses.replace(results, attacks=jsma, runs=tiny), "jsma", "fig6-jsma", "Fig. 6")
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes[0].get_ylim()[0] > 50 and "zoomed" in axes[0].get_ylabel()
    assert "≤ 4 pixels changed (min of 5 steps, 4 pixels)" in axes[0].get_title().replace("\n", " ")
    styles = {(ln.get_label(), ln.get_linestyle(), ln.get_marker(), ln.get_markerfacecolor()) for ax in axes
              for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    regular = [s for s in styles if "regular" in s[0] or "no defense" in s[0]]
    finetune = [s for s in styles if "fine-tuning" in s[0]]
    assert {s[1] for s in regular} == {"-"} and {s[1] for s in finetune} == {"--"}
    assert {s[3] for s in finetune} == {"white"}  # hollow markers: fine-tuning apart from regular in greyscale


def test_bare_csv_small_sample_warning_and_identity_labels(tmp_path):
    from robench.report.bare_csv import identity_labels

    root = tmp_path / "small"
    root.mkdir()
    write_attack_rows(root / "attacks.csv", [dict(r, n=50, n_correct=round(r["accuracy"] * 50)) for r in _bare_rows()])
    write_report(root)
    text = (root / "robustness.md").read_text()
    assert "**⚠ n = 50: one image is 2.0 points of accuracy" in text
    rows = [{"checkpoint": "runs/a/ce", "model_sha256": ""}, {"checkpoint": "runs/b/ce", "model_sha256": SHA_A},
            {"checkpoint": "runs/b/ce", "model_sha256": SHA_B}, {"checkpoint": "gccs", "model_sha256": SHA_C}]
    assert identity_labels(rows) == {("gccs", SHA_C): "gccs", ("runs/a/ce", ""): "a/ce",
                                     ("runs/b/ce", SHA_A): "b/ce (aaaaaaaa)", ("runs/b/ce", SHA_B): "b/ce (bbbbbbbb)"}


MAX_ANTIALIASED_PIXELS = 20
"""fig3-latent.png re-renders with up to 8 pixels of its rotated y-axis label antialiased differently in some
processes (matplotlib/FreeType state, not robench's data or RNG; 2026-12-02): a PNG may differ in at most this
many pixels, of the same size; every other file must be equal byte for byte."""


def _antialiasing_only(new: Path, old: Path) -> bool:
    if new.suffix != ".png":
        return False
    from PIL import Image

    a, b = (np.asarray(Image.open(f).convert("RGBA")).astype(int) for f in (new, old))
    return a.shape == b.shape and int((a != b).any(-1).sum()) <= MAX_ANTIALIASED_PIXELS


def test_report_reproduces_the_committed_results_byte_for_byte(tmp_path):
    """``robench report`` on a committed results directory rewrites every file it wrote, unchanged (the
    recipe's [report] compare_paper is read back from manifest.json; PNGs: see :data:`MAX_ANTIALIASED_PIXELS`)."""
    committed = Path(__file__).resolve().parents[1] / "results" / "fashion-mnist-cpu"
    copy = tmp_path / "fashion-mnist-cpu"
    shutil.copytree(committed, copy)
    written = write_report(copy)
    assert len(written) >= 15 and any(p.name == "table1.md" for p in written)
    differ = [p.name for p in written if p.read_bytes() != (committed / p.relative_to(copy)).read_bytes()
              and not _antialiasing_only(p, committed / p.relative_to(copy))]
    assert differ == []
    assert "(paper 92.69)" in (copy / "table1.md").read_text()
