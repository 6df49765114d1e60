#!/usr/bin/env bash
# The GPU check, in one prepared script (under 5 minutes on one H100): set up if needed, run the CUDA agreement tests
# (CPU vs CUDA: the same episodes and sequences; protonet and knn predictions exactly equal, gpicl within the stated
# tolerance) and the perf harness on CUDA, writing its JSON to $OUT (or results/).
# Run from the repository root:  bash benchmarks/perf/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
if ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    make setup
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
"$PY" -m pytest -q tests/test_cuda.py
OUT_DIR="${OUT:-results}"
mkdir -p "$OUT_DIR"
"$PY" benchmarks/perf/harness.py --device cuda --json "$OUT_DIR/perf-cuda.json"
