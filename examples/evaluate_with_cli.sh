#!/usr/bin/env bash
# Evaluate your own model with the command line: L-inf (RobustBench's 8/255 style) and L2, then audit it.
#   bash examples/evaluate_with_cli.sh [WORK_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$(mktemp -d)}
cd "$work"
python "$here/tiny_model.py" weights.pt
model=(--model-factory "$here/tiny_model.py:build" --weights weights.pt --dataset digits --device cpu --quiet)
robench attack "${model[@]}" --attack pgd,apgd --eps-mode absolute --eps-grid 0,8/255,16/255 --n-samples 120 \
    --out results/linf.csv
robench attack "${model[@]}" --attack pgd,apgd --norm L2 --eps-mode absolute --eps-grid 0,0.5,1 --n-samples 120 \
    --out results/l2.csv
robench audit "${model[@]}" --eps-mode absolute --eps-grid 0,0.05,0.1 --n-samples 60 --strong-steps 20 \
    --strong-restarts 2 --apgd-steps 20 --square-queries 200 --out results/audit
