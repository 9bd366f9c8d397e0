#!/usr/bin/env bash
# Create .venv (if needed) and install pyro-dvip with its test dependencies into it.
# TORCH_SPEC picks the torch build; the default is the pair this project is tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    echo "setup: installing $TORCH_SPEC (a few minutes the first time)"
    # shellcheck disable=SC2086
    .venv/bin/pip install --quiet --disable-pip-version-check $TORCH_SPEC
fi
echo "setup: installing pyro-dvip (editable) and its test dependencies"
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[test]" 2> >(grep -v "is ignored" >&2)
