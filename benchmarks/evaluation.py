"""Evaluation cost and strength: robench's native attacks and its audit against torchattacks and ART.

    pip install torchattacks            # the peer; not a robench dependency
    python benchmarks/evaluation.py [--runs runs/bench-evaluation] [--checkpoint RUN_DIR ...]
                                    [--n 1000] [--eps 0.1] [--eps-l2 1.5] [--batch-size 1000]
                                    [--device auto|cpu|cuda] [--threads N] [--repeats 1] [--quick]

Two Fashion-MNIST small-cnn checkpoints, ``ce`` and ``gccs`` (3 epochs on 20,000 training images,
seed 0, trained into ``--runs`` if absent and reused after), or the ``--checkpoint`` run directories.
On the same ``--n`` seeded, class-stratified test images (``stratified_subset(y_test, n, 0)``), at
absolute L∞ ε = ``--eps`` and L2 ε = ``--eps-l2``, every attack is called in batches of
``--batch-size`` after ``torch.manual_seed(0)``, and timed (wall seconds, whole image set):

1. per checkpoint and norm: robench native (``build_attack``) against its torchattacks counterpart with
   the same settings, and for L∞ ART through robench's adapters: APGD-CE, APGD-DLR, APGD-T, FAB-T,
   Square (1,000 and 5,000 queries) and the AutoAttack ensemble. torchattacks' ``AutoAttack(version=
   "standard")`` builds its APGD, APGD-T and FAB parts with torchattacks' default of 10 iterations,
   not AutoAttack's 100: it is timed as shipped and again with its parts set to 100 iterations
   (the like-for-like row, ``autoattack-100``, reusing the native ensemble's measurement).
   Every method runs on the model ``load_checkpoint`` returns — on CPU with its convolution weights
   channels-last (:mod:`robench.models.memory_format`), which speeds up robench's attacks and the peers'
   alike. For reference, L∞ ``autoattack-plain`` times torchattacks' standard AutoAttack once more on a
   copy of the model in PyTorch's default layout, as a model wired up by hand has it.
2. per checkpoint: the whole ``robench audit`` (``run_audit``, absolute ε grid 0, ε/2, ε, on the same
   images) against torchattacks' standard AutoAttack L∞: seconds and worst-case / robust accuracy,
   with the audit's own per-attack seconds from its CSV; then the audit once more at the budgets of
   torchattacks' AutoAttack as shipped (``PEER_BUDGETS``: APGD-CE, APGD-T, FAB-T and the strong PGD at 10
   iterations, Square-5,000), the like-for-like comparison with that row.

Then the issue's targets, each met or not: the audit takes no more time than torchattacks'
standard AutoAttack and its worst case is no higher; each native attack is at least as strong as
its torchattacks counterpart (within 1 point) and no slower; native Square is at least 5x faster
than ART's SquareAttack at equal queries.

Every method is warmed up on 2 images first; with ``--repeats R`` the methods of a row run in
interleaved repeats (the order rotating) and the table gives the median seconds. Accuracy counts an
image robust when the model still classifies its adversarial example correctly (images misclassified
to begin with count as broken); every output is checked to lie in [0, 1] and in the ε-ball.
Benchmarks are not tests: nothing here asserts; a target not met is reported, not raised.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from robench import load_checkpoint
from robench.allocator import tune_cpu_allocator
from robench.attacks import build_attack
from robench.norms import distance
from robench.data import load_dataset, stratified_subset
from robench.devices import DEVICE_CHOICES, resolve_device
from robench.evaluation.audit import AuditConfig, run_audit
from robench.evaluation.sweep import images_sha256
from robench.results import read_attack_rows
from robench.training.config import TrainConfig
from robench.training.loop import train

LOSSES = ("ce", "gccs")
MISSING = "—"


# ----------------------------------------------------------------------------------------------- setup


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    """The 1, 5 and 15 minute load averages: other processes on the machine skew every time measured here."""
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "?"


def get_checkpoints(args, device: torch.device) -> list[str]:
    """The ``--checkpoint`` directories, else ``ce`` and ``gccs`` under ``--runs`` (trained there if absent)."""
    if args.checkpoint:
        return list(args.checkpoint)
    paths = []
    for loss in LOSSES:
        out = Path(args.runs, loss)
        config = TrainConfig(dataset="fashion-mnist", model="small-cnn", loss=loss, out=str(out), epochs=3,
                             train_subset=20000, seed=0)
        t0 = time.perf_counter()
        meta = train(config, device=str(device), resume=True, progress=False)
        spent = time.perf_counter() - t0
        how = "reused" if spent < 5 else f"trained in {spent:.0f} s"
        print(f"checkpoint {out}: {loss}, test accuracy {meta['test_accuracy']:.4f} ({how})", flush=True)
        paths.append(str(out))
    return paths


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------- measuring


@dataclass
class Result:
    accuracy: float
    seconds: float
    all_seconds: list[float] = field(default_factory=list)
    out_of_ball: int = 0


Run = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(x, y, eps) of one batch -> adversarial images."""


@dataclass
class Row:
    """One attack configuration: a factory per method (None where the method has no such attack)."""

    label: str
    native: Callable[[], Run] | None = None
    torchattacks: Callable[[], Run] | None = None
    art: Callable[[], Run] | None = None
    native_from: str | None = None   # reuse the native measurement of this row (same attack, not rerun)
    note: str = ""


def robust_accuracy(model, x_adv: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x_adv), batch_size):
            correct += int((model(x_adv[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(y)


def out_of_ball(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> int:
    """Images whose adversarial example leaves [0, 1] or the ε-ball (float tolerance)."""
    tolerance = 1e-5 if norm == "Linf" else 1e-4 * eps
    far = distance(x_adv, x, norm) > eps + tolerance
    box = (x_adv.flatten(1) < -1e-6).any(1) | (x_adv.flatten(1) > 1 + 1e-6).any(1)
    return int((far | box).sum())


def call_batched(run: Run, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([run(x[i:i + batch_size], y[i:i + batch_size], eps[i:i + batch_size])
                      for i in range(0, len(x), batch_size)])


def measure_row(row: Row, model, x, y, eps: float, norm: str, batch_size: int, repeats: int,
                device: torch.device, verbose: bool) -> dict[str, Result]:
    """Warm up each method on 2 images, then time them in interleaved repeats on every image."""
    runs = {name: factory() for name, factory in (("robench", row.native), ("torchattacks", row.torchattacks),
                                                   ("ART", row.art)) if factory is not None}
    eps_t = torch.full((len(x),), eps, device=device, dtype=x.dtype)
    for run in runs.values():
        torch.manual_seed(0)
        run(x[:2], y[:2], eps_t[:2])
    times: dict[str, list[float]] = {name: [] for name in runs}
    adversarial: dict[str, torch.Tensor] = {}
    names = list(runs)
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            torch.manual_seed(0)
            sync(device)
            t0 = time.perf_counter()
            adversarial[name] = call_batched(runs[name], x, y, eps_t, batch_size)
            sync(device)
            times[name].append(time.perf_counter() - t0)
            if verbose:
                print(f"    {row.label:<16} {norm:<4} {name:<12} {times[name][-1]:8.1f} s", flush=True)
    results = {}
    for name in runs:
        results[name] = Result(robust_accuracy(model, adversarial[name], y, batch_size),
                               statistics.median(times[name]), times[name],
                               out_of_ball(adversarial[name], x, eps, norm))
    return results


# ----------------------------------------------------------------------------------------------- the attacks


def attack_rows(model, norm: str, eps: float, art_queries: tuple[int, ...], quick: bool,
                plain_model=None) -> list[Row]:
    """The rows for ``model``; ``plain_model``, the same model in PyTorch's default memory layout, for the
    ``autoattack-plain`` reference row (L∞)."""
    import torchattacks

    def native(name: str, **settings) -> Callable[[], Run]:
        def make() -> Run:
            attack = build_attack(name, "native", norm=norm, **settings)
            return lambda xb, yb, eb: attack(model, xb, yb, eb)
        return make

    def art(name: str, **settings) -> Callable[[], Run] | None:
        if norm != "Linf":
            return None

        def make() -> Run:
            attack = build_attack(name, "art", **settings)
            return lambda xb, yb, eb: attack(model, xb, yb, eb)
        return make

    def peer(cls: str, **settings) -> Callable[[], Run]:
        def make() -> Run:
            attack = getattr(torchattacks, cls)(model, norm=norm, eps=eps, **settings)
            return lambda xb, yb, eb: attack(xb, yb)
        return make

    def peer_autoattack(steps: int | None, on=None) -> Callable[[], Run]:
        def make() -> Run:
            attack = torchattacks.AutoAttack(on if on is not None else model, norm=norm, eps=eps, version="standard",
                                             n_classes=10, seed=0)
            if steps is not None:  # torchattacks builds APGD, APGD-T and FAB with its default of 10 iterations
                for part in attack._autoattack.attacks:
                    if hasattr(part, "steps"):
                        part.steps = steps
            return lambda xb, yb, eb: attack(xb, yb)
        return make

    rows = [
        Row("apgd-ce", native("apgd", steps=100, loss="ce"), peer("APGD", loss="ce", steps=100, n_restarts=1),
            art("apgd", steps=100, loss="ce")),
        Row("apgd-dlr", native("apgd", steps=100, loss="dlr"), peer("APGD", loss="dlr", steps=100, n_restarts=1)),
        Row("apgd-t", native("apgd-t", steps=100), peer("APGDT", n_classes=10, steps=100, n_restarts=1)),
        Row("fab-t", native("fab", steps=100), peer("FAB", multi_targeted=True, n_classes=10, steps=100,
                                                     n_restarts=1)),
        Row("square-1000", native("square", steps=1000), peer("Square", n_queries=1000, n_restarts=1),
            art("square", steps=1000) if 1000 in art_queries else None,
            note="L-inf only: the budget of ART's default, for the comparison with ART"),
        Row("square-5000", native("square", steps=5000), peer("Square", n_queries=5000, n_restarts=1),
            art("square", steps=5000) if 5000 in art_queries else None),
        Row("autoattack", native("autoattack"), peer_autoattack(None),
            note="torchattacks as shipped: APGD, APGD-T, FAB-T at 10 iterations"),
        Row("autoattack-100", None, peer_autoattack(100), native_from="autoattack",
            note="torchattacks' parts set to 100 iterations; robench: the autoattack row (not rerun)"),
    ]
    if plain_model is not None and norm == "Linf":
        rows.append(Row("autoattack-plain", None, peer_autoattack(None, plain_model), native_from="autoattack",
                        note="torchattacks as shipped on the model in PyTorch's default layout (NCHW weights), as "
                             "wired up by hand; robench: the autoattack row (not rerun)"))
    if norm != "Linf":
        rows = [row for row in rows if row.label != "square-1000"]
    if quick:
        keep = {"apgd-ce", "apgd-t", "square-1000", "autoattack", "autoattack-plain"}
        rows = [row for row in rows if row.label in keep]
    return rows


# ----------------------------------------------------------------------------------------------- printing


def fmt_acc(r: Result | None) -> str:
    return MISSING if r is None else f"{100 * r.accuracy:.1f}"


def fmt_s(r: Result | None) -> str:
    return MISSING if r is None else f"{r.seconds:.1f}"


def ratio(peer: Result | None, base: Result | None) -> str:
    return MISSING if peer is None or base is None or base.seconds <= 0 else f"{peer.seconds / base.seconds:.2f}"


def print_attack_table(title: str, rows: list[Row], results: dict[str, dict[str, Result]]) -> None:
    print(f"\n{title}")
    print(f"{'attack':<16} {'robench acc':>11} {'robench s':>10} {'torchattacks acc':>16} {'torchattacks s':>14} "
          f"{'ART acc':>8} {'ART s':>8} {'ta s / rb s':>11} {'ART s / rb s':>12}")
    for row in rows:
        res = results[row.label]
        nat, ta, art = res.get("robench"), res.get("torchattacks"), res.get("ART")
        print(f"{row.label:<16} {fmt_acc(nat):>11} {fmt_s(nat):>10} {fmt_acc(ta):>16} {fmt_s(ta):>14} "
              f"{fmt_acc(art):>8} {fmt_s(art):>8} {ratio(ta, nat):>11} {ratio(art, nat):>12}")
    for row in rows:
        if row.note:
            print(f"  {row.label}: {row.note}")
    for row in rows:
        for name, r in results[row.label].items():
            if r.out_of_ball:
                print(f"  WARNING {row.label} {name}: {r.out_of_ball} adversarial images outside [0, 1] or the eps-ball")
            if len(r.all_seconds) > 1:
                print(f"  {row.label} {name}: seconds of the repeats {', '.join(f'{t:.1f}' for t in r.all_seconds)}")


def role_seconds(csv: Path) -> list[tuple[str, int, float]]:
    """(attack label, rows, seconds) of an audit's CSV, in the order they were written, worst rows left out."""
    totals: dict[str, list] = {}
    for row in read_attack_rows(csv):
        if row["attack"] == "worst":
            continue
        label = f"{row['attack']}-{row['attack_loss']}-{row['steps']}x{row['restarts'] or 1}"
        if row["eps_mode"] == "absolute" and float(row["eps"]) == 0.5:
            label += " (eps 0.5)"
        if row.get("given"):
            label += " (survivors)"
        entry = totals.setdefault(label, [0, 0.0])
        entry[0] += 1
        entry[1] += float(row["seconds"] or 0)
    return [(label, count, seconds) for label, (count, seconds) in totals.items()]


PEER_BUDGETS = {"strong_steps": 10, "strong_restarts": 1, "apgd_steps": 10, "square_queries": 5000}
"""The audit at the budgets of torchattacks' AutoAttack as shipped: APGD-CE, APGD-T and FAB-T at 10 iterations
(torchattacks' default), Square-5,000, and the strong PGD cut to one run of 10 (AutoAttack has none);
``robench audit --strong-steps 10 --strong-restarts 1 --apgd-steps 10``."""


def run_audit_once(checkpoint: str, n: int, eps: float, device: torch.device, x, y, **budgets) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-evaluation-audit-") as tmp:
        cfg = AuditConfig(eps_grid=(0.0, round(eps / 2, 6), eps), eps_mode="absolute", n_samples=n, **budgets)
        sync(device)
        t0 = time.perf_counter()
        report = run_audit(checkpoint, cfg, csv=Path(tmp, "audit.csv"), out_json=Path(tmp, "audit.json"),
                           device=str(device), progress=False)
        sync(device)
        seconds = time.perf_counter() - t0
        roles = role_seconds(Path(tmp, "audit.csv"))
    same_images = report["images_sha256"] == images_sha256(x.cpu(), y.cpu())
    return {"seconds": seconds, "report": report, "roles": roles, "same_images": same_images}


def print_audit_table(label: str, audit: dict, linf: dict[str, dict[str, Result]] | None) -> list[tuple]:
    report = audit["report"]
    print(f"\n{label}: robench audit vs torchattacks' standard AutoAttack, L-inf, absolute eps {report['eps_check']:g}, "
          f"{report['n']} images (audit images = benchmark images: {audit['same_images']})")
    print(f"{'method':<60} {'seconds':>9} {'accuracy':>9} {'s / ta AA s':>12}")
    ta = linf["autoattack"].get("torchattacks") if linf and "autoattack" in linf else None
    ta100 = linf["autoattack-100"].get("torchattacks") if linf and "autoattack-100" in linf else None
    plain = linf["autoattack-plain"].get("torchattacks") if linf and "autoattack-plain" in linf else None
    native = linf["autoattack"].get("robench") if linf and "autoattack" in linf else None
    worst = report["worst"]
    base = ta.seconds if ta else None
    lines = [("robench audit (whole battery), worst case", audit["seconds"], worst),
             ("torchattacks AutoAttack standard (as shipped, 10-it parts)", ta and ta.seconds, ta and ta.accuracy),
             ("torchattacks AutoAttack standard, parts at 100 it", ta100 and ta100.seconds, ta100 and ta100.accuracy),
             ("torchattacks AutoAttack standard, default-layout model", plain and plain.seconds,
              plain and plain.accuracy),
             ("robench native autoattack", native and native.seconds, native and native.accuracy)]
    for name, seconds, acc in lines:
        s = MISSING if seconds is None else f"{seconds:.1f}"
        a = MISSING if acc is None else f"{100 * acc:.1f}"
        r = MISSING if seconds is None or not base else f"{seconds / base:.2f}"
        print(f"{name:<60} {s:>9} {a:>9} {r:>12}")
    print(f"  audit verdict {report['verdict']}, clean {100 * (report['clean_accuracy'] or 0):.1f}, PGD-5 "
          f"{100 * report['protocol']['pgd']:.1f}; worst case over: {report['worst_source']}")
    print(f"  the audit's rows (seconds from its CSV; {audit['seconds'] - sum(s for _, _, s in audit['roles']):.1f} s "
          "outside them: loading, checks 6-7, store):")
    for name, count, seconds in audit["roles"]:
        print(f"    {name:<44} {count:>3} row(s) {seconds:>8.1f} s")
    for p in report["pruned"]:
        print(f"    pruned {p['attack']:<28} attacked {p['images_attacked']:>5}, broke {p['images_broken']:>4}, "
              f"standing after {100 * p['standing_after']:.1f}")
    return [(label, audit["seconds"], worst, ta)]


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "MET" if ok else "NOT MET"


def print_targets(all_results: dict, audits: dict, peer_audits: dict) -> None:
    print("\nTargets")
    print("1. robench audit takes no more time than torchattacks' standard AutoAttack (L-inf, as shipped)")
    for ckpt, audit in audits.items():
        ta = all_results[ckpt].get("Linf", {}).get("autoattack", {}).get("torchattacks")
        ok = None if ta is None else audit["seconds"] <= ta.seconds
        print(f"   {ckpt}: audit {audit['seconds']:.1f} s vs AutoAttack {fmt_s(ta)} s -> {verdict(ok)}")
        ta100 = all_results[ckpt].get("Linf", {}).get("autoattack-100", {}).get("torchattacks")
        if ta100 is not None:
            ok100 = audit["seconds"] <= ta100.seconds
            print(f"   {ckpt}: like for like, AutoAttack's budgets: audit {audit['seconds']:.1f} s vs AutoAttack with "
                  f"its parts at 100 iterations {ta100.seconds:.1f} s -> {verdict(ok100)}")
        peer = peer_audits.get(ckpt)
        if peer is not None and ta is not None:
            ok_peer = peer["seconds"] <= ta.seconds and peer["report"]["worst"] <= ta.accuracy + 1e-9
            print(f"   {ckpt}: like for like, torchattacks' budgets: audit {peer['seconds']:.1f} s, worst "
                  f"{100 * peer['report']['worst']:.1f} vs AutoAttack as shipped {ta.seconds:.1f} s, "
                  f"{fmt_acc(ta)} -> {verdict(ok_peer)} (no slower and no weaker)")
        plain = all_results[ckpt].get("Linf", {}).get("autoattack-plain", {}).get("torchattacks")
        if plain is not None:
            print(f"   {ckpt}: (for reference: vs AutoAttack as shipped on the model in PyTorch's default layout, "
                  f"{plain.seconds:.1f} s: {'no more' if audit['seconds'] <= plain.seconds else 'more'})")
    print("2. the audit's worst-case accuracy is no higher than AutoAttack's")
    for ckpt, audit in audits.items():
        ta = all_results[ckpt].get("Linf", {}).get("autoattack", {}).get("torchattacks")
        worst = audit["report"]["worst"]
        ok = None if ta is None or worst is None else worst <= ta.accuracy + 1e-9
        print(f"   {ckpt}: audit worst {100 * worst:.1f} vs AutoAttack {fmt_acc(ta)} -> {verdict(ok)}")
        ta100 = all_results[ckpt].get("Linf", {}).get("autoattack-100", {}).get("torchattacks")
        if ta100 is not None:
            print(f"   {ckpt}: (for reference: vs AutoAttack with its parts at 100 iterations, {fmt_acc(ta100)}: "
                  f"{'no higher' if worst <= ta100.accuracy + 1e-9 else 'higher'})")
    print("3. each native attack at least as strong as its torchattacks counterpart (within 1 point) and no slower")
    for ckpt, by_norm in all_results.items():
        for norm, rows in by_norm.items():
            for label, res in rows.items():
                nat, ta = res.get("robench"), res.get("torchattacks")
                if nat is None or ta is None:
                    continue
                strong = nat.accuracy <= ta.accuracy + 0.01 + 1e-9
                fast = nat.seconds <= ta.seconds
                print(f"   {ckpt} {norm:<4} {label:<16} acc {fmt_acc(nat):>5} vs {fmt_acc(ta):>5} "
                      f"({'as strong' if strong else 'WEAKER'}), {fmt_s(nat):>7} s vs {fmt_s(ta):>7} s "
                      f"({'no slower' if fast else 'SLOWER'}) -> {verdict(strong and fast)}")
    print("4. native Square at least 5x faster than ART's SquareAttack at equal queries (L-inf)")
    for ckpt, by_norm in all_results.items():
        for label, res in by_norm.get("Linf", {}).items():
            nat, art = res.get("robench"), res.get("ART")
            if label.startswith("square") and nat is not None and art is not None:
                speedup = art.seconds / nat.seconds
                print(f"   {ckpt} {label}: ART {art.seconds:.1f} s / native {nat.seconds:.1f} s = {speedup:.2f}x "
                      f"(acc {fmt_acc(nat)} vs ART {fmt_acc(art)}) -> {verdict(speedup >= 5)}")


# ----------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="runs/bench-evaluation", help="cache folder of the ce and gccs checkpoints")
    parser.add_argument("--checkpoint", action="append", default=[], help="a run directory (repeatable); "
                        "default: ce and gccs under --runs")
    parser.add_argument("--n", type=int, default=None, help="test images (default 1000, --quick 200)")
    parser.add_argument("--eps", type=float, default=0.1, help="absolute L-inf radius")
    parser.add_argument("--eps-l2", type=float, default=1.5, help="absolute L2 radius")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats per attack row (median)")
    parser.add_argument("--art-square-queries", default=None,
                        help="comma list of ART SquareAttack budgets (default 1000,5000; --quick 1000)")
    parser.add_argument("--norms", default="Linf,L2")
    parser.add_argument("--only", default=None, help="comma list of attack rows to run (default all)")
    parser.add_argument("--skip-audit", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 200 images, APGD-CE, APGD-T, Square-1000 (ART 1000), AutoAttack, audit")
    parser.add_argument("--verbose", action="store_true", help="print every timing as it is taken")
    parser.add_argument("--keep-malloc", action="store_true",
                        help="leave glibc's allocator as it is (robench.allocator, which train and attack apply)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = "glibc default" if args.keep_malloc or not tune_cpu_allocator() else "heap reuse (robench.allocator)"
    device = resolve_device(args.device)
    n = args.n or (200 if args.quick else 1000)
    art_queries = tuple(int(q) for q in (args.art_square_queries or ("1000" if args.quick else "1000,5000")).split(","))
    norms = [s.strip() for s in args.norms.split(",") if s.strip()]
    import art
    import torchattacks

    from robench.version import __version__
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({cpu_name()}), "
          f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
          f"allocator: {allocator}, load average {load()}")
    print(f"robench {__version__}, torchattacks {torchattacks.__version__}, ART {art.__version__}; n = {n}, "
          f"L-inf eps {args.eps:g}, L2 eps {args.eps_l2:g} (absolute), batch {args.batch_size}, "
          f"{args.repeats} repeat(s){', quick' if args.quick else ''}", flush=True)
    started = time.perf_counter()
    checkpoints = get_checkpoints(args, device)
    all_results: dict[str, dict[str, dict[str, dict[str, Result]]]] = {}
    audits: dict[str, dict] = {}
    peer_audits: dict[str, dict] = {}   # the audit at the budgets of torchattacks' AutoAttack as shipped
    data_cache: dict[str, tuple] = {}
    for path in checkpoints:
        model, meta = load_checkpoint(path, device=device)
        label = f"{Path(path).name} ({meta['loss']})"
        if meta["dataset"] not in data_cache:
            data = load_dataset(meta["dataset"], options=meta.get("dataset_options") or {})
            idx = stratified_subset(data.y_test, n, 0)
            data_cache[meta["dataset"]] = (data.x_test[idx], data.y_test[idx])
        x_cpu, y_cpu = data_cache[meta["dataset"]]
        x, y = x_cpu.to(device), y_cpu.to(device)
        clean = robust_accuracy(model, x, y, args.batch_size)
        print(f"\n=== {path}: {meta['loss']}, clean accuracy on the {n} images {100 * clean:.1f} "
              f"(images sha256 {images_sha256(x_cpu, y_cpu)[:12]})", flush=True)
        all_results[label] = {}
        # the reference row's copy in PyTorch's default layout (L-inf only): made once per checkpoint
        plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format) if "Linf" in norms else None
        for norm in norms:
            eps = args.eps if norm == "Linf" else args.eps_l2
            rows = attack_rows(model, norm, eps, art_queries, args.quick, plain)
            if args.only:
                wanted = set(args.only.split(","))
                rows = [row for row in rows if row.label in wanted or (row.native_from in wanted)]
            results: dict[str, dict[str, Result]] = {}
            for row in rows:
                t0 = time.perf_counter()
                results[row.label] = measure_row(row, model, x, y, eps, norm, args.batch_size, args.repeats, device,
                                                 args.verbose)
                if row.native_from and row.native_from in results:
                    results[row.label]["robench"] = results[row.native_from]["robench"]
                print(f"  [{label} {norm} {row.label}: {time.perf_counter() - t0:.0f} s, "
                      f"{time.perf_counter() - started:.0f} s so far, load {load()}]", flush=True)
            all_results[label][norm] = results
            print_attack_table(f"{label}, {norm}, absolute eps {eps:g}, {n} images: robust accuracy (%) and seconds",
                               rows, results)
        if not args.skip_audit:
            audits[label] = run_audit_once(path, n, args.eps, device, x_cpu, y_cpu)
            print_audit_table(label, audits[label], all_results[label].get("Linf"))
            peer_audits[label] = run_audit_once(path, n, args.eps, device, x_cpu, y_cpu, **PEER_BUDGETS)
            print_audit_table(label + ", audit at torchattacks' budgets", peer_audits[label],
                              all_results[label].get("Linf"))
        print(flush=True)
    print_targets(all_results, audits, peer_audits)
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s, load average at the end {load()}")


if __name__ == "__main__":
    main()
