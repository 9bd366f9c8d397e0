#!/usr/bin/env bash
# Set up, then run the main job: a short cpu-demo training on the built-in Moving MNIST.
# Extra arguments go to `dvip train` (for example --steps 300 or --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="runs/cpu-demo-$(date +%Y%m%d-%H%M%S)"
exec .venv/bin/dvip train --preset cpu-demo --out "$out" "$@"
