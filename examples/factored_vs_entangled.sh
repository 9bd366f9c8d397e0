#!/usr/bin/env bash
# Do factors become objects? Train a factored model (2 factors) and an entangled model of the
# same total size on a 2-core CPU, evaluate both beside their untrained floors, and compare
# them in the layout of the paper's Table 2. docs/results.md records what this measured and
# how long it took.
#
#   bash examples/factored_vs_entangled.sh                  # seeds 0 and 1, best of the two
#   SEEDS="0,1 2,3 4,5" bash examples/factored_vs_entangled.sh   # three pairs: mean ± sd
#   SEEDS="0" bash examples/factored_vs_entangled.sh        # one seed, no selection
#   OUT=runs/x TRAIN_ARGS="--arena box" bash examples/factored_vs_entangled.sh
#
# Each word of SEEDS is a group of candidate seeds, comma-separated. With two or more, every
# candidate of each model trains to step SELECT_AT (`dvip train --until`), the candidate with
# the best held-out test ELBO at that step is kept (factored and entangled model each chose
# their own, by their own bound: no ground truth is used), and only it trains to the end. The
# rest stay resumable. With one candidate there is no selection. selection.txt records every
# choice and the ELBOs behind it.
#
# Settings (environment variables):
#   OUT         run folder                          [runs/factored-vs-entangled]
#   SEEDS       groups of candidate seeds           [0,1]
#   SELECT_AT   step at which candidates are judged [4000]
#   PRESET      dvip train preset                   [cpu-objects]
#   TRAIN_ARGS  extra `dvip train` options          []
#   EVAL_ARGS   extra `dvip evaluate` options       []
#   DVIP        the dvip command                    [dvip, or .venv/bin/dvip if it exists]
#
# Two runs train at a time, one torch thread each (OMP_NUM_THREADS=1), so a 2-core machine
# runs the factored and the entangled candidate of a seed in the time of one. Rerunning the
# script resumes unfinished runs and re-evaluates them; a finished run is not trained again.
set -euo pipefail

OUT=${OUT:-runs/factored-vs-entangled}
SEEDS=${SEEDS:-0,1}
SELECT_AT=${SELECT_AT:-4000}
PRESET=${PRESET:-cpu-objects}
read -r -a train_args <<< "${TRAIN_ARGS:-}"
read -r -a eval_args <<< "${EVAL_ARGS:-}"
if [[ -z ${DVIP:-} ]]; then
    root="$(cd "$(dirname "$0")/.." && pwd)"
    if [[ -x "$root/.venv/bin/dvip" ]]; then DVIP="$root/.venv/bin/dvip"; else DVIP=dvip; fi
fi
command -v "$DVIP" > /dev/null || { echo "error: '$DVIP' not found (run scripts/setup.sh, or set DVIP)" >&2; exit 1; }
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$OUT"

# Run "$1 factored SEED_F" and "$1 entangled SEED_E" at once (stage $stage); fail if either
# fails, naming its log.
both() {
    local command=$1 seed_f=$2 seed_e=$3 name seed pids=() names=() seeds=()
    for name in factored entangled; do
        if [[ $name == factored ]]; then seed=$seed_f; else seed=$seed_e; fi
        "$command" "$name" "$seed" > "$OUT/$name-s$seed.$stage.log" 2>&1 &
        pids+=($!) names+=("$name") seeds+=("$seed")
    done
    local i failed=0
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            echo "error: ${stage/#select/train} of ${names[$i]} (seed ${seeds[$i]}) failed; see" \
                 "$OUT/${names[$i]}-s${seeds[$i]}.$stage.log" >&2
            failed=1
        fi
    done
    return $failed
}

# train_one NAME SEED: train (or resume) one run, to step $until if set, else to the end.
train_one() {
    local name=$1 seed=$2 dir="$OUT/$1-s$2" model=() resume=() stop=()
    [[ $name == entangled ]] && model=(--entangled)
    [[ -f $dir/config.json ]] && resume=(--resume)
    [[ -n $until ]] && stop=(--until "$until")
    "$DVIP" train --preset "$PRESET" "${model[@]}" --seed "$seed" --quiet "${resume[@]}" \
        ${train_args[@]+"${train_args[@]}"} ${stop[@]+"${stop[@]}"} --out "$dir"
}

evaluate_one() {
    "$DVIP" evaluate "$OUT/$1-s$2" ${eval_args[@]+"${eval_args[@]}"}
}

# test_elbo_at RUN_DIR STEP: the test ELBO per frame that metrics.csv logged at STEP (the last
# such row, if a resumed run logged it twice).
test_elbo_at() {
    awk -F, -v step="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
        $col["step"] == step && $col["test_elbo"] != "" { value = $col["test_elbo"] }
        END { if (value == "") exit 1; print value }' "$1/metrics.csv"
}

# best_seed NAME SEED...: "SEED ELBOS" for the candidate with the highest test ELBO at SELECT_AT.
best_seed() {
    local name=$1 seed elbo best="" best_elbo="" all=""; shift
    for seed in "$@"; do
        elbo=$(test_elbo_at "$OUT/$name-s$seed" "$SELECT_AT") || {
            echo "error: $OUT/$name-s$seed/metrics.csv has no test ELBO at step $SELECT_AT" >&2
            return 1
        }
        all+=" s$seed $(printf '%.2f' "$elbo")"
        if [[ -z $best ]] || awk -v a="$elbo" -v b="$best_elbo" 'BEGIN { exit !(a > b) }'; then
            best=$seed best_elbo=$elbo
        fi
    done
    echo "$best$all"
}

runs=()
for group in $SEEDS; do
    IFS=, read -r -a candidates <<< "$group"
    start=$(date +%s)
    if (( ${#candidates[@]} > 1 )); then
        stage=select until=$SELECT_AT
        for seed in "${candidates[@]}"; do both train_one "$seed" "$seed"; done
        choice_f=$(best_seed factored "${candidates[@]}") || exit 1
        choice_e=$(best_seed entangled "${candidates[@]}") || exit 1
        read -r factored elbos_f <<< "$choice_f"
        read -r entangled elbos_e <<< "$choice_e"
        echo "seeds $group, test ELBO per frame at step $SELECT_AT: factored $elbos_f ->" \
             "seed $factored; entangled $elbos_e -> seed $entangled" | tee -a "$OUT/selection.txt"
    else
        factored=${candidates[0]} entangled=${candidates[0]}
    fi
    stage=train until=""
    both train_one "$factored" "$entangled"
    trained=$(date +%s)
    stage=evaluate; both evaluate_one "$factored" "$entangled"
    echo "seeds $group: trained in $(( (trained - start) / 60 )) min $(( (trained - start) % 60 )) s," \
         "evaluated in $(( $(date +%s) - trained )) s" | tee -a "$OUT/timing.txt"
    runs+=("$OUT/factored-s$factored" "$OUT/entangled-s$entangled")
done
"$DVIP" compare "${runs[@]}" --out "$OUT/compare"
echo "compare: $OUT/compare/compare.md"
