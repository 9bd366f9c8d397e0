#!/usr/bin/env bash
# The prepared GPU check (docs/performance.md, "The first GPU check"): one table of the paper
# size's frames/s in fp32, bf16 and compiled, peak memory, the largest batch that fits, and the
# object recipe's steps/s. About 5 minutes on an H200, never more than 8 of timing.
# Run from anywhere on the GPU machine; extra arguments go to benchmarks/gpu_check.py.
# Where pyro-ppl or av are missing (the device machine's image has neither), it installs the
# wheels in .whl/ (made here with the pip download command in docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import pyro, av" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "gpu_check: pyro-ppl or av is missing and there is no .whl/ folder of wheels" \
            "(docs/performance.md says how to make one)" >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpu-check-site .whl/*.whl
    export PYTHONPATH=/tmp/gpu-check-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PYTHON" -m benchmarks.gpu_check --out "${OUT:-benchmarks/results}" "$@"
