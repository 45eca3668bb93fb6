#!/usr/bin/env bash
# Second GPU session: train the shipped animation adapter with recipes/animation_x4.yaml on a lent H100.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
start=$(date +%s)
python3 -c "from litevsr.data.demo import build_animation_shards as b; b('data/pretrain/animation')" || exit 1
echo "shards after $(( $(date +%s) - start )) s"
timeout 200 python3 -m litevsr fit --config recipes/animation_x4.yaml 2>&1 | grep -v -i warn | tail -n 30
cp -r runs/animation_x4/version_0/adapter "$OUT/animation-adapter"
tar czf "$OUT/animation_x4_run.tgz" runs/animation_x4
echo "total $(( $(date +%s) - start )) s"
