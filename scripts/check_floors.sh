#!/usr/bin/env bash
# Check that the lower bounds in pyproject.toml hold: install the oldest version of every
# dependency that pyproject.toml allows (each `name>=X` pinned to `name==X`) into a scratch
# virtual environment, then train briefly, evaluate, and run the tests that touch every
# dependency. Not part of CI: torch's floor comes from PyPI as a CUDA build (about 3 GB).
#
#   bash scripts/check_floors.sh [VENV_DIR]     # default /tmp/dvip-floors (recreated)
#
# Ends with one line "floors check: PASS|FAIL ..."; docs/install.md records the last result.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=${1:-/tmp/dvip-floors}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# `name>=X` -> `name==X` for the dependencies and the test extra (a regex: Python 3.10 has no
# tomllib, and the lists are one requirement a line).
mapfile -t PINS < <("$PYTHON" - <<'EOF'
import re
text = open("pyproject.toml").read().split("[project]", 1)[1]  # not [build-system]
for name, floor in re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)[,"]', text):
    print(f"{name}=={floor}")
EOF
)
PACKAGES=$(printf '%s\n' "${PINS[@]}" | sed 's/==.*//' | tr '\n' ' ')
echo "floors: ${PINS[*]}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# Built from a copy, so that the build leaves nothing in this tree; the tests below import the
# installed package. pip may take only what pyproject.toml allows plus the pins: anything it
# cannot reconcile fails here.
mkdir "$WORK/src"
tar -C "$REPO" --exclude=./.venv --exclude=./.git --exclude=./build --exclude='*.egg-info' \
    --exclude=./runs -cf - . | tar -xf - -C "$WORK/src"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" "$WORK/src[test]"

VERSIONS=$("$VENV/bin/python" - $PACKAGES <<'EOF'
import platform, sys
from importlib.metadata import version
print(f"python {platform.python_version()}", *(f"{n} {version(n)}" for n in sys.argv[1:]), sep=", ")
EOF
)
echo "installed: $VERSIONS"

status=PASS
step() {  # step NAME COMMAND...: run it from $WORK, remember a failure, go on
    local name=$1
    shift
    echo "--- $name"
    if ! (cd "$WORK" && OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} "$@"); then
        echo "FAILED: $name"
        status=FAIL
    fi
}
DVIP="$VENV/bin/dvip"
step "train (cpu-demo, 30 steps)" "$DVIP" train --preset cpu-demo --steps 30 --log-every 10 \
    --checkpoint-every 30 --out "$WORK/run" --quiet
step "resume to 40 steps" "$DVIP" train --out "$WORK/run" --resume --steps 40 --quiet
step "evaluate" "$DVIP" evaluate "$WORK/run" --samples 300 --bootstrap 20 --select-pairs 300 \
    --intervention-pairs 32 --bound-sequences 32
step "check-elbo" "$DVIP" check-elbo "$WORK/run" --particles 20 --batch-size 8
# One test file per dependency group: model and objective (torch, pyro), data (torchvision,
# mlxtend, av), evaluation (infomeasure, scikit-learn, scipy, pandas, seaborn, matplotlib,
# pillow), training CLI (click, tensorboard, tqdm), property tests (hypothesis).
step "tests" "$VENV/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$REPO" \
    "$REPO/tests/test_model.py" "$REPO/tests/test_moving_mnist.py" \
    "$REPO/tests/test_video.py" "$REPO/tests/test_evaluation_mutual_info.py" \
    "$REPO/tests/test_evaluation_correlation.py" "$REPO/tests/test_evaluation_alignment.py" \
    "$REPO/tests/test_train_cli.py" "$REPO/tests/test_reliability.py"

echo "floors check: $status ($(date -u +%F), $VERSIONS)"
[ "$status" = PASS ]
