"""Audit report: robustness.csv/md, audit.md, Fig. 7 and table1.md's audit section from a synthetic results
directory (protocol rows, audit rows, worst rows, audit.json); Figs. 4-6 keep to the paper's protocol."""

import json
import shutil

import pandas as pd
import pytest

from robench.errors import RobenchError
from robench.report.figures import is_protocol_row, panel_rows
from robench.report.loader import load_results
from robench.report.write import write_report
from robench.results import write_attack_rows

SCALE = "reduced scale: small-cnn, 3 epochs, CPU"
EPS, EPS_CHECK, N = (0.0, 0.05, 0.1), 0.1, 200
CONFIG = {"steps": 5, "strong_steps": 100, "strong_restarts": 5, "large_eps": 0.5, "apgd_steps": 100,
          "square_queries": 1000, "transfer_steps": 20}

# (run, loss, training, seed, best accuracy, protocol PGD at ε_c, audit attacks at ε_c, worst at ε_c, verdict)
RUNS = [
    ("fm-gccs-s0", "gccs", "regular", 0, 0.90, 0.60, {"pgd-dlr": 0.20, "apgd-ce": 0.25, "square": 0.30}, 0.15, "fail"),
    ("fm-gccs-s1", "gccs", "regular", 1, 0.92, 0.64, {"pgd-dlr": 0.24, "apgd-ce": 0.22, "square": 0.34}, 0.19, "warn"),
    ("fm-ce", "ce", "regular", 0, 0.88, 0.10, {"pgd-dlr": 0.09, "apgd-ce": 0.08, "square": 0.12}, 0.07, "pass"),
    ("fm-jacobian-ft", "jacobian", "finetune", 0, 0.87, 0.30, {"pgd-dlr": 0.26, "apgd-ce": 0.27, "square": 0.28},
     0.25, "pass"),
    ("fm-input-grad", "input-grad", "regular", 0, 0.86, 0.35, {}, None, None),  # not audited
]
STATUSES = {"fail": {2: "fail", 4: "fail", 3: "warn"}, "warn": {3: "warn"}, "pass": {5: "skipped"}}
CHECKS = ["monotone", "large-eps", "convergence", "attack-loss", "black-box", "zero-gradient", "deterministic"]


def _checkpoint(name):
    return f"runs/fake-recipe/{name}"


def _run_json(path, name, loss, training, seed, best):
    path.mkdir(parents=True)
    meta = {"format": "robench-run-1", "status": "finished", "dataset": "fashion-mnist", "num_classes": 10,
            "model": "small-cnn", "loss": loss, "loss_hyper": {"mu": 70.0} if loss == "gccs" else {},
            "training": training, "seed": seed, "epochs": 3, "test_accuracy": best, "best_test_accuracy": best,
            "class_names": [f"c{i}" for i in range(10)], "config": {"out": _checkpoint(name)}}
    (path / "run.json").write_text(json.dumps(meta))


def _row(run, attack, eps, accuracy, *, backend="native", attack_loss="ce", steps=5, restarts=1, eps_mode="relative",
         sweep="independent", source="", n=N):
    name, loss, training, seed = run[:4]
    worst = attack == "worst"
    return {"dataset": "fashion-mnist", "model": "small-cnn", "loss": loss, "training": training, "seed": seed,
            "checkpoint": _checkpoint(name), "attack": attack, "backend": backend, "attack_loss": attack_loss,
            "targeted": attack in ("tgsm", "jsma"), "eps": eps, "eps_mode": eps_mode, "steps": None if worst else steps,
            "step_size": None if worst or attack == "jsma" else 0.5, "restarts": None if worst else restarts,
            "sweep": sweep, "n": n, "n_correct": round(accuracy * n), "accuracy": accuracy, "target_success": None,
            "seconds": 0.1, "attack_seed": 0, "robench_version": "0.1.0", "source": source}


def _protocol_rows():
    rows = []
    for run in RUNS:
        best, pgd = run[4], run[5]
        for eps in EPS:
            share = eps / EPS_CHECK
            rows.append(_row(run, "pgd", eps, round(best + share * (pgd - best), 4)))
            rows.append(_row(run, "tgsm", eps, round(best + share * (pgd + 0.05 - best), 4)))
        for eps in (0.0, 0.05, 0.1):
            rows.append(_row(run, "jsma", eps, best * (1 - 3 * eps), attack_loss="saliency", steps=200,
                             sweep="cumulative", n=50))
    return rows


def _audit_rows():
    """What robench audit adds to the CSV: the battery at ε_c, PGD at absolute ε = 0.5, and worst rows."""
    rows = []
    for run in RUNS:
        attacks, worst = run[6], run[7]
        if worst is None:
            continue
        rows += [_row(run, "pgd", EPS_CHECK, attacks["pgd-dlr"], attack_loss="dlr"),
                 _row(run, "pgd", EPS_CHECK, run[5] - 0.01, steps=100, restarts=5),
                 _row(run, "pgd", EPS_CHECK, run[5] + 0.01, attack_loss="margin"),
                 _row(run, "tgsm", EPS_CHECK, run[5] + 0.02, attack_loss="margin"),
                 _row(run, "apgd", EPS_CHECK, attacks["apgd-ce"], backend="art", steps=100),
                 _row(run, "square", EPS_CHECK, attacks["square"], backend="art", steps=1000),
                 _row(run, "transfer", EPS_CHECK, 0.5, steps=20, source=_checkpoint("fm-ce")),
                 _row(run, "pgd", 0.5, 0.3, eps_mode="absolute")]
        for eps in EPS:  # worst rows at every ε, lowest at ε_c where the battery ran
            rows.append(_row(run, "worst", eps, worst if eps == EPS_CHECK else 0.5 - eps, backend="all",
                             attack_loss="all", sweep="worst", source="pgd/native/ce/5x1/independent + ..."))
    rows.append(_row(RUNS[0], "pgd", 0.5, 0.2, eps_mode="absolute", backend="art"))
    return rows


def _audit_json(run):
    name, loss, training, seed, best, pgd, attacks, worst, verdict = run
    checks = [{"id": i, "name": check, "question": f"question {i} ({check})",
               "measured": None if STATUSES[verdict].get(i) == "skipped" else 0.1 * i,
               "measured_text": f"{0.1 * i:.1f} pts", "threshold": f"threshold-{i} <= {i}",
               "status": STATUSES[verdict].get(i, "pass"), "detail": f"detail {i}"}
              for i, check in enumerate(CHECKS, start=1)]
    return {"checkpoint": _checkpoint(name), "dataset": "fashion-mnist", "model": "small-cnn", "loss": loss,
            "training": training, "seed": seed, "csv": "results/fake-recipe/attacks.csv", "n": N, "attack_seed": 0,
            "eps_mode": "relative", "eps_grid": list(EPS), "eps_check": EPS_CHECK, "clean_accuracy": best,
            "protocol": {"pgd": pgd, "tgsm": pgd + 0.05},
            "attacks_at_eps_check": {"pgd": pgd, "tgsm": pgd + 0.05, **attacks},
            "worst": worst + 0.5,  # stale on purpose: the report takes the worst row of attacks.csv
            "worst_source": "...", "transfer_source": None, "transfer_note": "", "checks": checks, "verdict": verdict,
            "config": {"eps_grid": list(EPS), "eps_mode": "relative", "seed": 0, **CONFIG}}


def _results_dir(root, audited: bool):
    for run in RUNS:
        _run_json(root / "runs" / run[0], *run[:5])
        if audited and run[7] is not None:
            (root / "runs" / run[0] / "audit.json").write_text(json.dumps(_audit_json(run), indent=2))
    (root / "manifest.json").write_text(json.dumps({"name": "fake-recipe", "scale": SCALE}))
    write_attack_rows(root / "attacks.csv", _protocol_rows() + (_audit_rows() if audited else []))
    return root


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("audit-report")
    plain = _results_dir(base / "plain" / "fake-recipe", audited=False)
    audited = _results_dir(base / "audited" / "fake-recipe", audited=True)
    return {"plain": (plain, write_report(plain)), "audited": (audited, write_report(audited))}


def _robustness(root):
    table = pd.read_csv(root / "robustness.csv", keep_default_na=False)
    return {(r.loss, r.training): r for r in table.itertuples()}


def test_robustness_table_takes_the_worst_rows_and_the_json(dirs):
    root, _ = dirs["audited"]
    rows = _robustness(root)
    assert list(rows) == [("gccs", "regular"), ("ce", "regular"), ("jacobian", "finetune")]  # Table I order
    gccs, ce = rows[("gccs", "regular")], rows[("ce", "regular")]
    assert (gccs.method, gccs.n_seeds, gccs.seeds, gccs.n, gccs.eps_check) == ("GCCS - regular training", 2, "0 1",
                                                                               N, 0.1)
    assert gccs.worst_accuracy == pytest.approx(17.0)       # mean of the worst rows 0.15 and 0.19, not the json
    assert gccs.protocol_pgd == pytest.approx(62.0) and gccs.protocol_tgsm == pytest.approx(67.0)
    assert gccs.clean_accuracy == pytest.approx(91.0)
    assert (gccs.strongest_attack, gccs.strongest_accuracy) == ("PGD-5 DLR", pytest.approx(22.0))
    assert gccs.surviving_share == pytest.approx(100 * 17 / 62, abs=1e-4)
    assert (ce.strongest_attack, ce.strongest_accuracy, ce.worst_accuracy) == ("APGD-CE", pytest.approx(8.0),
                                                                               pytest.approx(7.0))
    for row in rows.values():
        assert row.worst_accuracy <= row.protocol_pgd and row.worst_accuracy <= row.strongest_accuracy
        assert row.worst_from == "attacks.csv"
    assert (gccs.verdict, gccs.failed_checks, gccs.warned_checks) == ("fail", "large-eps attack-loss", "convergence")
    assert (ce.verdict, ce.failed_checks, ce.warned_checks) == ("pass", "", "")


def test_robustness_markdown_defines_the_share_and_labels_scale(dirs):
    root, _ = dirs["audited"]
    text = (root / "robustness.md").read_text()
    assert SCALE in text.splitlines()[2]
    # issue 18: the section names its norm, and every accuracy carries its 95 % Wilson interval
    assert "## fashion-mnist small-cnn — L∞, relative ε_c = 0.1, 200 test images" in text
    assert ("| GCCS - regular training (mean of 2 seeds) | 91.00 [87.8, 93.4] | 62.00 [57.2, 66.6] | "
            "67.00 [62.2, 71.4] | PGD-5 DLR 22.00 [18.2, 26.3] | **17.00 [13.6, 21.0]** | "
            "27.4 % | **fail** (large-eps, attack-loss; warn: convergence) |") in text
    assert ("| cross-entropy (no defense) | 88.00 [82.8, 91.8] | 10.00 [6.6, 14.9] | 15.00 [10.7, 20.6] | "
            "APGD-CE 8.00 [5.0, 12.6] | **7.00 [4.2, 11.4]** | 70.0 % | **pass** |") in text
    assert "- Differences below ≈ 6.9 pts are within noise at n = 200" in text
    assert ("overlap, so this sample does not tell them apart: GCCS - regular training / Jacobian reg. - "
            "fine-tuning.") in text
    assert "**Surviving share** = worst case / protocol PGD-5 × 100" in text
    assert "input-grad" not in text and "Input gradient" not in text  # not audited


def test_audit_matrix_and_legend_come_from_the_json(dirs):
    root, _ = dirs["audited"]
    text = (root / "audit.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| Checkpoint"))
    assert header == ("| Checkpoint | Method | Data | ε_c | 1 monotone | 2 large-eps | 3 convergence | "
                      "4 attack-loss | 5 black-box | 6 zero-gradient | 7 deterministic | Verdict |")
    row = next(line for line in text.splitlines() if line.startswith("| fm-gccs-s0 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:4] == ["fm-gccs-s0", "GCCS - regular training", "fashion-mnist small-cnn", "relative 0.1"]
    # issue 18: at n = 200 every difference below ≈ 6.9 pts (the widest 95 % Wilson half-width) is within noise
    assert cells[4:] == [f"{status} ({0.1 * i:.1f} pts, within noise)" for i, status in
                         enumerate(["pass", "fail", "warn", "fail", "pass", "pass", "pass"], start=1)] + ["**fail**"]
    ce = next(line for line in text.splitlines() if line.startswith("| fm-ce "))
    assert "| skipped |" in ce
    assert "2. **large-eps**: question 2 (large-eps). Threshold: threshold-2 <= 2." in text
    assert "- fm-gccs-s0, check 2 large-eps: fail, 0.2 pts; detail 2; within noise at this n" in text
    assert "Noise: at n = 200 images a single accuracy's 95 % Wilson interval is up to ±6.9 pts." in text
    assert "⚠" not in text  # n = 200 > 100: no small-sample warning
    assert SCALE in text


def test_table1_mentions_the_verdicts(dirs):
    root, _ = dirs["audited"]
    text = (root / "table1.md").read_text()
    section = text[text.index("## Robustness audit"):]
    assert "[robustness.md](robustness.md)" in section and "[audit.md](audit.md)" in section
    # issue 18: the column names its norm; the worst case carries its 95 % Wilson interval
    assert "| Method | fashion-mnist small-cnn (L∞, relative ε_c = 0.1) |" in section
    assert "| GCCS - regular training | 17.00 [13.6, 21.0] (PGD-5 62.00, fail) |" in section
    assert "| Jacobian reg. - fine-tuning | 25.00 [19.5, 31.4] (PGD-5 30.00, pass) |" in section
    assert text.index("| Input gradient reg. - regular training |") < text.index("## Robustness audit")


def test_fig7_written_and_rerun_identical(dirs):
    root, written = dirs["audited"]
    names = {p.name for p in written if p.parent.name == "figures"}
    assert {"fig7-worst-case.png", "fig7-worst-case.pdf", "fig4-pgd.png", "fig5-tgsm.png", "fig6-jsma.png"} <= names
    assert (root / "figures/fig7-worst-case.png").read_bytes().startswith(b"\x89PNG")
    assert (root / "figures/fig7-worst-case.pdf").read_bytes().startswith(b"%PDF")
    before = {path: path.read_bytes() for path in written}
    assert write_report(root) == written
    for path in written:
        assert path.read_bytes() == before[path], path


def test_no_audit_json_no_audit_files(dirs):
    root, written = dirs["plain"]
    assert not {"robustness.csv", "robustness.md", "audit.md", "fig7-worst-case.png"} & {p.name for p in written}
    assert not (root / "robustness.md").exists() and not (root / "figures/fig7-worst-case.png").exists()
    assert "Robustness audit" not in (root / "table1.md").read_text()


def test_figs_4_to_6_ignore_audit_and_worst_rows(dirs):
    (plain, _), (audited, _) = dirs["plain"], dirs["audited"]
    for stem in ("fig4-pgd", "fig5-tgsm", "fig6-jsma"):
        for ext in ("png", "pdf"):
            assert (plain / f"figures/{stem}.{ext}").read_bytes() == (audited / f"figures/{stem}.{ext}").read_bytes()
    rows = load_results(audited).attacks
    kept = [r for r in rows if is_protocol_row(r)]
    assert {(r["attack"], r["attack_loss"], r["restarts"], r["source"]) for r in kept} == {
        ("pgd", "ce", "1", ""), ("tgsm", "ce", "1", ""), ("jsma", "saliency", "1", "")}
    for attack in ("pgd", "tgsm", "jsma"):
        native, art, omitted = panel_rows(rows, "fashion-mnist", "small-cnn", attack)
        assert {(r["backend"], r["eps_mode"], r["steps"], r["restarts"]) for r in native} == {
            ("native", "relative", "200" if attack == "jsma" else "5", "1")}
        assert len(native) == len(RUNS) * len(EPS) and not art and omitted == 0
    assert panel_rows([r for r in rows if not is_protocol_row(r)], "fashion-mnist", "small-cnn", "pgd") == ([], [], 0)
    # PGD-100 with one restart (strong_restarts = 1) passes the row test but not the panel's one configuration
    strong = [dict(r, restarts="1") for r in rows if r["attack"] == "pgd" and r["restarts"] == "5"]
    native, _, omitted = panel_rows(rows + strong, "fashion-mnist", "small-cnn", "pgd")
    assert {r["steps"] for r in native} == {"5"} and omitted == len(strong) == 4


def test_bad_audit_json_is_one_line_error(tmp_path, dirs):
    root = shutil.copytree(dirs["audited"][0], tmp_path / "copy")
    (root / "runs/fm-ce/audit.json").write_text(json.dumps({"checkpoint": "x"}))
    with pytest.raises(RobenchError) as exc:
        write_report(root)
    message = str(exc.value)
    assert "audit.json" in message and "lacks" in message and "\n" not in message


def test_worst_falls_back_to_the_json_without_a_worst_row(tmp_path, dirs):
    root = shutil.copytree(dirs["audited"][0], tmp_path / "copy")
    rows = load_results(root).attacks
    write_attack_rows(root / "attacks.csv", [r for r in rows if not (r["attack"] == "worst" and r["checkpoint"]
                                                                      .endswith("fm-ce"))])
    write_report(root)
    ce = _robustness(root)[("ce", "regular")]
    assert (ce.worst_accuracy, ce.worst_from) == (pytest.approx(57.0), "audit.json")  # the json's (stale) worst
    assert _robustness(root)[("gccs", "regular")].worst_from == "attacks.csv"
    assert "Worst case taken from audit.json (no matching `worst` row in attacks.csv): cross-entropy (no defense)." \
        in (root / "robustness.md").read_text()


def _wilson(k, n, z=1.959963984540054):
    """The Wilson score interval written out by hand (Wilson 1927), in %."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return 100 * (centre - half), 100 * (centre + half)


def test_robustness_intervals_are_wilson_of_the_pooled_counts(dirs):
    rows = _robustness(dirs["audited"][0])
    gccs, ce = rows[("gccs", "regular")], rows[("ce", "regular")]
    # two seeds of 200 images: worst rows 0.15 and 0.19 -> 30 + 38 of 400; clean 0.90, 0.92 -> 180 + 184 of 400
    assert (gccs.worst_accuracy_low, gccs.worst_accuracy_high) == pytest.approx(_wilson(68, 400), abs=1e-4)
    assert (gccs.clean_accuracy_low, gccs.clean_accuracy_high) == pytest.approx(_wilson(364, 400), abs=1e-4)
    assert (ce.protocol_pgd_low, ce.protocol_pgd_high) == pytest.approx(_wilson(20, 200), abs=1e-4)
    assert (ce.strongest_accuracy_low, ce.strongest_accuracy_high) == pytest.approx(_wilson(16, 200), abs=1e-4)
    for row in rows.values():
        assert row.norm == "Linf"
        for column in ("clean_accuracy", "protocol_pgd", "protocol_tgsm", "strongest_accuracy", "worst_accuracy"):
            low, value, high = getattr(row, f"{column}_low"), getattr(row, column), getattr(row, f"{column}_high")
            assert low <= value <= high


def test_small_audits_warn_that_one_image_is_points(tmp_path, dirs):
    root = shutil.copytree(dirs["audited"][0], tmp_path / "copy")
    for path in root.glob("runs/*/audit.json"):
        data = json.loads(path.read_text())
        path.write_text(json.dumps(dict(data, n=50)))
    write_report(root)
    warning = "**⚠ n = 50: one image is 2.0 points of accuracy, and differences below ≈ 13.4 points are within noise.**"
    assert warning in (root / "audit.md").read_text()
    assert warning in (root / "robustness.md").read_text()


def test_fig7_bars_carry_values_and_the_title_fits(dirs, monkeypatch):
    import robench.report.worst_case_figure as module

    figures = []
    monkeypatch.setattr(module, "figure_files", lambda fig, root, stem: figures.append(fig) or {})
    results = load_results(dirs["audited"][0])
    from robench.report.robustness import robustness_rows

    module.worst_case_figure(results, robustness_rows(results))
    (fig,) = figures
    (ax,) = [a for a in fig.axes if a.get_visible()]
    texts = {t.get_text() for t in ax.texts}
    assert {"62.0", "17.0", "10.0", "7.0", "30.0", "25.0", "fail", "pass"} <= texts
    title = fig._suptitle.get_text()
    assert max(len(line) for line in title.splitlines()) <= fig.get_figwidth() * 12
    assert "attack loss ce" in " ".join(t.get_text() for t in fig.legends[0].get_texts())
