"""Training-step time of every loss, as a multiple of the cross-entropy step, side by side.

One full SGD step (forward, objective, backward, gradient clipping where the loss uses it,
optimiser step) on a fixed random batch. All configurations of a table are built in this
one process and timed in interleaved repeats (so drifts in machine load hit all alike);
the table reports the median step time and its ratio to ``ce``.

    python benchmarks/bench_train_step.py [--table gccs|defenses|all] [--repeats 5] [--steps 5]

* ``gccs``: small-cnn with ``gccs`` vs ``ce`` for D = 10 (1x28x28) and D = 100 (3x32x32),
  plus the loss call alone (forward + backward of the loss on a fixed z).
* ``defenses``: small-cnn and resnet18 (width 0.25), 1x28x28, D = 10, for ``ce``, ``gccs``,
  ``jacobian`` (exact and K = 1 projection), ``input-grad`` and ``cross-lipschitz``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robench.allocator import tune_cpu_allocator
from robench.losses import LOSSES, build_loss
from robench.models import build_model


def make_step(loss_name: str, hyper: dict, model_name: str, options: dict, num_classes: int, channels: int,
              size: int, batch_size: int):
    torch.manual_seed(0)
    model = build_model(model_name, in_channels=channels, image_size=(size, size), num_classes=num_classes,
                        mean=(0.5,) * channels, std=(0.25,) * channels, options=options)
    loss_fn = build_loss(loss_name, num_classes, hyper)
    clip = LOSSES.get(loss_name).grad_clip
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-3)
    x = torch.rand(batch_size, channels, size, size)
    y = torch.randint(0, num_classes, (batch_size,))

    def step():
        loss, _ = loss_fn.objective(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()

    z = (torch.randn(batch_size, num_classes) * 5).requires_grad_()

    def loss_only():
        loss_fn(z, y).backward()

    return step, loss_only


def timed(fn, steps: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def run_table(title: str, cases: dict, repeats: int, steps: int, with_loss_only: bool) -> None:
    """``cases``: label -> make_step kwargs; the first label is the baseline (ratio 1)."""
    fns = {label: make_step(**kwargs) for label, kwargs in cases.items()}
    times: dict[str, list[float]] = {label: [] for label in fns}
    loss_times: dict[str, list[float]] = {label: [] for label in fns}
    for _ in range(repeats):
        for label, (step, loss_only) in fns.items():
            times[label].append(timed(step, steps))
            if with_loss_only:
                loss_times[label].append(timed(loss_only, steps))
    base = statistics.median(times[next(iter(fns))])
    print(f"\n{title}")
    header = f"{'configuration':<44} {'step ms':>9} {'x ce':>6}" + (f" {'loss-only ms':>13}" if with_loss_only else "")
    print(header)
    for label in fns:
        med = statistics.median(times[label])
        row = f"{label:<44} {med * 1e3:>9.2f} {med / base:>6.2f}"
        if with_loss_only:
            row += f" {statistics.median(loss_times[label]) * 1e3:>13.3f}"
        print(row)


def gccs_tables(batch_size: int, repeats: int, steps: int) -> None:
    for d, c, s in [(10, 1, 28), (100, 3, 32)]:
        common = dict(model_name="small-cnn", options={}, num_classes=d, channels=c, size=s, batch_size=batch_size)
        cases = {f"small-cnn D={d} {c}x{s}x{s} ce": dict(loss_name="ce", hyper={}, **common),
                 f"small-cnn D={d} {c}x{s}x{s} gccs": dict(loss_name="gccs", hyper={}, **common)}
        run_table(f"gccs vs ce, D = {d}", cases, repeats, steps, with_loss_only=True)


def defense_tables(batch_size: int, repeats: int, steps: int) -> None:
    losses = [("ce", {}), ("gccs", {}), ("jacobian", {}), ("jacobian", {"projections": 1}), ("input-grad", {}),
              ("cross-lipschitz", {})]
    for model_name, options in [("small-cnn", {}), ("resnet18", {"width": 0.25})]:
        common = dict(model_name=model_name, options=options, num_classes=10, channels=1, size=28,
                      batch_size=batch_size)
        cases = {}
        for name, hyper in losses:
            label = f"{model_name}{' w0.25' if options else ''} {name}" + (" K=1" if hyper else " (exact)" *
                                                                          (name == "jacobian"))
            cases[label] = dict(loss_name=name, hyper=hyper, **common)
        run_table(f"defenses, {model_name} {options or ''}, D = 10, 1x28x28 (targets: input-grad <= 3x, "
                  f"jacobian K=1 <= 3x, exact jacobian and cross-lipschitz <= 13x)", cases, repeats, steps, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=["gccs", "defenses", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--keep-malloc", action="store_true",
                        help="leave glibc's allocator as it is (robench.allocator, which train and sweep apply)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = "glibc default" if args.keep_malloc or not tune_cpu_allocator() else "heap reuse (robench.allocator)"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, allocator: {allocator}, batch {args.batch_size}, "
          f"median of {args.repeats} interleaved repeats x {args.steps} steps")
    if args.table in ("gccs", "all"):
        gccs_tables(args.batch_size, args.repeats, args.steps)
    if args.table in ("defenses", "all"):
        defense_tables(args.batch_size, args.repeats, args.steps)


if __name__ == "__main__":
    main()
