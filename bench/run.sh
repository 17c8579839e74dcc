#!/usr/bin/env bash
# Benchmarks side by side with hand-written SQL: ./bench/run.sh SCALE [--runs N]
# (scale 1 = 100,000 profiles). Starts its own cluster in /tmp/la-bench (port 54333).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/run.py "$@"
