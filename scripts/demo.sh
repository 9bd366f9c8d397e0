#!/usr/bin/env bash
# Set up, then run the main job: train cpu-sprites for 2,000 steps on the built-in Moving MNIST
# (two digits of one colour), evaluate it, and print the verdict and where each factor's
# pictures are. Extra arguments go to `dvip train` (for example --seed 3 or --steps 300).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="runs/first-$(date +%Y%m%d-%H%M%S)"
.venv/bin/dvip train --preset cpu-sprites --steps 2000 --out "$out" "$@"
exec .venv/bin/dvip evaluate "$out"
