#!/usr/bin/env bash
# Create .venv (if needed) and install pyro-dvip with its test dependencies into it.
# TORCH_SPEC picks the torch build; the default is the pair this project is tested with.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
# Drop pip's warnings about local index folders that do not exist on this machine.
quiet_pip() { grep -v "is ignored: it is neither a file nor a directory" || true; }
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
    echo "setup: installing $TORCH_SPEC (a few minutes the first time)"
    # shellcheck disable=SC2086
    .venv/bin/pip install --quiet --disable-pip-version-check $TORCH_SPEC 2> >(quiet_pip >&2)
fi
echo "setup: installing pyro-dvip (editable) and its test dependencies"
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[test]" 2> >(quiet_pip >&2)
