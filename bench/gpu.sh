#!/usr/bin/env bash
# The GPU measurements of configs/ddpm_cifar.yaml (see bench/gpu.py), stopped after 8 minutes at most.
# Prints one JSON record (and writes bench/results/gpu.json); without a GPU it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
exec timeout 480 "$PYTHON" -m bench.gpu "$@"
