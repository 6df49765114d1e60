#!/usr/bin/env bash
# The GPU check, in one prepared script (under 5 minutes on one H100): run the CUDA agreement tests (CPU vs CUDA: the
# same episodes and sequences; protonet's predictions exactly equal, knn's and gpicl's within the stated tolerances;
# the input rule's inputs), then on CUDA the perf harness (its JSON to $OUT, or results/), the meta-training step
# and the input rule's eigendecompositions. It uses the first of PYTHON, the project's .venv and python3 whose torch
# sees CUDA, and sets the project up only where none does. Run from the repository root:
#   bash benchmarks/perf/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
has_cuda() { "$1" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; }
PY=""
for candidate in ${PYTHON:-} .venv/bin/python python3; do
    if has_cuda "$candidate"; then PY=$candidate && break; fi
done
if [ -z "$PY" ]; then
    make setup
    PY=.venv/bin/python
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
"$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
OUT_DIR="${OUT:-results}"
mkdir -p "$OUT_DIR"
"$PY" benchmarks/perf/harness.py --device cuda --json "$OUT_DIR/perf-cuda.json"
"$PY" benchmarks/perf/training_step.py --device cuda --batch-size 128 512
"$PY" benchmarks/perf/eigh.py --device cuda
