#!/usr/bin/env bash
# The GPU checks, on any machine with a CUDA GPU and litevsr installed (pip install -e '.[dev]'), from any folder:
# 1. pretrain the tiny generator with recipes/pretrain_tiny_gpu.yaml into OUT/tiny-wan (the shipped one in
#    litevsr/assets/tiny-wan is left alone: copy it over by hand once the results are good);
# 2. benchmarks/gpu_real_shape.py at the real Wan2.1-1.3B shape (random weights).
#   benchmarks/gpu_checks.sh [OUT]     # OUT: logs, the generator and results (default: runs/gpu_checks)
# PYTHON picks the interpreter (default: python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(realpath -m "${1:-$ROOT/runs/gpu_checks}")"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
cd "$ROOT"  # the recipe's data_root is relative to the repository
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PYTHON" -c "import torch, diffusers, lightning; print(torch.__version__, diffusers.__version__, lightning.__version__)"
"$PYTHON" tools/pretrain_generator.py --config recipes/pretrain_tiny_gpu.yaml --out "$OUT/tiny-wan" \
    --log_dir "$OUT/pretrain" --samples_png "$OUT/tiny_generator_samples.png" \
    --results_json "$OUT/tiny_generator.json" 2>&1 | tee "$OUT/pretrain.log"
"$PYTHON" benchmarks/gpu_real_shape.py 2>&1 | tee "$OUT/gpu_real_shape.log"
cp benchmarks/results/gpu_real_shape.json "$OUT/"
