"""Reading a recipe: TOML -> :class:`~robench.pipeline.recipe.Recipe`, validated key by key.

Unknown keys and bad values are :class:`RobenchError`s that name the file, the key and its
line; names are checked against the registries (datasets, models, losses, attacks) and each
attack step's settings against the attack. See ``recipes/README.md`` for every key.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

from robench.attacks import (ATTACK_LOSSES, ATTACKS, BACKENDS, build_attack, default_backend)
from robench.checks import INT_MAX, SEED_RULE, is_seed
from robench.data import DATASETS
from robench.errors import RobenchError
from robench.evaluation.epsilon import EPS_MODES, parse_eps_grid
from robench.evaluation.latent import LatentSpec
from robench.evaluation.sweep import SWEEPS
from robench.losses import LOSSES
from robench.models import MODELS, model_options
from robench.norms import NORMS
from robench.pipeline.recipe import (MODES, AttackStep, AuditStep, Recipe, ReportStep, TrainingSpec)
from robench.training.config import hyper_problem


class _Context:
    """Where a value came from, for error messages: file, dotted key and line."""

    def __init__(self, path: Path, text: str):
        self.path, self.lines = path, text.splitlines()

    def line_of(self, table: str, key: str, index: int = 0) -> int | None:
        """Line of ``key`` inside ``[table]`` (the ``index``-th ``[[table]]`` for arrays of tables)."""
        current, occurrence = "", {"": 0}
        for number, line in enumerate(self.lines, 1):
            header = re.match(r"\s*\[\[?\s*([^\]]+?)\s*\]", line)
            if header:
                current = header.group(1)
                occurrence[current] = occurrence.get(current, -1) + 1
            elif current == table and occurrence[current] == index and re.match(
                    rf"\s*\"?{re.escape(key)}\"?\s*=", line):
                return number
        return None

    def fail(self, table: str, key: str, message: str, index: int = 0) -> RobenchError:
        """The error for ``table.key``, at its line, or at the line of the key holding an inline table."""
        line, outer, inner = self.line_of(table, key, index), table, key
        while line is None and outer:  # `loss_hyper = {gccs = {mu = 1}}`: the line of loss_hyper
            outer, _, inner = outer.rpartition(".")
            line = self.line_of(outer, inner, index if outer else 0)
        where = f"{self.path}" + (f", line {line}" if line else "")
        dotted = f"{table}.{key}" if table else key
        return RobenchError(f"{where}: {dotted}: {message}")


def _check_keys(ctx: _Context, table: str, data: dict, allowed: set[str], index: int = 0) -> None:
    for key in data:
        if key not in allowed:
            raise ctx.fail(table, key, f"unknown key; allowed: {', '.join(sorted(allowed))}", index)


def _get(ctx, table, data, key, kind, default, index=0, check=None, message=""):
    if key not in data:
        return default
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ctx.fail(table, key, f"expected {names}, got {value!r}", index)
    if isinstance(value, int) and value > INT_MAX:
        raise ctx.fail(table, key, f"must be at most 2^63-1, got {value}", index)
    if check is not None and not check(value):
        raise ctx.fail(table, key, f"{message}, got {value!r}" if message else f"bad value {value!r}", index)
    return float(value) if float in kinds else value


def _table(ctx, table, key, value, what="a table"):
    """``value`` when it is a TOML table, else an error at ``table.key``."""
    if not isinstance(value, dict):
        raise ctx.fail(table, key, f"expected {what}, got {value!r}")
    return value


def _names(ctx, table, data, key, registry, default=None, index=0) -> tuple[str, ...]:
    value = data.get(key, default)
    if value is None:
        raise ctx.fail(table, key, "required", index)
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise ctx.fail(table, key, f"expected a non-empty list of names, got {value!r}", index)
    for v in values:
        if registry is not None and v not in registry:
            raise ctx.fail(table, key, registry.unknown_message(v), index)
    return tuple(values)


def _eps(ctx, table, data, index) -> tuple[float, ...]:
    if "eps" not in data:
        raise ctx.fail(table, "eps", "required (a list of numbers or \"start:stop:num\")", index)
    value = data["eps"]
    text = value if isinstance(value, str) else ",".join(str(v) for v in value) if isinstance(value, list) else None
    if text is None or (isinstance(value, list) and not all(isinstance(v, (int, float)) for v in value)):
        raise ctx.fail(table, "eps", f"expected a list of numbers or \"start:stop:num\", got {value!r}", index)
    try:
        return tuple(parse_eps_grid(text))
    except RobenchError as exc:
        raise ctx.fail(table, "eps", str(exc).replace("--eps-grid ", ""), index) from None


def _positive(v) -> bool:
    """A finite number > 0."""
    return 0 < v < math.inf


def _non_negative(v) -> bool:
    """A finite number >= 0."""
    return 0 <= v < math.inf


def _train(ctx: _Context, data: dict) -> TrainingSpec:
    t = "train"
    _check_keys(ctx, t, data, {f.name for f in TrainingSpec.__dataclass_fields__.values()})
    modes = _names(ctx, t, data, "modes", None, ["regular"])
    for mode in modes:
        if mode not in MODES:
            raise ctx.fail(t, "modes", f"unknown mode {mode!r}; choose from: {', '.join(MODES)}")
    losses = _names(ctx, t, data, "losses", LOSSES)
    if "finetune" in modes and ("ce" not in losses or "regular" not in modes):
        raise ctx.fail(t, "modes", "finetune continues the regular ce run: add \"ce\" to losses and \"regular\" to modes")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds:
        raise ctx.fail(t, "seeds", f"expected a non-empty list of integers, got {seeds!r}")
    for seed in seeds:
        if not is_seed(seed):
            raise ctx.fail(t, "seeds", f"{SEED_RULE}, got {seed!r}")
    hyper, grid = data.get("loss_hyper", {}), data.get("hyper_grid", {})
    for key, table in (("loss_hyper", hyper), ("hyper_grid", grid)):
        for loss, values in _table(ctx, t, key, table, "a table of losses").items():
            if loss not in losses:
                raise ctx.fail(f"{t}.{key}", loss, f"{loss!r} is not among train.losses")
            known = LOSSES.get(loss).hyper
            for name, value in _table(ctx, f"{t}.{key}", loss, values, "a table of hyper-parameters").items():
                where = (f"{t}.{key}.{loss}", name)
                if name not in known:
                    raise ctx.fail(*where, f"loss {loss!r} takes: {', '.join(known) or 'none'}")
                if key == "hyper_grid" and (not isinstance(value, list) or not value):
                    raise ctx.fail(*where, f"expected a non-empty list, got {value!r}")
                for v in value if key == "hyper_grid" else [value]:
                    problem = hyper_problem(loss, name, v)
                    if problem is not None:
                        raise ctx.fail(*where, problem)
    _table(ctx, t, "dataset_options", data.get("dataset_options", {}))
    models = _names(ctx, t, data, "models", MODELS)
    for option in _table(ctx, t, "model_options", data.get("model_options", {})):
        for model in (m for m in models if option not in model_options(m)):  # every run builds every model
            raise ctx.fail(t, "model_options", f"model {model!r} takes no option {option!r}; it takes: "
                                               f"{', '.join(sorted(model_options(model))) or 'none'}")
    sub = lambda key: _get(ctx, t, data, key, int, None, check=_positive, message="must be a positive integer")  # noqa: E731
    return TrainingSpec(
        datasets=_names(ctx, t, data, "datasets", DATASETS), models=models,
        losses=losses, modes=modes, seeds=tuple(seeds),
        epochs=_get(ctx, t, data, "epochs", int, 10, check=_positive, message="must be at least 1"),
        finetune_epochs=_get(ctx, t, data, "finetune_epochs", int, 5, check=_positive, message="must be at least 1"),
        batch_size=_get(ctx, t, data, "batch_size", int, 128, check=_positive, message="must be at least 1"),
        lr=_get(ctx, t, data, "lr", (int, float), 0.01, check=_positive, message="must be a finite number > 0"),
        momentum=_get(ctx, t, data, "momentum", (int, float), 0.9, check=_non_negative,
                      message="must be a finite number >= 0"),
        weight_decay=_get(ctx, t, data, "weight_decay", (int, float), 1e-3, check=_non_negative,
                          message="must be a finite number >= 0"),
        train_subset=sub("train_subset"), test_subset=sub("test_subset"),
        dataset_options=dict(data.get("dataset_options", {})), model_options=dict(data.get("model_options", {})),
        loss_hyper={k: dict(v) for k, v in hyper.items()},
        hyper_grid={k: dict(v) for k, v in grid.items()})


def _attack(ctx: _Context, data: dict, index: int, datasets: tuple[str, ...]) -> AttackStep:
    t = "attack"
    _check_keys(ctx, t, data, {f.name for f in AttackStep.__dataclass_fields__.values()}, index)
    name = _get(ctx, t, data, "attack", str, None, index)
    if name is None:
        raise ctx.fail(t, "attack", "required", index)
    if name not in ATTACKS:
        raise ctx.fail(t, "attack", ATTACKS.unknown_message(name), index)
    backends = _names(ctx, t, data, "backends", None, [default_backend(name)], index)
    choice = lambda key, options, default: _get(  # noqa: E731
        ctx, t, data, key, str, default, index, check=lambda v: v in options,
        message=f"choose one of: {', '.join(options)}")
    for backend in backends:
        if backend not in BACKENDS:
            raise ctx.fail(t, "backends", f"unknown backend {backend!r}; choose from: {', '.join(BACKENDS)}", index)
    only = _names(ctx, t, data, "datasets", None, list(datasets), index)
    for d in only:
        if d not in datasets:
            raise ctx.fail(t, "datasets", f"{d!r} is not among train.datasets", index)
    positive_int = dict(check=_positive, message="must be a positive integer")
    step = AttackStep(
        attack=name, eps=_eps(ctx, t, data, index), backends=backends,
        eps_mode=choice("eps_mode", EPS_MODES, "relative"), norm=choice("norm", NORMS, None),
        steps=_get(ctx, t, data, "steps", int, None, index, **positive_int),
        step_size=_get(ctx, t, data, "step_size", (int, float), None, index, check=_positive,
                       message="must be a finite number > 0"),
        restarts=_get(ctx, t, data, "restarts", int, None, index, **positive_int),
        attack_loss=choice("attack_loss", ATTACK_LOSSES, None),
        n_samples=_get(ctx, t, data, "n_samples", int, None, index, **positive_int),
        batch_size=_get(ctx, t, data, "batch_size", int, 128, index, **positive_int),
        seed=_get(ctx, t, data, "seed", int, 0, index, check=is_seed, message=SEED_RULE),
        sweep=choice("sweep", SWEEPS, "cumulative"),
        datasets=None if "datasets" not in data else only)
    for backend in backends:  # the attack must take every setting given
        try:
            build_attack(name, backend, steps=step.steps, step_size=step.step_size, restarts=step.restarts,
                         loss=step.attack_loss, norm=step.norm)
        except RobenchError as exc:
            key = next((k for k in ("restarts", "attack_loss", "norm", "step_size", "steps", "backends") if k in data),
                       "attack")
            raise ctx.fail(t, key, str(exc), index) from None
    return step


def _latent(ctx: _Context, data: dict) -> LatentSpec:
    t = "latent"
    _check_keys(ctx, t, data, {f.name for f in LatentSpec.__dataclass_fields__.values()})
    classes = data.get("classes", [0, 1, 9])
    if not isinstance(classes, list) or not classes or \
            not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= INT_MAX for c in classes):
        raise ctx.fail(t, "classes", f"expected a non-empty list of class indices, got {classes!r}")
    attack = _get(ctx, t, data, "attack", str, "tgsm", check=lambda v: v in ATTACKS,
                  message=f"choose one of: {', '.join(ATTACKS.names())}")
    return LatentSpec(attack=attack, eps=_get(ctx, t, data, "eps", (int, float), 0.05, check=_non_negative,
                                              message="must be a finite number >= 0"),
                      eps_mode=_get(ctx, t, data, "eps_mode", str, "relative", check=lambda v: v in EPS_MODES,
                                    message=f"choose one of: {', '.join(EPS_MODES)}"),
                      classes=tuple(classes),
                      n_samples=_get(ctx, t, data, "n_samples", int, 300, check=_positive,
                                     message="must be a positive integer"),
                      seed=_get(ctx, t, data, "seed", int, 0, check=is_seed, message=SEED_RULE))


def _audit(ctx: _Context, data: dict, train: TrainingSpec) -> AuditStep:
    t = "audit"
    _check_keys(ctx, t, data, {f.name for f in AuditStep.__dataclass_fields__.values()})
    positive = dict(check=_positive, message="must be a positive integer")
    counts = {k: _get(ctx, t, data, k, int, getattr(AuditStep, k), **positive)
              for k in ("batch_size", "steps", "strong_steps", "strong_restarts", "apgd_steps", "square_queries",
                        "transfer_steps")}
    subsets = {}
    for key, among in (("losses", train.losses), ("modes", train.modes)):
        subsets[key] = _names(ctx, t, data, key, None) if key in data else None
        for name in subsets[key] or ():
            if name not in among:
                raise ctx.fail(t, key, f"{name!r} is not among train.{key} ({', '.join(among)})")
    return AuditStep(
        eps=_eps(ctx, t, data, 0) if "eps" in data else None,
        eps_mode=_get(ctx, t, data, "eps_mode", str, None, check=lambda v: v in EPS_MODES,
                      message=f"choose one of: {', '.join(EPS_MODES)}"),
        eps_check=_get(ctx, t, data, "eps_check", (int, float), None, check=_positive, message="must be a finite number > 0"),
        n_samples=_get(ctx, t, data, "n_samples", int, None, **positive),
        seed=_get(ctx, t, data, "seed", int, None, check=is_seed, message=SEED_RULE),
        prune=_get(ctx, t, data, "prune", bool, True), **counts, **subsets)


def load_recipe(path: str | Path) -> Recipe:
    """Parse and validate the recipe at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RobenchError(f"no recipe at {path} (shipped recipes: recipes/*.toml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RobenchError(f"cannot read recipe {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RobenchError(f"{path}: not valid TOML: {exc}") from None
    ctx = _Context(path, text)
    _check_keys(ctx, "", data, {"name", "description", "scale", "train", "attack", "latent", "audit",
                                 "report"})
    name = _get(ctx, "", data, "name", str, path.stem, check=lambda v: re.fullmatch(r"[A-Za-z0-9][\w.-]*", v),
                message="use letters, digits, '-', '_' and '.' (it names results/<name>/)")
    if "train" not in data:
        raise ctx.fail("", "train", "a [train] table is required")
    train = _train(ctx, _table(ctx, "", "train", data["train"], "a [train] table"))
    attacks = data.get("attack", [])
    if not isinstance(attacks, list) or not all(isinstance(a, dict) for a in attacks):
        raise ctx.fail("", "attack", f"write attacks as [[attack]] tables, got {attacks!r}")
    for key in ("latent", "audit", "report"):
        _table(ctx, "", key, data.get(key, {}), f"a [{key}] table")
    report = data.get("report", {})
    _check_keys(ctx, "report", report, {"compare_paper"})
    return Recipe(
        name=name, path=str(path), description=_get(ctx, "", data, "description", str, ""),
        scale=_get(ctx, "", data, "scale", str, ""), train=train,
        attacks=tuple(_attack(ctx, a, i, train.datasets) for i, a in enumerate(attacks)),
        latent=_latent(ctx, data["latent"]) if "latent" in data else None,
        audit=_audit(ctx, data["audit"], train) if "audit" in data else None,
        report=ReportStep(compare_paper=_get(ctx, "report", report, "compare_paper", bool, False)))
