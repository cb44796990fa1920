"""The plan of a recipe: every training run, attack sweep, audit and latent snapshot it implies.

Fine-tuning runs come after their cross-entropy parent; there is one attack sweep per (attack
step, dataset) over that dataset's checkpoints, an audit per run (if the recipe has ``[audit]``)
and a latent snapshot per run (if it asks for Fig. 3). :func:`pending_work` says what is not done
yet: finished runs, CSV rows, audit files and latent snapshots of the current weights are kept;
those of other weights (the run was retrained) are stale and redone.
Checkpoints go to ``<runs>/<recipe>/`` (ignored by git); everything else to ``<results>/<recipe>/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from robench.errors import RobenchError
from robench.evaluation.audit import AUDIT_JSON, AuditConfig
from robench.evaluation.latent import snapshot_model_sha256
from robench.evaluation.store import ResultStore
from robench.evaluation.sweep import SweepSpec
from robench.models.checkpoints import model_identity, read_metadata
from robench.models.run_layout import METADATA
from robench.pipeline.recipe import AttackStep, Recipe, hyper_variants
from robench.training.config import TrainConfig, finished_metadata


@dataclass(frozen=True)
class PlannedRun:
    name: str
    config: TrainConfig
    parent: str | None = None   # the name of the run it fine-tunes

    @property
    def done(self) -> bool:
        return finished_metadata(self.config) is not None

    def weights_sha256(self) -> str | None:
        """The identity of the finished run's weights (its run.json's ``weights_sha256``); None while unfinished."""
        meta = finished_metadata(self.config)
        return model_identity(meta) if meta else None


def current_weights(checkpoint: str) -> str | None:
    """``weights_sha256`` of the finished run at ``checkpoint``, or None (unfinished, missing or broken)."""
    try:
        meta = read_metadata(checkpoint)
    except RobenchError:
        return None
    return model_identity(meta) if meta.get("status") == "finished" else None


@dataclass(frozen=True)
class PlannedSweep:
    step: AttackStep
    dataset: str
    spec: SweepSpec

    def missing_by_checkpoint(self) -> dict[str, int]:
        """Per checkpoint, the rows of this sweep the store lacks or holds for other weights (stale), matched
        on checkpoint, attack, backend, loss, ε and sweep; the sweep itself also checks the images."""
        have = {(r["checkpoint"], r["attack"], r["backend"], r["attack_loss"], r["norm"], float(r["eps"]), r["sweep"]):
                r["model_sha256"] for r in ResultStore(self.spec.out).rows()}
        pairs = [(backend, attack.settings()["attack_loss"], attack.settings()["norm"])
                 for _, backend, attack in self.spec.build_attacks()]
        missing = {}
        for c in self.spec.checkpoints:
            weights = current_weights(c)
            missing[c] = sum(weights is None or have.get((c, self.step.attack, b, loss, norm, e, self.spec.sweep))
                             != weights for b, loss, norm in pairs for e in self.spec.eps_grid)
        return missing

    def missing_rows(self) -> int:
        """Rows of this sweep to compute: missing from the store, or stale."""
        return sum(self.missing_by_checkpoint().values())


@dataclass(frozen=True)
class PlannedAudit:
    run: PlannedRun
    config: AuditConfig
    csv: Path
    out_json: Path
    transfer_from: str | None   # the cross-entropy run of the same dataset, model and seed

    @property
    def done(self) -> bool:
        """An audit.json exists and judged the run's current weights (else it is stale)."""
        if not self.out_json.is_file():
            return False
        try:
            judged = json.loads(self.out_json.read_text(encoding="utf-8")).get("model_sha256")
        except (OSError, ValueError, AttributeError):
            return False
        return judged is not None and judged == self.run.weights_sha256()


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

    def latent_done(self, run: PlannedRun) -> bool:
        """The run's snapshot exists and was taken of its current weights."""
        path, weights = self.latent_path(run), run.weights_sha256()
        return weights is not None and path.is_file() and snapshot_model_sha256(path) == weights


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
                out=str(results_dir / "attacks.csv"), eps_mode=step.eps_mode, norm=step.norm, steps=step.steps,
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
            square_queries=step.square_queries, transfer_steps=step.transfer_steps, prune=step.prune)
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
        todo = sum(not plan.latent_done(r) for r in plan.runs)
        lines += ["", f"latent snapshots: {len(plan.runs)} ({todo} to do)"]
    lines += ["", f"report: {plan.results_dir}/table1.*, figures/"]
    return "\n".join(lines)


@dataclass(frozen=True)
class Pending:
    """What a plan still needs, in plan order; ``worked``: whether the manifest is (re)written."""

    runs: list[PlannedRun]
    sweeps: list[PlannedSweep]
    audits: list[PlannedAudit]
    latent: list[PlannedRun]
    worked: bool


def pending_work(plan: Plan) -> Pending:
    sweeps = [sw for sw in plan.sweeps if sw.missing_rows()]
    latent = [r for r in plan.runs if plan.recipe.latent and not plan.latent_done(r)]
    runs = [r for r in plan.runs if not r.done]
    audits = [a for a in plan.audits if not a.done]
    worked = bool(runs or sweeps or latent or audits) or not (plan.results_dir / "manifest.json").exists()
    return Pending(runs, sweeps, audits, latent, worked)


