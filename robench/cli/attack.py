"""``robench attack``: checkpoints x attacks x backends x ε -> rows of a tidy attacks CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robench.cli.options import (DataDirOpt, DatasetOpt, DatasetOptionOpt, DeviceOpt, FactoryArgOpt, FactoryOpt,
                                 QuietOpt, TrustCodeOpt, WeightsOpt, fail, import_user_model, split_values,
                                 user_model_options_given)
from robench.errors import RobenchError


def attack(
    out: Annotated[Path, typer.Option(help="CSV to append rows to (created if missing; existing rows are kept).")],
    checkpoint: Annotated[list[Path] | None, typer.Option(
        help="Run directory to attack (repeatable): from robench train, robench import-model, or a recipe.")] = None,
    attack_names: Annotated[list[str], typer.Option(
        "--attack", help="pgd, tgsm, jsma (the paper's); apgd, apgd-t, fab, square (AutoAttack's parts); transfer "
                         "(repeatable or comma-separated; robench list attacks).")] = ["pgd"],
    eps_grid: Annotated[str, typer.Option(
        help="ε values: 0,0.01,0.02 or 0,4/255,8/255 or start:stop:num (inclusive).")] = "0,0.01,0.02,0.05,0.1",
    eps_mode: Annotated[str, typer.Option(
        help="relative: ||n|| <= ε·||x|| per image (the paper's convention); absolute: ||n|| <= ε (every peer's: "
             "RobustBench, AutoAttack, torchattacks, ART).")] = "relative",
    norm: Annotated[str | None, typer.Option(
        help="Threat model, RobustBench's names: Linf (the default) or L2, for pgd, apgd, apgd-t, fab, square, "
             "autoattack and transfer; tgsm and jsma stay L-inf as the paper defines them.")] = None,
    backend: Annotated[list[str] | None, typer.Option(
        help="native or art (repeatable or comma-separated; default: native; art runs ART's pgd, tgsm, jsma, "
             "apgd, square as cross-checks).")] = None,
    steps: Annotated[int | None, typer.Option(
        help="Iterations (default: pgd 5, tgsm 5, jsma 200, apgd/apgd-t/fab 100, square 5000 queries (ART's 1000), "
             "transfer 20).")] = None,
    step_size: Annotated[float | None, typer.Option(
        help="Step as a fraction of ε (default: pgd 2.5/steps, tgsm 1/steps).")] = None,
    restarts: Annotated[int | None, typer.Option(
        help="pgd/apgd/square/transfer: random starts, keeping the worst per image (default 1).")] = None,
    attack_loss: Annotated[str | None, typer.Option(
        help="pgd/tgsm/apgd/transfer objective: ce (the paper's, the default), margin (Carlini-Wagner) or dlr "
             "(Croce-Hein). jsma and square take none.")] = None,
    transfer_from: Annotated[Path | None, typer.Option(
        help="transfer: the run directory the PGD examples are crafted on (e.g. the cross-entropy model).")] = None,
    n_samples: Annotated[int | None, typer.Option(
        help="Evaluate a seeded class-stratified subset of N test images (default: all).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per attack batch.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the evaluated subset and of random starts.")] = 0,
    sweep: Annotated[str, typer.Option(
        help="cumulative: an image broken at a smaller ε stays broken (worst case, cheaper); "
             "independent: every ε from scratch (the paper's protocol).")] = "cumulative",
    data_dir: Annotated[Path | None, typer.Option(help=DataDirOpt)] = None,
    download: Annotated[bool, typer.Option("--download", help="Download the dataset if it is missing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Recompute rows already in --out (they are replaced).")] = False,
    trust_weights: Annotated[bool, typer.Option(
        "--trust-weights", help="Attack a model.safetensors that does not match its run.json's weights_sha256 "
                                "(replaced by hand); rows then name the file's own hash.")] = False,
    device: DeviceOpt = "auto",
    model_factory: FactoryOpt = None,
    weights: WeightsOpt = None,
    dataset: DatasetOpt = None,
    dataset_option: DatasetOptionOpt = None,
    factory_arg: FactoryArgOpt = None,
    trust_code: TrustCodeOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Attack checkpoints over a grid of ε and add accuracy-vs-ε rows to a tidy CSV.

    Rows are kept in OUT's store of record (OUT with .sqlite), which rewrites OUT after every row.
    Each row names the SHA-256 of the attacked weights and of the evaluated images: rows already
    there for the same weights and images are skipped, rows of weights that have changed since
    (a retrained checkpoint) are stale and recomputed. Several processes may write one OUT at once.

    Your own model: --model-factory file.py:build --weights w.pt --dataset NAME imports it into a run
    directory beside OUT (OUT.models/<weights name>/, see robench import-model) and attacks it; its
    identity is the hash of its weights together with the factory.
    """
    from robench.evaluation.epsilon import parse_eps_grid
    from robench.evaluation.sweep import SweepSpec, run_sweep

    try:
        checkpoints = [str(c) for c in checkpoint or []]
        if user_model_options_given(model_factory, weights, dataset):
            checkpoints.append(str(import_user_model(model_factory, weights, dataset, dataset_option, factory_arg,
                                                     out.with_name(out.stem + ".models") / weights.stem, data_dir,
                                                     download)))
            trust_code = True  # the code the user named on this command line
        elif not checkpoints:
            raise RobenchError("give --checkpoint RUN_DIR, or your own model with --model-factory, --weights and "
                               "--dataset")
        if backend is not None and not split_values(backend):
            raise RobenchError("--backend is empty; give native or art (or leave it out for each attack's default)")
        spec = SweepSpec(
            checkpoints=tuple(checkpoints), attacks=tuple(split_values(attack_names)),
            backends=tuple(split_values(backend)) or None, eps_grid=tuple(parse_eps_grid(eps_grid)), out=str(out),
            eps_mode=eps_mode, norm=norm, steps=steps, step_size=step_size, restarts=restarts, attack_loss=attack_loss,
            n_samples=n_samples, batch_size=batch_size, seed=seed, sweep=sweep,
            source=str(transfer_from) if transfer_from else None, trust_weights=trust_weights, trust_code=trust_code)
        rows = run_sweep(spec, device=device, data_dir=str(data_dir) if data_dir else None, download=download,
                         force=force, progress=not quiet)
    except RobenchError as exc:
        fail(exc)
    stale = sum(row["replaced"] == "stale" for row in rows)
    note = f" ({stale} of them replacing stale rows of weights that have changed since)" if stale else ""
    typer.echo(f"{out}: {len(rows)} new row(s){note}")
    print_accuracy_table(spec)


def print_accuracy_table(spec) -> None:
    """The sweep's accuracy (%) per checkpoint and ε, one column per attack and the per-image worst case."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from robench.evaluation.summary import accuracy_table, sweep_rows

    table = accuracy_table(sweep_rows(spec))
    if table.empty:
        return
    shown = Table(title="accuracy (%) under attack; worst: an image counts only if it withstood every attack",
                  title_justify="left")
    for name in ("checkpoint", "norm", "eps mode", "eps"):
        shown.add_column(name)
    for column in table.columns:
        shown.add_column(column, justify="right")
    for (checkpoint, norm, mode, eps), values in table.iterrows():
        shown.add_row(checkpoint, norm, mode, f"{eps:g}", *("–" if v != v else f"{v:.2f}" for v in values))
    Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160).print(shown)
