"""Training-step time of every loss, as a multiple of the cross-entropy step, side by side.

One full SGD step (forward, objective, backward, gradient clipping where the loss uses it,
optimiser step) on a fixed random batch. All configurations of a table are built in this
one process and timed in interleaved repeats (so drifts in machine load hit all alike);
the table reports the median step time, its ratio to ``ce``, and where the step's time goes:

* ``forward``: the model's forward pass (for the penalties, under ``torch.func.vjp``, with
  the batch-statistics bookkeeping of :func:`robench.losses.input_gradients.forward_with_vjp`);
* ``rows``: the loss on z plus, for the penalties, the input gradients (the vmap'ed VJP: the
  D Jacobian rows for ``jacobian`` exact and ``cross-lipschitz``, K for projections, one for
  ``input-grad``) and the penalty on them;
* ``backward``: ``loss.backward()``, which for the penalties is the double backward through
  the rows as well as the ordinary backward of CE;
* ``opt``: gradient clipping and the optimiser step.

Each phase is the median over repeats of its mean over the steps of a repeat, so the phases
need not add up exactly to the step's median. The phases are the penalties' ``objective``
taken apart (``forward_with_vjp``, then CE + λ·penalty); on CPU every op is synchronous, so
timing them with ``time.perf_counter`` (or ``--clock cpu``: the process's CPU time, steadier
on a machine that others load) is exact.

    python benchmarks/bench_train_step.py [--table gccs|defenses|all] [--repeats 5] [--steps 5]
        [--compare-plain] [--compare-layout] [--clock wall|cpu] [--threads N]

* ``gccs``: small-cnn with ``gccs`` vs ``ce`` for D = 10 (1x28x28) and D = 100 (3x32x32),
  plus the loss call alone (forward + backward of the loss on a fixed z).
* ``defenses``: small-cnn and resnet18 (width 0.25), 1x28x28, D = 10, for ``ce``, ``gccs``,
  ``input-grad``, ``jacobian`` (K = 1 projection and exact), ``cross-lipschitz``, ``pgd-at`` and
  ``trades`` (their inner attack and forward passes are the ``forward`` phase).
  ``--compare-plain`` adds each penalty computed with autograd's own formulas
  (``forward_with_vjp(rewrite=False)``, the layer rewrites of
  :mod:`robench.losses.input_gradients` off), in the same interleaved repeats.
  ``--compare-layout`` adds each loss with the weights in PyTorch's default NCHW layout.

Models are built as ``robench train`` has them on CPU: convolution weights channels-last
(:mod:`robench.models.memory_format`), which makes every step faster, and the exact penalties' most
since the layer rewrites keep the rows channels-last (:mod:`robench.losses.layouts`, 2026-12-02).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robench.allocator import tune_cpu_allocator
from robench.losses import LOSSES, build_loss
from robench.losses.base import LatentLoss
from robench.losses import input_gradients
from robench.models import build_model
from robench.models.memory_format import place

PHASES = ("forward", "rows", "backward", "opt")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def make_step(loss_name: str, hyper: dict, model_name: str, options: dict, num_classes: int, channels: int,
              size: int, batch_size: int, rewrite: bool = True, clock=time.perf_counter, channels_last: bool = True):
    """(step, loss_only): ``step()`` runs one training step and returns its phase times (see PHASES)."""
    torch.manual_seed(0)
    model = build_model(model_name, in_channels=channels, image_size=(size, size), num_classes=num_classes,
                        mean=(0.5,) * channels, std=(0.25,) * channels, options=options)
    if channels_last:
        place(model, "cpu")  # as robench train does on CPU
    loss_fn = build_loss(loss_name, num_classes, hyper)
    clip = LOSSES.get(loss_name).grad_clip
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-3)
    x = torch.rand(batch_size, channels, size, size)
    y = torch.randint(0, num_classes, (batch_size,))
    penalised = hasattr(loss_fn, "penalty")
    adversarial = not penalised and type(loss_fn).objective is not LatentLoss.objective  # pgd-at, trades

    def step() -> tuple[float, ...]:
        t0 = clock()
        if penalised:  # loss_fn.objective(model, x, y), phase by phase
            z, vjps = input_gradients.forward_with_vjp(model, x, rewrite=rewrite)
            t1 = clock()
            loss = loss_fn(z, y) + loss_fn.reg_weight * loss_fn.penalty(z, y, vjps)
        elif adversarial:  # the inner attack and the forward passes of the objective, as one phase
            loss, _ = loss_fn.objective(model, x, y)
            t1 = clock()
        else:
            z = model(x)
            t1 = clock()
            loss = loss_fn(z, y)
        t2 = clock()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = clock()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return t1 - t0, t2 - t1, t3 - t2, clock() - t3

    z = (torch.randn(batch_size, num_classes) * 5).requires_grad_()

    def loss_only():
        loss_fn(z, y).backward()

    return step, loss_only


def timed(fn, steps: int, clock=time.perf_counter) -> float:
    fn()
    t0 = clock()
    for _ in range(steps):
        fn()
    return (clock() - t0) / steps


def timed_phases(step, steps: int) -> list[float]:
    """Mean phase times over ``steps`` steps (after one untimed step)."""
    step()
    runs = [step() for _ in range(steps)]
    return [sum(run[i] for run in runs) / steps for i in range(len(PHASES))]


def run_table(title: str, cases: dict, repeats: int, steps: int, with_loss_only: bool, clock=time.perf_counter) -> None:
    """``cases``: label -> make_step kwargs; the first label is the baseline (ratio 1)."""
    fns = {label: make_step(**kwargs, clock=clock) for label, kwargs in cases.items()}
    times: dict[str, list[float]] = {label: [] for label in fns}
    phases: dict[str, list[list[float]]] = {label: [] for label in fns}
    loss_times: dict[str, list[float]] = {label: [] for label in fns}
    for _ in range(repeats):
        for label, (step, loss_only) in fns.items():
            split = timed_phases(step, steps)
            phases[label].append(split)
            times[label].append(sum(split))
            if with_loss_only:
                loss_times[label].append(timed(loss_only, steps, clock))
    base = statistics.median(times[next(iter(fns))])
    print(f"\n{title}")
    header = (f"{'configuration':<52} {'step ms':>9} {'x ce':>6} {'spread':>11}"
              + "".join(f" {p + ' ms':>11}" for p in PHASES) + (f" {'loss-only ms':>13}" if with_loss_only else ""))
    print(header)
    for label in fns:
        med = statistics.median(times[label])
        spread = f"{min(times[label]) / base:.2f}-{max(times[label]) / base:.2f}"
        row = f"{label:<52} {med * 1e3:>9.1f} {med / base:>6.2f} {spread:>11}"
        row += "".join(f" {statistics.median(run[i] for run in phases[label]) * 1e3:>11.1f}" for i in range(len(PHASES)))
        if with_loss_only:
            row += f" {statistics.median(loss_times[label]) * 1e3:>13.3f}"
        print(row)


def gccs_tables(batch_size: int, repeats: int, steps: int, clock) -> None:
    for d, c, s in [(10, 1, 28), (100, 3, 32)]:
        common = dict(model_name="small-cnn", options={}, num_classes=d, channels=c, size=s, batch_size=batch_size)
        cases = {f"small-cnn D={d} {c}x{s}x{s} ce": dict(loss_name="ce", hyper={}, **common),
                 f"small-cnn D={d} {c}x{s}x{s} gccs": dict(loss_name="gccs", hyper={}, **common)}
        run_table(f"gccs vs ce, D = {d}", cases, repeats, steps, with_loss_only=True, clock=clock)


def defense_tables(batch_size: int, repeats: int, steps: int, compare_plain: bool, clock,
                   compare_layout: bool = False) -> None:
    losses = [("ce", {}), ("gccs", {}), ("input-grad", {}), ("jacobian", {"projections": 1}), ("jacobian", {}),
              ("cross-lipschitz", {}), ("pgd-at", {}), ("trades", {})]
    for model_name, options in [("small-cnn", {}), ("resnet18", {"width": 0.25})]:
        common = dict(model_name=model_name, options=options, num_classes=10, channels=1, size=28,
                      batch_size=batch_size)
        cases = {}
        for name, hyper in losses:
            label = f"{model_name}{' w0.25' if options else ''} {name}" + (" K=1" if hyper else " (exact)" *
                                                                          (name == "jacobian"))
            cases[label] = dict(loss_name=name, hyper=hyper, **common)
            if compare_plain and name not in ("ce", "gccs", "pgd-at", "trades"):
                cases[f"{label}, autograd formulas"] = dict(loss_name=name, hyper=hyper, rewrite=False, **common)
            if compare_layout:
                cases[f"{label}, NCHW weights"] = dict(loss_name=name, hyper=hyper, channels_last=False, **common)
        run_table(f"defenses, {model_name} {options or ''}, D = 10, 1x28x28 (targets: input-grad <= 3x, "
                  f"jacobian K=1 <= 3x, exact jacobian and cross-lipschitz <= 8x)", cases, repeats, steps, False, clock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=["gccs", "defenses", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: time.perf_counter; cpu: the process's CPU time (all threads)")
    parser.add_argument("--compare-plain", action="store_true",
                        help="also time each penalty with autograd's own formulas (forward_with_vjp(rewrite=False))")
    parser.add_argument("--compare-layout", action="store_true",
                        help="also time each loss with the weights in PyTorch's default (NCHW) layout; robench train "
                             "stores convolution weights channels-last on CPU (robench.models.memory_format)")
    parser.add_argument("--keep-malloc", action="store_true",
                        help="leave glibc's allocator as it is (robench.allocator, which train and sweep apply)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = "glibc default" if args.keep_malloc or not tune_cpu_allocator() else "heap reuse (robench.allocator)"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, allocator: {allocator}, batch {args.batch_size}, "
          f"median of {args.repeats} interleaved repeats x {args.steps} steps, {args.clock} clock; "
          f"spread: fastest-slowest repeat / the ce median")
    clock = CLOCKS[args.clock]
    if args.table in ("gccs", "all"):
        gccs_tables(args.batch_size, args.repeats, args.steps, clock)
    if args.table in ("defenses", "all"):
        defense_tables(args.batch_size, args.repeats, args.steps, args.compare_plain, clock, args.compare_layout)


if __name__ == "__main__":
    main()
