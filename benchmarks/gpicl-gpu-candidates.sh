#!/usr/bin/env bash
# Meta-train candidate GPICL recipes side by side on one CUDA GPU within a fixed wall-clock budget, after the CUDA
# agreement tests. Each candidate is the shipped recipe (benchmarks/gpicl-mixed-train.toml) with the overrides below.
# A short concurrent calibration run measures each candidate's steps per second; the main runs then get the number of
# steps that fits the time left, so that every learning-rate schedule runs to its end (a recipe stopped by a time
# budget could not be rerun elsewhere). Candidates are compared afterwards on digits `val` only.
#   bash benchmarks/gpicl-gpu-candidates.sh            # on a GPU machine; writes to $OUT or results/gpu-candidates
# Environment: DEVICE (cuda), PYTHON (python3), TOTAL_SECONDS (the script's wall budget, 540), CALIBRATE_SECONDS (40).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-results/gpu-candidates}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
TOTAL=${TOTAL_SECONDS:-540}
CALIBRATE=${CALIBRATE_SECONDS:-40}
RECIPE=benchmarks/gpicl-mixed-train.toml
WORK=$(mktemp -d)
mkdir -p "$OUT_DIR" "$WORK/logs"
started=$(date +%s)
elapsed() { echo $(($(date +%s) - started)); }

declare -A CANDIDATES=(
    [gpicl-d192-l4]="--batch-size 512"
    [gpicl-d256-l5]="--batch-size 512 --d-model 256 --layers 5 --lr 0.002"
    [gpicl-d256-l5-synthetic]="--batch-size 512 --d-model 256 --layers 5 --lr 0.002 --mix-suite 0.25 --mix-gaussian 0.25 --mix-nonlinear 0.25 --mix-fields 0.25"
)
NAMES=$(printf '%s\n' "${!CANDIDATES[@]}" | sort)

if [ -d .whl ]; then  # packages the machine lacks, carried as wheels
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
        export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# the runs share the host's cores (the input rule's large eigendecompositions run there): a share of the threads
# each, so that together they ask for no more than the machine has, and threads that sleep rather than spin
candidates=$(printf '%s\n' "${!CANDIDATES[@]}" | wc -l)
export OMP_NUM_THREADS=$(($(nproc) / candidates > 0 ? $(nproc) / candidates : 1)) OMP_WAIT_POLICY=PASSIVE
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"

if [ "$DEVICE" = cuda ]; then
    timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_learner_contract.py -k cuda \
        >"$WORK/logs/tests.log" 2>&1
    echo "CUDA tests: exit $? after $(elapsed) s; $(tail -1 "$WORK/logs/tests.log")"
fi

train() {  # name, checkpoint, extra flags...
    local name=$1 out=$2
    shift 2
    # shellcheck disable=SC2086
    "$PY" -m gpicl_bench train "$RECIPE" --device "$DEVICE" --quiet --force ${CANDIDATES[$name]} "$@" --out "$out"
}

steps_per_second() {  # checkpoint -> steps / seconds of its last held-out entry
    "$PY" -c "import sys; from gpicl_bench.checkpoints import read_metadata as r
h = r(sys.argv[1])['metrics']['history'][-1]; print(h['step'] / h['seconds'])" "$1"
}

mkdir -p "$WORK/calibration"
for name in $NAMES; do
    train "$name" "$WORK/calibration/$name.safetensors" --steps 1000000 --time-budget "$CALIBRATE" \
        --eval-every 1000000 --eval-episodes 50 >"$WORK/logs/$name-calibration.log" 2>&1 &
done
wait
remaining=$((TOTAL - $(elapsed) - 45))  # start-up, the last held-out check and the copy
echo "calibrated after $(elapsed) s; $remaining s left for training"
for name in $NAMES; do
    rate=$(steps_per_second "$WORK/calibration/$name.safetensors") || { echo "$name: calibration failed"; continue; }
    steps=$("$PY" -c "import sys; print(max(500, int(float(sys.argv[1]) * int(sys.argv[2]) * 0.85) // 500 * 500))" \
        "$rate" "$remaining")
    echo "$name: $rate steps/s -> $steps steps"
    train "$name" "$WORK/$name.safetensors" --steps "$steps" --eval-every 2500 --time-budget "$remaining" \
        >"$WORK/logs/$name.log" 2>&1 &
done
wait
echo "trained after $(elapsed) s"
for name in $NAMES; do
    [ -f "$WORK/$name.safetensors" ] && cp "$WORK/$name.safetensors" "$OUT_DIR/"
    "$PY" -c "import sys; from gpicl_bench.checkpoints import read_metadata as r
m = r(sys.argv[1]); print(sys.argv[2], 'steps', m['steps'], 'seconds', round(m['seconds']),
  [(h['step'], round(h['held_out_accuracy'], 4)) for h in m['metrics']['history']])" \
        "$WORK/$name.safetensors" "$name" 2>&1 | tail -1
done
tar -cf "$OUT_DIR/logs.tar" -C "$WORK" logs
echo "done after $(elapsed) s"
