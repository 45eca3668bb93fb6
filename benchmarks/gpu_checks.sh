#!/usr/bin/env bash
# The whole GPU session, run once on a lent H100 through the device tool (repo root, wheels carried in .whl/):
# 1. pretrain the shipped tiny generator with recipes/pretrain_tiny_gpu.yaml;
# 2. benchmarks/gpu_real_shape.py at the real Wan2.1-1.3B shape.
# Everything it produces is copied to $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, diffusers, lightning; print(torch.__version__, diffusers.__version__, lightning.__version__)"
start=$(date +%s)
timeout 450 python3 -m litevsr.pretrain --config recipes/pretrain_tiny_gpu.yaml 2>&1 | grep -v -i warn > "$OUT/pretrain.log"
echo "pretrain exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s"; tail -n 40 "$OUT/pretrain.log"
tar czf "$OUT/pretrained.tgz" litevsr/assets/tiny-wan docs/images/tiny_generator_samples.png benchmarks/results/tiny_generator.json runs/pretrain_gpu
(cd benchmarks && timeout 110 python3 gpu_real_shape.py) 2>&1 | grep -v -i warn | tee "$OUT/gpu_real_shape.log"
cp benchmarks/results/gpu_real_shape.json "$OUT/" 2>/dev/null
echo "total $(( $(date +%s) - start )) s"
