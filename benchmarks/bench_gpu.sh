#!/usr/bin/env bash
# The GPU variant of `make bench`, unattended: run from the project root on a GPU host after
# `make install`. Scores BENCH_DOCS demo documents on GPU 0 with (a) a raw torch loop, (b) the
# project's Spark stage (conf/gpu.yaml: bf16/fp16 autocast, pinned memory, tokenisation on a
# thread), (c) predict_batch_udf and (d) a transformers pipeline; prints docs/s, peak host
# memory, GPU utilisation over the timed pass and peak GPU memory. Output: build/bench-gpu.log.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p build
.venv/bin/python benchmarks/bench.py --device cuda --conf conf/gpu.yaml --docs "${BENCH_DOCS:-20000}" \
  --check-docs 0 --workdir build/bench-gpu "$@" 2>&1 | tee build/bench-gpu.log
