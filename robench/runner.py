"""``robench run RECIPE``: plan a recipe's work, then train, attack, snapshot and report, resumably.

The plan lists every training run the recipe implies (fine-tuning runs after their
cross-entropy parent), one attack sweep per (attack step, dataset) over that dataset's
checkpoints, a latent snapshot per run (if the recipe asks for Fig. 3) and the report.
Every level resumes: a finished run is reused, an interrupted one continues from its last
epoch, CSV rows already present are skipped, existing latent files are kept. Checkpoints go
to ``<runs>/<recipe>/`` (ignored by git); everything else to ``<results>/<recipe>/``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from robench.audit import AUDIT_JSON, AuditConfig, run_audit
from robench.checkpoints import METADATA, WEIGHTS, read_metadata
from robench.errors import RobenchError
from robench.progress import PlanProgress, console
from robench.recipes import AttackStep, Recipe, hyper_variants
from robench.results import (atomic_write_bytes, atomic_write_json, environment, file_sha256, read_attack_rows,
                             utc_now)
from robench.sweep import SweepSpec, run_sweep
from robench.train import TrainConfig, finished_metadata, train

TRAIN_LOG = "train_log.csv"


@dataclass(frozen=True)
class PlannedRun:
    name: str
    config: TrainConfig
    parent: str | None = None   # the name of the run it fine-tunes

    @property
    def done(self) -> bool:
        return finished_metadata(self.config) is not None


@dataclass(frozen=True)
class PlannedSweep:
    step: AttackStep
    dataset: str
    spec: SweepSpec

    def missing_rows(self) -> int:
        """Rows of this sweep not yet in the CSV (matched on checkpoint, attack, backend, loss, ε, sweep)."""
        have = {(r["checkpoint"], r["attack"], r["backend"], r["attack_loss"], float(r["eps"]), r["sweep"])
                for r in read_attack_rows(self.spec.out)}
        want = [(c, self.step.attack, b, _attack_loss(self.step), e, self.spec.sweep)
                for c in self.spec.checkpoints for b in self.spec.backends for e in self.spec.eps_grid]
        return sum(key not in have for key in want)


@dataclass(frozen=True)
class PlannedAudit:
    run: PlannedRun
    config: AuditConfig
    csv: Path
    out_json: Path
    transfer_from: str | None   # the cross-entropy run of the same dataset, model and seed

    @property
    def done(self) -> bool:
        return self.out_json.exists()


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    results_dir: Path
    runs_dir: Path
    runs: tuple[PlannedRun, ...]
    sweeps: tuple[PlannedSweep, ...]
    audits: tuple[PlannedAudit, ...] = ()

    def latent_path(self, run: PlannedRun) -> Path:
        return self.results_dir / "latent" / f"{run.name}.safetensors"


def _attack_loss(step: AttackStep) -> str:
    return "saliency" if step.attack == "jsma" else step.attack_loss


def _tag(hyper: dict, grid: dict) -> str:
    return "".join(f"-{k}{hyper[k]:g}" if isinstance(hyper[k], (int, float)) else f"-{k}{hyper[k]}" for k in grid)


def build_plan(recipe: Recipe, results_root: str | Path = "results", runs_root: str | Path = "runs") -> Plan:
    """Every run and sweep of ``recipe``; paths are relative to the working directory as given."""
    spec = recipe.train
    results_dir, runs_dir = Path(results_root) / recipe.name, Path(runs_root) / recipe.name
    regular, finetune = [], []
    for dataset in spec.datasets:
        for model in spec.models:
            for seed in spec.seeds:
                for loss in spec.losses:
                    for hyper in hyper_variants(spec, loss):
                        stem = f"{dataset}-{model}-{loss}{_tag(hyper, spec.hyper_grid.get(loss, {}))}"
                        common = dict(dataset=dataset, model=model, loss=loss, loss_hyper=hyper, seed=seed,
                                      batch_size=spec.batch_size, lr=spec.lr, momentum=spec.momentum,
                                      weight_decay=spec.weight_decay, train_subset=spec.train_subset,
                                      test_subset=spec.test_subset, model_options=dict(spec.model_options),
                                      dataset_options=dict(spec.dataset_options))
                        if "regular" in spec.modes:
                            name = f"{stem}-regular-s{seed}"
                            regular.append(PlannedRun(name, TrainConfig(out=str(runs_dir / name), epochs=spec.epochs,
                                                                        **common)))
                        if "finetune" in spec.modes and loss != "ce":
                            parent = f"{dataset}-{model}-ce-regular-s{seed}"
                            name = f"{stem}-finetune-s{seed}"
                            finetune.append(PlannedRun(name, TrainConfig(
                                out=str(runs_dir / name), epochs=spec.finetune_epochs, init=str(runs_dir / parent),
                                **common), parent=parent))
    regular.sort(key=lambda r: r.config.loss != "ce")  # parents first; otherwise the recipe's order
    runs = tuple(regular + finetune)
    sweeps = []
    for step in recipe.attacks:
        for dataset in step.datasets or spec.datasets:
            checkpoints = tuple(r.config.out for r in runs if r.config.dataset == dataset)
            sweeps.append(PlannedSweep(step, dataset, SweepSpec(
                checkpoints=checkpoints, attacks=(step.attack,), backends=step.backends, eps_grid=step.eps,
                out=str(results_dir / "attacks.csv"), eps_mode=step.eps_mode, steps=step.steps,
                step_size=step.step_size, restarts=step.restarts, attack_loss=step.attack_loss,
                n_samples=step.n_samples, batch_size=step.batch_size, seed=step.seed, sweep=step.sweep)))
    return Plan(recipe, results_dir, runs_dir, runs, tuple(sweeps), _plan_audits(recipe, runs, results_dir))


def _plan_audits(recipe: Recipe, runs: tuple[PlannedRun, ...], results_dir: Path) -> tuple[PlannedAudit, ...]:
    """One audit per run; unset settings follow the recipe's first pgd step on the run's dataset."""
    step = recipe.audit
    if step is None:
        return ()
    audits = []
    for run in runs:
        c = run.config
        mode = "regular" if run.parent is None else "finetune"
        if (step.losses is not None and c.loss not in step.losses) or (step.modes is not None and mode not in step.modes):
            continue
        pgd = next((a for a in recipe.attacks if a.attack == "pgd" and (a.datasets is None or c.dataset in a.datasets)),
                   None)
        inherit = lambda mine, theirs, default: mine if mine is not None else (  # noqa: E731
            theirs if pgd is not None else default)
        cfg = AuditConfig(
            eps_grid=inherit(step.eps, pgd and pgd.eps, AuditConfig.eps_grid),
            eps_mode=inherit(step.eps_mode, pgd and pgd.eps_mode, "relative"), eps_check=step.eps_check,
            n_samples=inherit(step.n_samples, pgd and pgd.n_samples, 1000),
            seed=inherit(step.seed, pgd and pgd.seed, 0), batch_size=step.batch_size, steps=step.steps,
            strong_steps=step.strong_steps, strong_restarts=step.strong_restarts, apgd_steps=step.apgd_steps,
            square_queries=step.square_queries, transfer_steps=step.transfer_steps)
        ce = next((r for r in runs if r.config.loss == "ce" and r.parent is None and r.config.dataset == c.dataset
                   and r.config.model == c.model and r.config.seed == c.seed), None)
        audits.append(PlannedAudit(run, cfg, results_dir / "attacks.csv", results_dir / "runs" / run.name / AUDIT_JSON,
                                   ce.config.out if ce is not None and ce is not run else None))
    return tuple(audits)


def describe_plan(plan: Plan) -> str:
    """A text table of the plan with what is already done (``--dry-run``)."""
    lines = [f"recipe {plan.recipe.name} ({plan.recipe.path}) -> {plan.results_dir}/, checkpoints in {plan.runs_dir}/",
             f"scale: {plan.recipe.scale or 'not stated'}", "", f"training runs ({len(plan.runs)}):"]
    for run in plan.runs:
        c = run.config
        state = "done" if run.done else ("partial" if (Path(c.out) / METADATA).exists() else "to do")
        source = f" from {run.parent}" if run.parent else ""
        lines.append(f"  {run.name:<52} {c.loss:<16} {c.epochs:>4} epochs{source}  [{state}]")
    lines += ["", f"attack sweeps ({len(plan.sweeps)}):"]
    for sw in plan.sweeps:
        s = sw.spec
        rows = len(s.checkpoints) * len(s.backends) * len(s.eps_grid)
        lines.append(f"  {sw.step.attack:<5} {'/'.join(s.backends):<11} {sw.dataset:<14} {len(s.checkpoints)} checkpoints"
                     f" x {len(s.eps_grid)} eps ({s.eps_mode}, {s.sweep}), {s.n_samples or 'all'} images: "
                     f"{rows} rows, {sw.missing_rows()} to do")
    if plan.audits:
        cfg = plan.audits[0].config
        lines += ["", f"audits: {len(plan.audits)} ({sum(not a.done for a in plan.audits)} to do), "
                      f"{cfg.n_samples or 'all'} images, {cfg.eps_mode} eps check {cfg.check_eps:g}"]
    if plan.recipe.latent:
        todo = sum(not plan.latent_path(r).exists() for r in plan.runs)
        lines += ["", f"latent snapshots: {len(plan.runs)} ({todo} to do)"]
    lines += ["", f"report: {plan.results_dir}/table1.*, figures/"]
    return "\n".join(lines)


def execute_plan(plan: Plan, *, device: str = "auto", data_dir: str | None = None, download: bool = False,
                 progress: bool = True) -> dict:
    """Do whatever the plan still needs; returns the manifest (rewritten only when work was done)."""
    from robench.devices import resolve_device
    from robench.latent import write_latent

    dev = resolve_device(device)
    started, env = utc_now(), environment(dev)  # the code that runs is the code at start
    todo_sweeps = [sw for sw in plan.sweeps if sw.missing_rows()]
    todo_latent = [r for r in plan.runs if plan.recipe.latent and not plan.latent_path(r).exists()]
    todo_runs = [r for r in plan.runs if not r.done]
    todo_audits = [a for a in plan.audits if not a.done]
    worked = bool(todo_runs or todo_sweeps or todo_latent or todo_audits) or not (plan.results_dir / "manifest.json").exists()
    timings: dict[str, float] = {}
    jobs = len(todo_runs) + len(todo_sweeps) + len(todo_latent) + len(todo_audits) + 1
    with PlanProgress(jobs, enabled=progress) as bar:
        for run in plan.runs:
            if run in todo_runs:
                bar.job(f"train {run.name}")
                t0 = time.perf_counter()
                train(run.config, device=device, data_dir=data_dir, download=download, resume=True, progress=progress)
                timings[f"train {run.name}"] = time.perf_counter() - t0
                bar.done()
            _copy_run_files(run, plan.results_dir / "runs" / run.name)
        for sw in todo_sweeps:
            bar.job(f"{sw.step.attack} on {sw.dataset}")
            t0 = time.perf_counter()
            run_sweep(sw.spec, device=device, data_dir=data_dir, download=download, progress=progress)
            key = f"{sw.step.attack} {'/'.join(sw.spec.backends)} {sw.spec.sweep} {sw.dataset}"
            timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
            bar.done()
        for audit in todo_audits:
            bar.job(f"audit {audit.run.name}")
            t0 = time.perf_counter()
            run_audit(audit.run.config.out, audit.config, csv=audit.csv, out_json=audit.out_json,
                      transfer_from=audit.transfer_from, device=device, data_dir=data_dir, download=download,
                      progress=progress)
            timings[f"audit {audit.run.name}"] = time.perf_counter() - t0
            bar.done()
        for run in todo_latent:
            bar.job(f"latent {run.name}")
            t0 = time.perf_counter()
            write_latent(run.config.out, plan.latent_path(run), plan.recipe.latent, device=dev, data_dir=data_dir,
                         download=download)
            timings[f"latent {run.name}"] = time.perf_counter() - t0
            bar.done()
        manifest = _manifest(plan, started, env, timings) if worked else None
        if manifest is not None:
            atomic_write_json(plan.results_dir / "manifest.json", manifest)
        bar.job("report")
        from robench.report import write_report

        written = write_report(plan.results_dir, compare_paper=plan.recipe.report.compare_paper)
        bar.done()
    if not worked:
        console.print(f"{plan.recipe.name}: nothing to do (every run, row and snapshot exists); report rewritten")
    return {"worked": worked, "report": [str(p) for p in written]}


def _copy_run_files(run: PlannedRun, dest: Path) -> None:
    for name in (METADATA, TRAIN_LOG):
        source = Path(run.config.out) / name
        data = source.read_bytes()
        target = dest / name
        if not target.exists() or target.read_bytes() != data:
            atomic_write_bytes(target, data)


def _manifest(plan: Plan, started: str, env: dict, timings: dict) -> dict:
    runs = []
    for run in plan.runs:
        meta = read_metadata(run.config.out)
        runs.append({"run": run.name, "checkpoint": run.config.out, "parent": meta.get("parent"),
                     "weights_sha256": file_sha256(Path(run.config.out) / WEIGHTS),
                     "test_accuracy": meta["test_accuracy"], "best_test_accuracy": meta["best_test_accuracy"],
                     "train_wall_time_s": meta["wall_time_s"], "trained_at_commit": meta["environment"]["git_commit"]})
    return {"name": plan.recipe.name, "recipe_file": plan.recipe.path, "scale": plan.recipe.scale,
            "description": plan.recipe.description, "recipe": dataclasses.asdict(plan.recipe),
            "seeds": list(plan.recipe.train.seeds), "started_at": started, "finished_at": utc_now(),
            "environment": env, "runs": runs, "seconds_this_invocation": timings}


def run_recipe(path: str | Path, *, results_root: str | Path = "results", runs_root: str | Path = "runs",
               device: str = "auto", data_dir: str | None = None, download: bool = False, dry_run: bool = False,
               progress: bool = True) -> str:
    """Load, plan and (unless ``dry_run``) execute a recipe; returns the plan text."""
    from robench.recipes import load_recipe

    plan = build_plan(load_recipe(path), results_root, runs_root)
    text = describe_plan(plan)
    if dry_run:
        return text
    for run in plan.runs:
        if run.parent and not any(r.name == run.parent for r in plan.runs):
            raise RobenchError(f"{run.name} fine-tunes {run.parent}, which the recipe does not train")
    execute_plan(plan, device=device, data_dir=data_dir, download=download, progress=progress)
    return text
