"""Training-step time of small-cnn with the ``gccs`` loss versus ``ce``, side by side.

One full SGD step (forward, loss, backward, gradient clipping where the loss uses it,
optimiser step) on a fixed random batch, for D = 10 (1x28x28, like Fashion-MNIST) and
D = 100 (3x32x32, like CIFAR-100). Every configuration runs in this one process, with
interleaved repeats, and the table reports the median step time and the ratio to ``ce``.

    python benchmarks/bench_train_step.py [--repeats 7] [--steps 20] [--batch-size 128] [--threads N]

Also timed: the loss call alone (forward + backward of the loss on a fixed z).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robench.losses import LOSSES, build_loss
from robench.models import build_model

CASES = [(10, 1, 28), (100, 3, 32)]


def make_step(loss_name: str, num_classes: int, channels: int, size: int, batch_size: int):
    torch.manual_seed(0)
    model = build_model("small-cnn", in_channels=channels, image_size=(size, size), num_classes=num_classes,
                        mean=(0.5,) * channels, std=(0.25,) * channels)
    loss_fn = build_loss(loss_name, num_classes)
    clip = LOSSES.get(loss_name).grad_clip
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-3)
    x = torch.rand(batch_size, channels, size, size)
    y = torch.randint(0, num_classes, (batch_size,))

    def step():
        loss = loss_fn(model(x), y)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"median of {args.repeats} repeats x {args.steps} steps")
    print(f"{'D':>4} {'input':>8} {'loss':>5} {'step ms':>9} {'x ce':>6} {'loss-only ms':>13}")
    for num_classes, channels, size in CASES:
        fns = {name: make_step(name, num_classes, channels, size, args.batch_size) for name in ("ce", "gccs")}
        times = {name: ([], []) for name in fns}
        for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
            for name, (step, loss_only) in fns.items():
                times[name][0].append(timed(step, args.steps))
                times[name][1].append(timed(loss_only, args.steps))
        base = statistics.median(times["ce"][0])
        for name, (step_times, loss_times) in times.items():
            med = statistics.median(step_times)
            print(f"{num_classes:>4} {f'{channels}x{size}x{size}':>8} {name:>5} {med * 1e3:>9.2f} {med / base:>6.3f} "
                  f"{statistics.median(loss_times) * 1e3:>13.3f}")


if __name__ == "__main__":
    main()
