"""Attack speed: robench's native attacks against torchattacks and ART, side by side in one process.

    pip install torchattacks            # the peer; not a robench dependency
    python benchmarks/attacks.py [--checkpoint runs/bench-evaluation/ce]
                                 [--repeats 3] [--jsma-repeats 3] [--threads N]

Tables (median seconds over interleaved repeats, ratios against the peers):

1. PGD-5 and targeted I-FGSM-5 (TGSM) on small-cnn (batch 128) and resnet18 (batch 32),
   1x28x28, absolute ε = 0.1: a plain torch loop of 5 forward+backward passes (the floor),
   torchattacks (PGD, BIM targeted), ART (ProjectedGradientDescent, BasicIterativeMethod) and
   robench native.
2. JSMA on 100 Fashion-MNIST test images of the checkpoint (relative ε = 0.1, 200 steps):
   seconds per image and target success of robench native and of ART's SaliencyMapMethod at
   its fastest batch size (every method warmed up, median of interleaved repeats).
3. A cumulative sweep over 10 ε values (PGD-5) against a single-ε run on the same images.

The checkpoint defaults to the Fashion-MNIST cross-entropy run that ``benchmarks/evaluation.py``
trains (or ``robench train --dataset fashion-mnist --model small-cnn --loss ce --epochs 3
--train-subset 20000 --out runs/bench-evaluation/ce``); any small-cnn Fashion-MNIST run directory works.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from robench import load_checkpoint
from robench.allocator import tune_cpu_allocator
from robench.attacks import build_attack, target_labels
from robench.data import load_dataset, stratified_subset
from robench.evaluation.epsilon import absolute_radii
from robench.evaluation.sweep import SweepSpec, run_sweep
from robench.models import build_model

EPS = 0.1


def floor_loop(model, x, y, eps, targeted):
    """Five plain forward+backward sign steps: the cost floor of PGD-5 / I-FGSM-5."""
    labels = target_labels(y, 10) if targeted else y
    alpha = -eps / 5 if targeted else 2.5 * eps / 5  # TGSM descends CE(z, t); PGD ascends CE(z, y)
    x_adv = x.clone()
    for _ in range(5):
        x_adv.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x_adv), labels), x_adv)
        x_adv = torch.min(torch.max(x_adv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


def peers(model, targeted: bool):
    import torchattacks
    from art.attacks.evasion import BasicIterativeMethod, ProjectedGradientDescent

    from robench.attacks.art import art_classifier

    if targeted:
        ta = torchattacks.BIM(model, eps=EPS, alpha=EPS / 5, steps=5)
        ta.set_mode_targeted_by_function(target_map_function=lambda images, labels: (labels + 1) % 10)
    else:
        ta = torchattacks.PGD(model, eps=EPS, alpha=2.5 * EPS / 5, steps=5, random_start=True)

    def art_run(x, y):
        clf = art_classifier(model, x)
        if targeted:
            attack = BasicIterativeMethod(clf, eps=EPS, eps_step=EPS / 5, max_iter=5, targeted=True,
                                          batch_size=len(x), verbose=False)
            return attack.generate(x.numpy(), y=target_labels(y, 10).numpy())
        attack = ProjectedGradientDescent(clf, eps=EPS, eps_step=2.5 * EPS / 5, max_iter=5, num_random_init=1,
                                          batch_size=len(x), verbose=False)
        return attack.generate(x.numpy(), y=y.numpy())

    native = build_attack("tgsm" if targeted else "pgd", "native")
    eps = torch.full((1,), EPS)
    return {
        "floor (plain loop)": lambda x, y: floor_loop(model, x, y, EPS, targeted),
        "torchattacks": lambda x, y: ta(x, y),
        "ART": art_run,
        "robench native": lambda x, y: native(model, x, y, eps.expand(len(x))),
    }


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def speed_table(repeats: int, checkpoint_model) -> None:
    print("\n1. PGD-5 / TGSM-5, absolute eps 0.1, median seconds per batch")
    print(f"{'model':<22} {'attack':<6} {'method':<20} {'seconds':>9} {'x floor':>8} {'x torchattacks':>15} {'x ART':>7}")
    resnet = build_model("resnet18", in_channels=1, image_size=(28, 28), num_classes=10, mean=(0.286,),
                         std=(0.353,)).eval()
    for label, model, batch in (("small-cnn (FMNIST ce)", checkpoint_model, 128), ("resnet18 (random)", resnet, 32)):
        x, y = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
        for targeted in (False, True):
            fns = peers(model, targeted)
            for fn in fns.values():
                fn(x, y)  # warm-up
            times = {k: [] for k in fns}
            for _ in range(repeats):
                for k, fn in fns.items():
                    times[k].append(timed(fn, x, y))
            med = {k: statistics.median(v) for k, v in times.items()}
            for k, t in med.items():
                print(f"{label:<22} {'tgsm' if targeted else 'pgd':<6} {k:<20} {t:>9.3f} {t / med['floor (plain loop)']:>8.2f} "
                      f"{t / med['torchattacks']:>15.2f} {t / med['ART']:>7.2f}")


def jsma_table(model, x, y, repeats: int) -> None:
    print(f"\n2. JSMA on {len(x)} Fashion-MNIST test images, relative eps 0.1, 200 steps "
          "(ART through robench's adapter: theta = eps, gamma = 200/784, output projected onto the eps-ball); "
          f"median of {repeats} interleaved repeat(s), each method warmed up on 4 images first")
    eps = absolute_radii(x, 0.1, "relative")
    targets = target_labels(y, 10)
    methods = [("robench native (batched)", "native", 128),
               ("ART SaliencyMapMethod batch 1", "art", 1),
               ("ART SaliencyMapMethod batch 10", "art", 10),
               ("ART SaliencyMapMethod batch 100", "art", 100)]
    attacks = {name: build_attack("jsma", backend, batch_size=batch_size if backend == "art" else None)
               for name, backend, batch_size in methods}
    for attack in attacks.values():
        attack(model, x[:4], y[:4], eps[:4])
    seconds = {name: [] for name in attacks}
    adversarial = {}
    for _ in range(repeats):
        for name, attack in attacks.items():
            t0 = time.perf_counter()
            adversarial[name] = attack(model, x, y, eps)
            seconds[name].append(time.perf_counter() - t0)
    median = {name: statistics.median(times) for name, times in seconds.items()}
    fastest_art = min(t for name, t in median.items() if name.startswith("ART"))
    print(f"{'method':<34} {'s/image':>8} {'target success':>15} {'accuracy':>9} {'ART fastest / this':>19}")
    for name, t in median.items():
        with torch.no_grad():
            pred = model(adversarial[name]).argmax(1)
        print(f"{name:<34} {t / len(x):>8.4f} {(pred == targets).float().mean().item():>15.2f} "
              f"{(pred == y).float().mean().item():>9.2f} {fastest_art / t:>19.2f}")


def sweep_table(checkpoint: str) -> None:
    print("\n3. Cumulative sweep over 10 eps values vs one eps (PGD-5, 1000 test images, relative eps)")
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(checkpoints=(checkpoint,), attacks=("pgd",), backends=("native",), n_samples=1000)
        t0 = time.perf_counter()
        run_sweep(SweepSpec(eps_grid=(0.05,), out=f"{tmp}/one.csv", **common), device="cpu", progress=False)
        one = time.perf_counter() - t0
        grid = tuple(round(0.01 * i, 2) for i in range(1, 11))
        t0 = time.perf_counter()
        run_sweep(SweepSpec(eps_grid=grid, out=f"{tmp}/ten.csv", **common), device="cpu", progress=False)
        ten = time.perf_counter() - t0
    print(f"single eps: {one:.2f} s; cumulative sweep of 10 eps: {ten:.2f} s; ratio {ten / one:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/bench-evaluation/ce")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jsma-repeats", type=int, default=3, help="repeats of the JSMA table (ART: ~100 s each)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip", nargs="*", default=[], choices=["speed", "jsma", "sweep"])
    parser.add_argument("--keep-malloc", action="store_true",
                        help="leave glibc's allocator as it is (robench.allocator, which train and sweep apply)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = "glibc default" if args.keep_malloc or not tune_cpu_allocator() else "heap reuse (robench.allocator)"
    if not Path(args.checkpoint, "run.json").exists():
        raise SystemExit(f"no checkpoint at {args.checkpoint}: run `python benchmarks/evaluation.py` (which "
                         "trains it) or pass --checkpoint RUN_DIR (a small-cnn Fashion-MNIST run)")
    model, meta = load_checkpoint(args.checkpoint)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, allocator: {allocator}, "
          f"checkpoint {args.checkpoint} "
          f"({meta['loss']}, test accuracy {meta['test_accuracy']:.4f})")
    if "speed" not in args.skip:
        speed_table(args.repeats, model)
    if "jsma" not in args.skip:
        data = load_dataset(meta["dataset"])
        idx = stratified_subset(data.y_test, 100, 0)
        jsma_table(model, data.x_test[idx], data.y_test[idx], args.jsma_repeats)
    if "sweep" not in args.skip:
        sweep_table(args.checkpoint)


if __name__ == "__main__":
    main()
