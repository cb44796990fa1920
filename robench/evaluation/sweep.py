"""Accuracy-vs-ε sweeps: every checkpoint × attack × backend × ε, one CSV row each.

The evaluated images are a fixed, seeded, class-stratified subset of the test set (the same
for every checkpoint and backend of a dataset). ε = 0 rows are clean accuracy. Two protocols:

* ``independent`` — every ε attacks every image from scratch (the paper's protocol);
* ``cumulative`` (default) — an image broken at a smaller ε counts as broken at every larger
  one and only images still standing are attacked: the worst case over the grid, monotone in
  ε, and cheaper. ``target_success`` then counts images that reached the target at some ε' ≤ ε.

Each row is stored as it finishes, with its per-image record (correct, target hit), in the store
of record beside the CSV (:mod:`robench.evaluation.store`), which rewrites the CSV with its
``worst`` rows (:mod:`robench.evaluation.worst`). Every row names the SHA-256 of the attacked
weights and of the evaluated images: a re-run skips rows that measured the same model on the same
images, recomputes rows whose model or images changed (stale), and ``force`` recomputes all; a
cumulative sweep resumes from the per-image record of its last row.
"""

from __future__ import annotations

import hashlib
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from robench.allocator import tune_cpu_allocator
from robench.attacks import Attack, build_attack, default_backend, target_labels
from robench.checks import check_count, check_seed
from robench.data import load_dataset, stratified_subset
from robench.devices import resolve_device
from robench.errors import RobenchError
from robench.evaluation.epsilon import absolute_radii, check_eps_mode
from robench.evaluation.store import ResultStore, is_current, slot_of
from robench.evaluation.worst import attack_label, group_key
from robench.models.checkpoints import load_checkpoint
from robench.progress import SweepProgress
from robench.results import row_cells, row_identity
from robench.version import __version__

SWEEPS = ("cumulative", "independent")


@dataclass(frozen=True)
class SweepSpec:
    """What ``robench attack`` (or a recipe's ``[[attack]]``, or an audit) attacks, and how.

    Every ``(attack, backend)`` pair runs on every checkpoint at every ε of ``eps_grid``. The
    attack settings (``steps``, ``step_size``, ``restarts``, ``attack_loss``, ``random_start``,
    ``source``) are None for the attack's own default; one an attack does not take is an error
    (:func:`robench.attacks.build_attack`), not silently dropped.
    """

    checkpoints: tuple[str, ...]
    attacks: tuple[str, ...]
    eps_grid: tuple[float, ...]
    out: str
    backends: tuple[str, ...] | None = None   # None: each attack on its default backend
    eps_mode: str = "relative"
    steps: int | None = None          # None: each attack's default (pgd 5, tgsm 5, jsma 200)
    step_size: float | None = None    # fraction of ε per step; None: the attack's default
    restarts: int | None = None       # pgd, apgd, square, transfer: None = 1
    attack_loss: str | None = None    # None: the attack's default (ce; saliency for jsma, margin for square)
    n_samples: int | None = None      # None: the whole test set
    batch_size: int = 128
    seed: int = 0
    sweep: str = "cumulative"
    random_start: bool | None = None  # pgd and transfer: None = True
    source: str | None = None         # transfer: the checkpoint the examples are crafted on
    norm: str | None = None           # Linf or L2 for the attacks that take one; None: Linf
    given: tuple[str, ...] = ()       # attack only the survivors of these rows (attack labels, same CSV and ε)
    trust_weights: bool = False       # attack weights that do not match their run.json (rows name the file's hash)
    trust_code: bool = False          # rebuild imported models by running their factory (the user's code)

    def attack_settings(self) -> dict:
        """The settings passed to every attack of the sweep (None: the attack's default)."""
        return {"steps": self.steps, "step_size": self.step_size, "restarts": self.restarts,
                "loss": self.attack_loss, "random_start": self.random_start, "source": self.source,
                "norm": self.norm}

    def pairs(self) -> list[tuple[str, str]]:
        """Every (attack, backend) the sweep runs, in order."""
        return [(name, backend) for name in self.attacks for backend in (self.backends or (default_backend(name),))]

    def build_attacks(self) -> list[tuple[str, str, Attack]]:
        """``(name, backend, attack)`` for every pair; bad names, backends or settings are RobenchErrors."""
        return [(name, backend, build_attack(name, backend, **self.attack_settings())) for name, backend in self.pairs()]

    def validate(self) -> None:
        """Check every setting before any work; raises :class:`RobenchError` naming the first bad one."""
        if not self.checkpoints:
            raise RobenchError("give at least one checkpoint to attack")
        if not self.attacks:
            raise RobenchError("give at least one attack")
        check_eps_mode(self.eps_mode)
        if self.sweep not in SWEEPS:
            raise RobenchError(f"unknown --sweep {self.sweep!r}; choose one of: {', '.join(SWEEPS)}")
        if not self.eps_grid or any(not math.isfinite(e) or e < 0 for e in self.eps_grid):
            raise RobenchError(f"the eps grid must hold finite values >= 0, got {list(self.eps_grid)}")
        check_count(self.batch_size, "--batch-size")
        check_seed(self.seed)
        if self.n_samples is not None:
            check_count(self.n_samples, "--n-samples")
        if self.given and self.sweep != "independent":
            raise RobenchError("attacking only the survivors of other attacks needs an independent sweep")
        self.build_attacks()


@dataclass
class Target:
    """One model a sweep attacks, with the images it is evaluated on: a checkpoint, or a module and tensors."""

    name: str                  # the CSV's checkpoint column: a run directory, or a label for an in-memory model
    model: torch.nn.Module
    meta: dict                 # dataset, model, loss, training, seed, num_classes and model_sha256
    x: torch.Tensor
    y: torch.Tensor
    images: str                # images_sha256(x, y)


def run_sweep(spec: SweepSpec, *, device: str = "auto", data_dir: str | None = None, download: bool = False,
              force: bool = False, progress: bool = True) -> list[dict]:
    """Run the sweep into the store of ``spec.out`` (and its CSV); returns the rows written by this call.

    A row is done when its slot holds a row that measured this very model and these images (its
    identity columns); a row of another model or image set at the same path is stale and is
    recomputed (the returned row says ``replaced = "stale"``). ``force`` recomputes every row.
    """
    spec.validate()
    ResultStore(spec.out).check()                            # a damaged or foreign CSV: refused before any work
    dev = resolve_device(device)
    targets, datasets = [], {}
    for path in spec.checkpoints:
        model, meta = load_checkpoint(path, device=dev, verify=not spec.trust_weights, trust_code=spec.trust_code)
        key = (meta["dataset"], repr(meta.get("dataset_options")))
        if key not in datasets:
            x, y = evaluation_images(meta, spec, data_dir, download)
            datasets[key] = (x, y, images_sha256(x, y))
        targets.append(Target(str(path), model, meta, *datasets[key]))
    return sweep_targets(spec, targets, device=dev, force=force, progress=progress)


def sweep_targets(spec: SweepSpec, targets: list[Target], *, device: torch.device, force: bool = False,
                  progress: bool = True) -> list[dict]:
    """:func:`run_sweep` on models and images already at hand (``spec.checkpoints`` is not read)."""
    tune_cpu_allocator()
    spec.validate()
    store = ResultStore(spec.out)
    store.check()
    attacks = spec.build_attacks()
    stored = {slot_of(r): r for r in store.rows()}
    written: list[dict] = []
    dev = device
    with SweepProgress(enabled=progress) as bar:
        for target in targets:
            path, model, meta, x, y, images = target.name, target.model, target.meta, target.x, target.y, target.images
            targets_y = target_labels(y, meta["num_classes"])
            for name, backend, attack in attacks:
                rows = [result_row(spec, path, meta, attack, name, backend, eps, len(y), images)
                        for eps in spec.eps_grid]
                identity = row_identity(rows[0])

                def done(row: dict) -> bool:
                    old = stored.get(slot_of(row))
                    return not force and old is not None and is_current(old, identity)

                if all(done(r) for r in rows):
                    continue
                state = None  # cumulative: (correct, target_hit) after the previous ε
                for row in rows:
                    if done(row):
                        state = store.record(row) if spec.sweep == "cumulative" else None
                        continue
                    if spec.sweep == "cumulative" and state is None and row["eps"] != rows[0]["eps"]:
                        state = replay(spec, model, attack, x, y, targets_y, rows, row, dev, bar)
                    if spec.given:  # only the images every attack of ``given`` left standing
                        state = (given_survivors(store, row, spec.given), torch.zeros(len(y), dtype=torch.bool))
                    t0 = time.perf_counter()
                    attacked = len(y) if state is None else int(state[0].sum())  # cumulative/pruned: the ones standing
                    bar.start(f"{Path(path).name} · {name}/{backend} {row['attack_loss']} {row['steps'] or '-'}x"
                              f"{row['restarts']}{' ' + row['norm'] if row['norm'] != 'Linf' else ''} · "
                              f"ε={row['eps']:g}", attacked)
                    correct, hit = attack_images(spec, model, attack, x, y, targets_y, row["eps"], state, dev, bar,
                                                 norm=row["norm"])
                    state = (correct, hit) if spec.sweep == "cumulative" else None
                    row.update(n_correct=int(correct.sum()), accuracy=int(correct.sum()) / len(y),
                               target_success=(int(hit.sum()) / len(y)) if attack.targeted else None,
                               seconds=time.perf_counter() - t0)
                    old = stored.get(slot_of(row))
                    store.put(row, (correct, hit))
                    stored[slot_of(row)] = row_cells(row)
                    written.append({**row, "replaced": None if old is None else
                                    "recomputed" if is_current(old, identity) else "stale"})
    return written


def images_sha256(x: torch.Tensor, y: torch.Tensor) -> str:
    """The identity of an evaluated image set: SHA-256 of its shape, float32 pixels and int64 labels."""
    digest = hashlib.sha256(repr(tuple(x.shape)).encode())
    digest.update(x.detach().cpu().contiguous().float().numpy().tobytes())
    digest.update(y.detach().cpu().contiguous().long().numpy().tobytes())
    return digest.hexdigest()


def evaluation_images(meta: dict, spec: SweepSpec, data_dir, download) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded, class-stratified test subset a sweep evaluates (the whole test set without ``n_samples``)."""
    data = load_dataset(meta["dataset"], data_dir=data_dir, download=download,
                        options=meta.get("dataset_options") or {})
    x, y = data.x_test, data.y_test
    if spec.n_samples is not None:
        if not 1 <= spec.n_samples <= len(y):
            raise RobenchError(f"--n-samples must be in 1..{len(y)} for {meta['dataset']}, got {spec.n_samples}")
        idx = stratified_subset(y, spec.n_samples, spec.seed)
        x, y = x[idx], y[idx]
    return x, y


def result_row(spec: SweepSpec, path, meta: dict, attack, name: str, backend: str, eps: float, n: int,
               images: str) -> dict:
    """The CSV row (without results) that ``spec`` writes for one checkpoint, attack and ε on ``images``."""
    settings = attack.settings()
    return {"dataset": meta["dataset"], "model": meta["model"], "loss": meta["loss"],
            "training": meta.get("training") or "regular", "seed": meta.get("seed"), "checkpoint": str(path),
            "attack": name, "backend": backend, "attack_loss": settings["attack_loss"], "targeted": attack.targeted,
            "eps": float(eps), "eps_mode": spec.eps_mode, "steps": settings["steps"],
            "step_size": settings["step_size"], "restarts": settings["restarts"], "sweep": spec.sweep, "n": n,
            "attack_seed": spec.seed, "robench_version": __version__, "source": settings.get("source"),
            "norm": settings["norm"], "given": " + ".join(spec.given),
            "model_sha256": meta["model_sha256"], "images_sha256": images,
            "source_sha256": settings.get("source_sha256")}


def given_survivors(store: ResultStore, row: dict, labels: tuple[str, ...]) -> torch.Tensor:
    """The per-image AND of ``correct`` over the current rows of ``row``'s group whose attack labels are ``labels``."""
    group = [r for r in store.rows() if group_key(r) == group_key(row) and row_identity(r)[:2] == row_identity(row)[:2]]
    found = {attack_label(r): r for r in group}
    missing = [label for label in labels if label not in found or store.record(found[label]) is None]
    if missing:
        raise RobenchError(f"cannot attack the survivors of {', '.join(missing)} at eps {row['eps']:g}: no current "
                           f"row with a per-image record in {store.csv}")
    survived = torch.ones(int(row["n"]), dtype=torch.bool)
    for label in labels:
        survived &= store.record(found[label])[0]
    return survived


def attack_images(spec, model, attack, x, y, targets, eps, state, dev, bar, norm: str = "Linf"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Attack (x, y) at ``eps`` in batches; per-image (correct, target hit) at ``eps``; in cumulative mode only still-correct images are attacked."""
    correct = torch.zeros(len(y), dtype=torch.bool)
    hit = torch.zeros(len(y), dtype=torch.bool)
    todo = torch.arange(len(y))
    if state is not None:
        prev_correct, prev_hit = state
        hit |= prev_hit
        todo = todo[prev_correct]
    torch.manual_seed(zlib.crc32(f"{spec.seed}:{attack.name}:{eps!r}".encode()))
    for idx in todo.split(spec.batch_size):
        xb, yb, tb = x[idx].to(dev), y[idx].to(dev), targets[idx].to(dev)
        x_adv = attack(model, xb, yb, absolute_radii(xb, eps, spec.eps_mode, norm)) if eps > 0 else xb
        with torch.no_grad():
            pred = model(x_adv).argmax(1)
        correct[idx] = (pred == yb).cpu()
        hit[idx] |= (pred == tb).cpu()
        bar.advance(len(idx))
    return correct, hit


def replay(spec, model, attack, x, y, targets, rows, until, dev, bar):
    """Recompute the cumulative state before ``until`` when the per-image record is missing."""
    state = None
    for row in rows:
        if row is until:
            return state
        bar.start(f"replaying ε={row['eps']:g} (per-image record missing)", len(y))
        state = attack_images(spec, model, attack, x, y, targets, row["eps"], state, dev, bar, norm=row["norm"])
    return state
