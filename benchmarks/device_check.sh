#!/usr/bin/env bash
# Speed on an accelerator in one table (issue 24): step time and examples/s of the Sketchy and
# MNIST–SVHN steps at batch 64 and at a batch that fills the device, float32 vs bfloat16
# compute, 1 vs 10 steps per compiled call, achieved TFLOP/s and its share of the bf16 peak.
#
#   bash benchmarks/device_check.sh   # on a GPU/TPU machine: 12 runs of at most RUN_LIMIT_S=100 s
#   BIG_BATCH=2048 bash benchmarks/device_check.sh      # the batch that fills the device
#   DEVICE_CHECK_TINY=1 bash benchmarks/device_check.sh  # two tiny runs on a CPU (the test)
#
# Data: random arrays of each config's shapes (bench_step.py --data=shapes): no dataset files.
# Writes the records to ${OUT:-/tmp}/device_check.jsonl and prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
out=${OUT:-/tmp}/device_check.jsonl
: > "$out"

# Combinations "batch dtype steps_per_call": both precisions at both batches; 10 steps per
# call only at batch 64, where the per-call overhead can matter.
if [[ -n "${DEVICE_CHECK_TINY:-}" ]]; then
  configs=(configs/digits_add1.py)
  combos=("8 float32 1" "8 bfloat16 2")
  timing=(--steps=2 --warmup=1)
  extra=(--config.model.mlp.encoder_features=16 --config.model.mlp.decoder_hidden="(16,)"
         --config.model.mlp.disc_features=16 --config.model.disc.hidden_dim=8)
else
  configs=(configs/sketchy.py configs/mnist_svhn.py)
  big=${BIG_BATCH:-1024}
  combos=("64 float32 1" "64 bfloat16 1" "64 float32 10" "64 bfloat16 10"
          "$big float32 1" "$big bfloat16 1")
  timing=(--steps=20 --warmup=3)
  extra=()
fi
limit=${RUN_LIMIT_S:-100}  # seconds per combination, compile included

for config in "${configs[@]}"; do
  for combo in "${combos[@]}"; do
    read -r batch dtype spc <<< "$combo"
    echo "== ${config} batch ${batch} ${dtype} steps_per_call ${spc}" >&2
    # A failed or slow combination (out of memory at the big batch, a compile over the limit)
    # leaves a line that says so and the rest of the table.
    if ! timeout "$limit" "$PY" benchmarks/bench_step.py --config="$config" --data=shapes \
        --batch="$batch" --steps_per_call="$spc" "${timing[@]}" \
        --config.model.compute_dtype="$dtype" "${extra[@]}" >> "$out"; then
      echo "   failed or over ${limit} s: ${config} batch ${batch} ${dtype} steps_per_call ${spc}" >&2
    fi
  done
done
"$PY" benchmarks/device_table.py "$out"
