"""``robench inspect``: a run directory's facts as readable text (reads run.json only)."""

from __future__ import annotations

from pathlib import Path

from robench.files import file_sha256
from robench.models.checkpoints import read_metadata
from robench.models.run_layout import WEIGHTS


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)


def weights_note(run_dir: Path, recorded: str | None) -> str:
    """run.json's weights hash and whether model.safetensors still matches it."""
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        return f"{_fmt(recorded)} ({WEIGHTS} missing)"
    actual = file_sha256(weights)
    if recorded is None:
        return f"{actual} (of {WEIGHTS}; the run is unfinished)"
    return recorded + (" (matches model.safetensors)" if actual == recorded else
                       f" (model.safetensors differs: {actual}; results would refuse it)")


def options_text(options: dict | None) -> str:
    """`` (k=v, ...)`` for non-empty options, else nothing."""
    return f" ({_fmt(options)})" if options else ""


def describe_run(run_dir: str | Path) -> str:
    """A multi-line description of the run in ``run_dir``."""
    meta = read_metadata(run_dir)
    env = meta.get("environment", {})
    parent = meta.get("parent")
    facts = [
        ("run", str(run_dir)),
        ("status", f"{meta.get('status')} ({meta.get('epochs_done')} of {meta.get('epochs')} epochs)"),
        ("dataset", f"{meta['dataset']}{options_text(meta.get('dataset_options'))}: "
                    + (f"{meta['n_train']} train / " if meta.get("n_train") is not None else "")
                    + f"{meta.get('n_test')} test images, input {'x'.join(map(str, meta['input_shape']))}, "
                      f"{meta['num_classes']} classes"),
        ("model", f"{meta.get('factory')} (imported)" if meta.get("origin") == "imported" else
                  f"{meta['model']}{options_text(meta.get('model_options'))}"),
        ("loss", f"{meta.get('loss')}{options_text(meta.get('loss_hyper'))}"),
        ("training", meta.get("training") + (f" from {parent['path']} (sha256 {parent['sha256'][:12]}…)"
                                             if parent else "")),
        ("optimizer", _fmt(meta.get("optimizer"))),
        ("seed", _fmt(meta.get("seed"))),
        ("test accuracy", f"{_fmt(meta.get('test_accuracy'))} (best {_fmt(meta.get('best_test_accuracy'))})"),
        ("wall time", f"{meta.get('wall_time_s', 0):.1f} s on {env.get('device')}"
                      + (f" ({env['device_name']})" if env.get("device_name") not in (None, env.get("device")) else "")
                      + f", {env.get('torch_threads', '?')} torch threads"),
        ("versions", _fmt(env.get("versions"))),
        ("git commit", _fmt(env.get("git_commit"))),
        ("weights sha256", weights_note(Path(run_dir), meta.get("weights_sha256"))),
    ]
    stats = meta.get("gradient_statistics")
    if stats:
        facts.append(("gradient stats", _fmt(stats)))
    width = max(len(k) for k, _ in facts)
    lines = [f"{k:<{width}}  {v}" for k, v in facts]
    history = meta.get("history", [])
    if history:
        lines.append("")
        lines.append(f"{'epoch':>5} {'loss':>12} {'train acc':>9} {'test acc':>9} {'lr':>9} {'s':>7}")
        for r in history:
            lines.append(f"{r['epoch']:>5} {r['loss']:>12.5g} {r['train_accuracy']:>9.4f} {r['test_accuracy']:>9.4f} "
                         f"{r['lr']:>9.3g} {r['seconds']:>7.1f}")
    return "\n".join(lines)
