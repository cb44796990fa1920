"""Evaluate your own model from Python: the same as evaluate_with_cli.sh, through ``robench``'s API.

    python examples/evaluate_with_python.py [WORK_DIR]
"""

import sys
import tempfile
from pathlib import Path

import torch
from sklearn.datasets import load_digits

import robench

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_model import build, train  # noqa: E402  (the example's own model)

work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
train(str(work / "weights.pt"))
model = build()
model.load_state_dict(torch.load(work / "weights.pt", weights_only=True))
digits = load_digits()
x = torch.tensor(digits.images[-120:] / 16.0, dtype=torch.float32)[:, None]
y = torch.tensor(digits.target[-120:])

linf = robench.evaluate(model, x, y, attacks=("pgd", "apgd"), eps=(0, 8 / 255, 16 / 255))
l2 = robench.evaluate(model, x, y, attacks=("pgd", "apgd"), eps=(0, 0.5, 1.0), norm="L2")
for title, rows in (("L-inf", linf), ("L2", l2)):
    print(title)
    print(rows.pivot_table(index="eps", columns="attack", values="accuracy").round(3).to_string())
report, rows = robench.audit(model, x[:60], y[:60], eps=0.1, strong_steps=20, strong_restarts=2, apgd_steps=20,
                             square_queries=200)
print("audit:", report["verdict"], "worst case", report["worst"], [c["status"] for c in report["checks"]])
