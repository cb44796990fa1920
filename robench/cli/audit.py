"""``robench audit``: can a checkpoint's robust accuracy be trusted? The command and its verdict table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from robench.cli.options import (DataDirOpt, DatasetOpt, DatasetOptionOpt, DeviceOpt, FactoryArgOpt, FactoryOpt,
                                 QuietOpt, TrustCodeOpt, WeightsOpt, fail, import_user_model, user_model_options_given)
from robench.errors import RobenchError

STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skipped": "dim"}


def verdict_table(report: dict):
    """A rich table of the audit's checks and its headline numbers."""
    from rich.table import Table

    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    table = Table(title=f"audit of {report['checkpoint']} ({report['n']} test images, "
                        f"{report['eps_mode']} eps = {report['eps_check']:g})", title_justify="left")
    for column, justify in (("#", "right"), ("check", "left"), ("question", "left"), ("measured", "right"),
                            ("threshold", "left"), ("verdict", "left"), ("detail", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for check in report["checks"]:
        style = STYLE[check["status"]]
        table.add_row(str(check["id"]), check["name"], check["question"], check["measured_text"], check["threshold"],
                      f"[{style}]{check['status']}[/{style}]", check["detail"])
    pruned = report.get("pruned", [])
    table.caption = (f"clean {pct(report['clean_accuracy'])} · paper protocol PGD-{report['config']['steps']} "
                     f"{pct(report['protocol']['pgd'])} · worst case over "
                     f"{len(report['attacks_at_eps_check']) + len(pruned)} attacks {pct(report['worst'])} · verdict "
                     f"{report['verdict']}\non the images still standing: " + "; ".join(
                         f"{p['attack']} broke {p['images_broken']} of {p['images_attacked']}" for p in pruned))
    table.caption_justify = "left"
    return table


def audit(
    checkpoint: Annotated[Path | None, typer.Argument(
        help="A run directory (robench train, import-model, or a recipe's); or give your own model with "
             "--model-factory, --weights and --dataset.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Directory for audit.json and audit.csv (default: the checkpoint's directory).")] = None,
    csv: Annotated[Path | None, typer.Option(
        help="Attacks CSV to read and append the battery's rows to (default: OUT/audit.csv). Point it at an "
             "existing sweep's CSV to reuse its paper-protocol rows and fold the audit into its worst rows.")]
    = None,
    eps_grid: Annotated[str, typer.Option(help="ε grid of the monotonicity sweep (check 1).")]
    = "0,0.02,0.04,0.06,0.08,0.1",
    eps_mode: Annotated[str, typer.Option(help="relative (the paper's, ||n||∞ <= ε·||x||∞) or absolute.")]
    = "relative",
    eps_check: Annotated[Optional[float], typer.Option(
        help="ε at which checks 3-5 and the worst case are measured (default: the largest of --eps-grid).")] = None,
    n_samples: Annotated[Optional[int], typer.Option(
        help="Seeded class-stratified test subset (default 1000; the whole test set if smaller).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the subset and of every attack's randomness.")] = 0,
    steps: Annotated[int, typer.Option(help="Iterations of the paper-protocol PGD and TGSM.")] = 5,
    strong_steps: Annotated[int, typer.Option(help="Check 3: iterations of the strong PGD.")] = 100,
    strong_restarts: Annotated[int, typer.Option(help="Check 3: random restarts of the strong PGD.")] = 5,
    apgd_steps: Annotated[int, typer.Option(help="Checks 3-4: iterations of APGD-CE, APGD-T and FAB-T.")] = 100,
    square_queries: Annotated[int, typer.Option(help="Check 5: Square attack queries per image.")] = 5000,
    prune: Annotated[bool, typer.Option(
        "--prune/--no-prune", help="The expensive attacks see only the images still standing (AutoAttack's rule); "
                                   "--no-prune runs every attack on every image (slower, the same verdicts).")] = True,
    trust_weights: Annotated[bool, typer.Option(
        "--trust-weights", help="Audit a model.safetensors that does not match its run.json's weights_sha256.")]
    = False,
    transfer_from: Annotated[Optional[Path], typer.Option(
        help="Check 5: source of the transfer attack (default: the cross-entropy run of the same dataset and "
             "model beside the checkpoint, or its fine-tuning parent).")] = None,
    transfer_steps: Annotated[int, typer.Option(help="Check 5: PGD iterations on the transfer source.")] = 20,
    batch_size: Annotated[int, typer.Option(help="Images per attack batch.")] = 128,
    data_dir: Annotated[Optional[Path], typer.Option(help=DataDirOpt)] = None,
    download: Annotated[bool, typer.Option("--download", help="Download the dataset if it is missing.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 when the verdict is fail (for CI).")]
    = False,
    device: DeviceOpt = "auto",
    model_factory: FactoryOpt = None,
    weights: WeightsOpt = None,
    dataset: DatasetOpt = None,
    dataset_option: DatasetOptionOpt = None,
    factory_arg: FactoryArgOpt = None,
    trust_code: TrustCodeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Check whether a checkpoint's robust accuracy can be trusted: adaptive attacks and gradient-masking checks.

    Runs a fixed battery on a seeded test subset and grades seven checks pass/warn/fail. Which attack
    sees which images, AutoAttack-style: the cheap attacks (paper-protocol PGD-5 over the ε grid, PGD-5
    at absolute ε = 0.5, TGSM-5, PGD-5 and TGSM-5 with margin and DLR losses) run on every image; then
    PGD-100 with 5 restarts, APGD-CE, APGD-T, FAB-T, Square and the transfer attack from the
    cross-entropy model each run only on the images every attack before them left standing. Writes
    audit.json plus the battery's rows (with per-image worst-case rows) to audit.csv.

    Resumable: rows already in the CSV are kept. Exit code 0 whatever the verdict unless --strict.
    """
    from robench.evaluation.audit import AUDIT_JSON, AuditConfig, run_audit
    from robench.evaluation.epsilon import parse_eps_grid
    from robench.files import check_directory_target

    try:
        cfg = AuditConfig(eps_grid=tuple(parse_eps_grid(eps_grid)), eps_mode=eps_mode, eps_check=eps_check,
                          n_samples=n_samples, seed=seed, batch_size=batch_size, steps=steps,
                          strong_steps=strong_steps, strong_restarts=strong_restarts, apgd_steps=apgd_steps,
                          square_queries=square_queries, transfer_steps=transfer_steps, prune=prune)
        cfg.validate()
        if user_model_options_given(model_factory, weights, dataset):
            if checkpoint is not None or out is None:
                raise RobenchError("auditing your own model takes --out DIR (its run directory goes to DIR/model) and no "
                                   "CHECKPOINT")
            check_directory_target(out, "--out")
            checkpoint = import_user_model(model_factory, weights, dataset, dataset_option, factory_arg, out / "model",
                                           data_dir, download)
            trust_code = True  # the code the user named on this command line
        elif checkpoint is None:
            raise RobenchError("give CHECKPOINT (a run directory), or your own model with --model-factory, --weights "
                               "and --dataset")
        out_dir = out or checkpoint
        if not checkpoint.is_dir():
            raise RobenchError(f"checkpoint {checkpoint} not found: expected a run directory from robench train")
        check_directory_target(out_dir, "--out")  # before any work: audit.json goes there
        if csv is not None and not csv.exists():
            check_directory_target(csv, "--csv")  # its folders can be made
        report = run_audit(checkpoint, cfg, csv=csv or out_dir / "audit.csv", out_json=out_dir / AUDIT_JSON,
                           transfer_from=str(transfer_from) if transfer_from else None, device=device,
                           trust_weights=trust_weights, trust_code=trust_code,
                           data_dir=str(data_dir) if data_dir else None, download=download, progress=not quiet)
    except RobenchError as exc:
        fail(exc)
    import sys

    from rich.console import Console

    Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160).print(verdict_table(report))
    typer.echo(f"{out_dir / AUDIT_JSON} ({report['seconds']:.0f} s)")
    if strict and report["verdict"] == "fail":
        raise typer.Exit(1)
