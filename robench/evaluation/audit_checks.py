"""The seven checks of ``robench audit``: each states what it measured, its threshold and a verdict.

Thresholds (points = percentage points of accuracy on the audited subset):

1. ``monotone``: the largest rise of PGD accuracy between consecutive ε of an independent
   sweep: pass ≤ 0.5 (random-start noise), warn ≤ 2, fail above.
2. ``large-eps``: PGD accuracy at absolute ε = 0.5: pass ≤ chance + 5, warn ≤ chance + 15.
3. ``convergence``: the share of all images that the strong white-box attacks (PGD-100 × 5
   restarts, APGD-CE, APGD-T, FAB-T) break among those every cheap attack left: pass ≤ 2, warn ≤ 4.
4. ``attack-loss``: the largest gain of a margin or DLR loss over CE at the same budget
   (PGD-5, TGSM-5, APGD): pass ≤ 2, warn ≤ 4.
5. ``black-box``: the share of all images that Square (then transfer) breaks among those every
   white-box attack left — AutoAttack's flag of gradient masking: pass ≤ 1, warn ≤ 3.
6. ``zero-gradient``: images whose input gradient of the CE attack loss is all zero or
   non-finite: pass < 1 %, warn < 5 %.
7. ``deterministic``: two eval-mode forward passes: pass if the logits agree to 1e-5 (relative),
   warn if only the predictions agree, fail otherwise.

**Noise.** Every measured value carries its 95 % interval over the n audited images (``interval``,
in the value's unit): Wilson for a share of images (checks 2, 3, 5, 6), Newcombe's paired interval of
a difference of two accuracies on the same images, from their per-image records, for checks 1 and 4
(:func:`difference_interval`, :mod:`robench.proportions`). A verdict the noise could overturn is
``warn``: for the checks that compare two accuracies (1, 3, 4, 5), ``pass`` needs the interval's top
within the warn threshold and ``fail`` its bottom above the pass threshold. Checks 2 and 6 grade a
level measured on the audited images themselves, by its value, and show its interval. At n ≤ 100
images the detail says how many points one image is.

A check whose attacks could not run (e.g. DLR with fewer than three classes, transfer without a
cross-entropy checkpoint) is ``skipped`` with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from robench.proportions import paired_newcombe, small_sample_note, wilson

STATUSES = ("pass", "warn", "fail", "skipped")


@dataclass
class Check:
    id: int
    name: str
    question: str
    measured: float | None
    measured_text: str
    threshold: str
    status: str
    detail: str = ""
    interval: list[float] | None = None
    """The 95 % interval of ``measured`` over the audited images, [low, high] in its unit (points or %)."""

    def to_dict(self) -> dict:
        return asdict(self)


def grade(value: float, passing: float, warning: float) -> str:
    return "pass" if value <= passing + 1e-9 else "warn" if value <= warning + 1e-9 else "fail"


def pts(accuracy_gap: float) -> float:
    return round(100.0 * accuracy_gap, 2)


def noisy_grade(value: float, interval: tuple[float, float], passing: float, warning: float) -> str:
    """:func:`grade`, with a ``pass`` whose interval reaches above ``warning`` or a ``fail`` whose interval
    reaches down to ``passing`` turned into ``warn``: the images can't tell those verdicts apart."""
    status = grade(value, passing, warning)
    low, high = interval
    if (status == "pass" and high > warning + 1e-9) or (status == "fail" and low <= passing + 1e-9):
        return "warn"
    return status


def share_interval(share: float, n: int) -> list[float]:
    """The Wilson interval, in points, of a share of ``n`` images (a fraction)."""
    low, high = wilson(round(share * n), n)
    return [pts(low), pts(high)]


def difference_interval(first: torch.Tensor, second: torch.Tensor) -> list[float]:
    """The paired 95 % interval, in points, of accuracy(``first``) − accuracy(``second``): the per-image
    correct flags of two attacks on the same images.

    Two attacks on the same images are paired: what varies is the images one breaks and the other does not,
    and both kinds occur (other random starts, another loss). Newcombe's paired interval
    (:func:`robench.proportions.paired_newcombe`) counts both from the 2 × 2 table of the two records; the
    interval for independent samples (:func:`robench.proportions.newcombe`) would be ±4 pts wide at 40 % on
    1,000 images, wider than the thresholds, and no check could ever pass."""
    first, second = first.bool().flatten(), second.bool().flatten()
    if first.shape != second.shape or first.numel() == 0:
        raise ValueError(f"difference_interval: two records of the same images, got {first.numel()} and "
                         f"{second.numel()} flags")
    both, first_only = int((first & second).sum()), int((first & ~second).sum())
    second_only = int((~first & second).sum())
    low, high = paired_newcombe(both, first_only, second_only, first.numel() - both - first_only - second_only)
    return [pts(low), pts(high)]


def accuracy(correct: torch.Tensor) -> float:
    return float(correct.float().mean())


def with_noise(detail: str, interval: list[float], n: int, unit: str = "pts") -> str:
    """``detail`` with the interval and, on a small sample, its warning."""
    parts = [detail, f"95 % interval [{interval[0]:.1f}, {interval[1]:.1f}] {unit} over {n} images",
             small_sample_note(n)]
    return "; ".join(p for p in parts if p)


def check_monotone(correct_by_eps: dict[float, torch.Tensor]) -> Check:
    """``correct_by_eps``: PGD's per-image correct flags at each ε of an independent sweep, on the same images."""
    q = "PGD accuracy falls monotonically with eps (independent sweep)"
    eps = sorted(correct_by_eps)
    acc = {e: accuracy(correct_by_eps[e]) for e in eps}
    rises = [(pts(acc[b] - acc[a]), a, b) for a, b in zip(eps, eps[1:])]
    if not rises:
        return Check(1, "monotone", q, None, "n/a", "rise <= 0.5 pts", "skipped", "needs at least two eps")
    rise, a, b = max(rises)
    n = len(correct_by_eps[a])
    interval = difference_interval(correct_by_eps[b], correct_by_eps[a])
    detail = (f"largest rise between eps {a:g} and {b:g}" if rise > 0 else
              f"no rise over {len(eps)} eps (the smallest fall, eps {a:g} to {b:g}, shown)")
    return Check(1, "monotone", q, rise, f"{rise:+.1f} pts", "rise <= 0.5 pts (warn <= 2)",
                 noisy_grade(rise, interval, 0.5, 2.0), with_noise(detail, interval, n), interval)


def check_large_eps(accuracy: float, num_classes: int, eps: float, n: int) -> Check:
    chance = 100.0 / num_classes
    value = pts(accuracy)
    interval = share_interval(accuracy, n)
    return Check(2, "large-eps", f"PGD at absolute eps = {eps:g} leaves at most chance + 5 pts", value,
                 f"{value:.1f} %", f"<= {chance + 5:.1f} % (chance {chance:.1f} + 5; warn <= +15)",
                 grade(value, chance + 5, chance + 15),
                 with_noise("above it the attack cannot reach images it should", interval, n, "%"), interval)


def check_convergence(weak: float, strong: float, weak_name: str, strong_name: str, n: int) -> Check:
    """``weak``: the accuracy ``weak_name`` left; ``strong``: what still stands after ``strong_name`` ran on those.

    The images broken are a subset of the ``n``: their share has a Wilson interval."""
    drop = pts(weak - strong)
    interval = share_interval(weak - strong, n)
    return Check(3, "convergence", f"{strong_name} break at most 2 pts of all images among those {weak_name} left",
                 drop, f"{drop:+.1f} pts", "drop <= 2 pts (warn <= 4)", noisy_grade(drop, interval, 2.0, 4.0),
                 with_noise(f"{weak_name} leaves {100 * weak:.1f} %, then {strong_name} {100 * strong:.1f} %",
                            interval, n), interval)


def check_attack_loss(pairs: list[tuple[str, torch.Tensor, str, torch.Tensor]]) -> Check:
    """``pairs``: (CE attack name, its per-image correct flags, adaptive attack name, its flags) at the same
    budget, on the same images."""
    q = "margin/DLR losses do not beat CE by more than 2 pts"
    if not pairs:
        return Check(4, "attack-loss", q, None, "n/a", "gain <= 2 pts", "skipped", "no margin/DLR attack ran")
    scored = [(pts(accuracy(c) - accuracy(a)), cn, accuracy(c), an, accuracy(a), i)
              for i, (cn, c, an, a) in enumerate(pairs)]
    gain, ce_name, ce_acc, name, acc, i = max(scored)  # ties: as by name, then index (no tensor compared)
    detail = f"{name} {100 * acc:.1f} % vs {ce_name} {100 * ce_acc:.1f} % (largest of {len(pairs)} pairs)"
    correct = pairs[i][3]
    interval = difference_interval(pairs[i][1], correct)
    return Check(4, "attack-loss", q, gain, f"{gain:+.1f} pts", "gain <= 2 pts (warn <= 4)",
                 noisy_grade(gain, interval, 2.0, 4.0), with_noise(detail, interval, len(correct)), interval)


def check_black_box(black: list[tuple[str, float, float]], n: int, skipped: str = "") -> Check:
    """``black``: (attack, accuracy standing before it, standing after it), each run on the images still standing."""
    q = "black-box Square and transfer break at most 1 pt of all images among those every white-box attack left"
    if not black:
        return Check(5, "black-box", q, None, "n/a", "gain <= 1 pt", "skipped", skipped or "no black-box attack ran")
    gain, name, before, after = max((pts(b - a), n, b, a) for n, b, a in black)
    detail = (f"{name} takes the accuracy from {100 * before:.1f} % to {100 * after:.1f} %"
              + (f"; {skipped}" if skipped else ""))
    interval = share_interval(before - after, n)
    return Check(5, "black-box", q, gain, f"{gain:+.1f} pts", "gain <= 1 pt (warn <= 3)",
                 noisy_grade(gain, interval, 1.0, 3.0), with_noise(detail, interval, n), interval)


def zero_gradient_fraction(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                           device: torch.device) -> tuple[float, int, int]:
    """(fraction, zero count, non-finite count) of images whose ∇ₓ CE(z(x), y) is all zero or non-finite."""
    zero = nonfinite = 0
    for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
        xb = xb.to(device).requires_grad_(True)
        loss = F.cross_entropy(model(xb), yb.to(device), reduction="sum")
        (grad,) = torch.autograd.grad(loss, xb)
        flat = grad.flatten(1)
        bad = ~torch.isfinite(flat).all(1)
        nonfinite += int(bad.sum())
        zero += int(((flat == 0).all(1) & ~bad).sum())
    return (zero + nonfinite) / len(y), zero, nonfinite


def check_zero_gradient(fraction: float, zero: int, nonfinite: int, n: int) -> Check:
    value = round(100.0 * fraction, 2)
    interval = share_interval(fraction, n)
    status = "pass" if value < 1 else "warn" if value < 5 else "fail"
    return Check(6, "zero-gradient", "under 1 % of images have a zero or non-finite input gradient of the CE loss",
                 value, f"{value:.1f} %", "< 1 % (warn < 5 %)", status,
                 with_noise(f"{zero} zero and {nonfinite} non-finite of {n} images (AutoAttack's check)", interval,
                            n, "%"), interval)


@torch.no_grad()
def check_deterministic(model: torch.nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> Check:
    diff, scale, flips = 0.0, 0.0, 0
    for xb in x.split(batch_size):
        xb = xb.to(device)
        a, b = model(xb), model(xb)
        diff = max(diff, float((a - b).abs().max()))
        scale = max(scale, float(a.abs().max()))
        flips += int((a.argmax(1) != b.argmax(1)).sum())
    relative = diff / (1.0 + scale)
    status = "pass" if relative <= 1e-5 else "warn" if flips == 0 else "fail"
    return Check(7, "deterministic", "outputs are deterministic across two forward passes (else use EOT)",
                 relative, f"{relative:.1e}", "max |dz| / (1 + max |z|) <= 1e-5", status,
                 f"{flips} of {len(x)} predictions changed")
