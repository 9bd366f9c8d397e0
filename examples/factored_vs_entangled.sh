#!/usr/bin/env bash
# Do factors become objects? Train a factored model (2 factors) and an entangled model of the
# same total size side by side on a 2-core CPU, evaluate both beside their untrained floors,
# and compare them in the layout of the paper's Table 2. docs/results.md records what this
# measured and how long it took.
#
#   bash examples/factored_vs_entangled.sh                      # seed 0, the paper's model
#   SEEDS="0 1 2" bash examples/factored_vs_entangled.sh        # mean ± sd over three seeds
#   PRESET=cpu-objects bash examples/factored_vs_entangled.sh   # the ablation: per-factor
#                       # rendering and the residual guide, factored against a coupled prior
#   OUT=runs/x TRAIN_ARGS="--steps 4000" bash examples/factored_vs_entangled.sh
#
# Settings (environment variables):
#   OUT         run folder                          [runs/factored-vs-entangled]
#   SEEDS       seeds, one pair of runs each        [0]
#   PRESET      dvip train preset                   [cpu-objects-paper]
#   TRAIN_ARGS  extra `dvip train` options          []
#   EVAL_ARGS   extra `dvip evaluate` options       []
#   DVIP        the dvip command                    [dvip, or .venv/bin/dvip if it exists]
#
# The two models of a seed train at the same time, one torch thread each (OMP_NUM_THREADS=1),
# so a 2-core machine runs both in the time of one. Rerunning the script resumes unfinished
# runs and re-evaluates them; a finished run is not trained again.
set -euo pipefail

OUT=${OUT:-runs/factored-vs-entangled}
SEEDS=${SEEDS:-0}
PRESET=${PRESET:-cpu-objects-paper}
read -r -a train_args <<< "${TRAIN_ARGS:-}"
read -r -a eval_args <<< "${EVAL_ARGS:-}"
if [[ -z ${DVIP:-} ]]; then
    root="$(cd "$(dirname "$0")/.." && pwd)"
    if [[ -x "$root/.venv/bin/dvip" ]]; then DVIP="$root/.venv/bin/dvip"; else DVIP=dvip; fi
fi
command -v "$DVIP" > /dev/null || { echo "error: '$DVIP' not found (run scripts/setup.sh, or set DVIP)" >&2; exit 1; }
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT"

# Run "$@" once per model of a seed, both at once; fail if either fails, naming its log.
both() {
    local name pids=() names=()
    for name in factored entangled; do
        "$@" "$name" > "$OUT/$name-s$seed.$stage.log" 2>&1 &
        pids+=($!) names+=("$name")
    done
    local i failed=0
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            echo "error: $stage of ${names[$i]} (seed $seed) failed; see $OUT/${names[$i]}-s$seed.$stage.log" >&2
            failed=1
        fi
    done
    return $failed
}

train_one() {
    local name=$1 dir="$OUT/$1-s$seed" model=()
    [[ $name == entangled ]] && model=(--entangled)
    local resume=()
    [[ -f $dir/config.json ]] && resume=(--resume)
    "$DVIP" train --preset "$PRESET" "${model[@]}" --seed "$seed" --quiet "${resume[@]}" \
        ${train_args[@]+"${train_args[@]}"} --out "$dir"
}

evaluate_one() {
    "$DVIP" evaluate "$OUT/$1-s$seed" ${eval_args[@]+"${eval_args[@]}"}
}

runs=()
for seed in $SEEDS; do
    start=$(date +%s)
    stage=train; both train_one
    trained=$(date +%s)
    stage=evaluate; both evaluate_one
    echo "seed $seed: trained both models in $(( (trained - start) / 60 )) min $(( (trained - start) % 60 )) s," \
         "evaluated in $(( $(date +%s) - trained )) s" | tee -a "$OUT/timing.txt"
    runs+=("$OUT/factored-s$seed" "$OUT/entangled-s$seed")
done
"$DVIP" compare "${runs[@]}" --out "$OUT/compare"
echo "compare: $OUT/compare/compare.md"
