"""``audit.md``: the seven checks of ``robench audit`` per checkpoint (a pivot of the checks), their questions
and thresholds, what is within noise at the audited number of images, and the findings.

Each check's cell shows its verdict, its measured value and the 95 % interval the audit computed
(:mod:`robench.evaluation.audit_checks`; the verdict already accounts for it). Audits written before
checks carried intervals: where a difference of two accuracies on the same images is smaller than
the widest 95 % Wilson half-width at that n (:func:`robench.proportions.noise_points`) the cell says
"within noise". n ≤ 100 gets a visible warning (one image is a point or more).
"""

from __future__ import annotations

import pandas as pd

from robench.report.formatting import md_cell
from robench.proportions import noise_points
from robench.report.intervals import small_sample_warning
from robench.report.loader import Results, method_label
from robench.report.robustness import summaries_frame
from robench.report.robustness_text import header


def within_noise(check: dict, n: int) -> bool:
    """Whether a check measured in points of accuracy (a difference of two accuracies on the same ``n`` images)
    found a non-zero difference smaller than the widest 95 % interval at that n."""
    measured = check.get("measured")
    if check.get("interval"):
        return False  # the audit graded it with its own interval
    text = str(check.get("measured_text", ""))
    if measured is None or not (text.endswith(" pts") or text.endswith(" pt")):
        return False
    return 0 < abs(float(measured)) < noise_points(n)


def check_cell(check: dict, n: int) -> str:
    if check["status"] == "skipped":
        return "skipped"
    noise = ", within noise" if within_noise(check, n) else ""
    interval = check.get("interval")
    bounds = f" [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else ""
    return f"{check['status']} ({check['measured_text']}{bounds}{noise})"


def checks_frame(summaries: pd.DataFrame) -> pd.DataFrame:
    """One row per (audited checkpoint, check) (tidy), with the cell text of the check matrix."""
    return pd.DataFrame([{"run": s.run, "id": c["id"], "name": c["name"], "status": c["status"],
                          "cell": check_cell(c, s.n), "question": c["question"], "threshold": c["threshold"],
                          "measured_text": c["measured_text"], "detail": c.get("detail") or ""}
                         for s in summaries.itertuples() for c in s.checks])


def audit_markdown(results: Results) -> str:
    """The check matrix (checkpoint x checks 1-7), the checks' questions and thresholds, noise, and findings."""
    summaries = summaries_frame(results)
    checks = checks_frame(summaries)
    names = checks.drop_duplicates("id").set_index("id")["name"].sort_index()
    ids = list(names.index)
    matrix = checks.pivot(index="run", columns="id", values="cell").reindex(index=list(summaries["run"]),
                                                                         columns=ids).fillna("–")
    lines = header("Robustness audit: checks per checkpoint", results)
    ns = sorted(set(summaries["n"]))
    lines += [f"**{w}**\n" for w in map(small_sample_warning, ns) if w]
    lines += ["| Checkpoint | Method | Data | ε_c | " + " | ".join(f"{i} {names[i]}" for i in ids) + " | Verdict |",
              "|---|---|---|---:|" + "---|" * len(ids) + "---|"]
    for s, cells in zip(summaries.itertuples(), matrix.to_numpy()):
        lines.append(f"| {md_cell(s.run)} | {md_cell(method_label(s.loss, s.training, s.variant))} | "
                     f"{s.dataset} {s.model} | {s.eps_mode} {s.eps_check:g} | "
                     + " | ".join(md_cell(c) for c in cells) + f" | **{s.verdict}** |")
    lines += ["", "## Checks", ""]
    for i in ids:
        asked = dict.fromkeys(zip(*(checks.loc[checks["id"] == i, c] for c in ("question", "threshold"))))
        lines.append(f"{i}. **{names[i]}**: " + "; ".join(f"{q}. Threshold: {t}." for q, t in asked))
    lines += ["", "Measured values: pts = percentage points of accuracy on the audited subset. A check is skipped "
              "when its attacks could not run (its detail says why). Verdict: fail if any check fails, warn if any "
              "warns, else pass.", ""]
    lines += [f"Noise: at n = {n} images a single accuracy's 95 % Wilson interval is up to ±{noise_points(n):.1f} pts. "
              "Brackets: each measured value's 95 % interval over the audited images; a verdict that interval could "
              "overturn is warn (checks 1, 3, 4, 5)." for n in ns]
    lines += ["", "## Findings", ""]
    found = checks[checks["status"] != "pass"]
    noisy = {(s.run, c["id"]) for s in summaries.itertuples() for c in s.checks if within_noise(c, s.n)}
    lines += [f"- {r.run}, check {r.id} {r.name}: {r.status}, {r.measured_text}" + (f"; {r.detail}" if r.detail else "")
              + ("; within noise at this n" if (r.run, r.id) in noisy else "") for r in found.itertuples()] \
        or ["Every check passed."]
    return "\n".join(lines) + "\n"
