#!/usr/bin/env bash
# Runs every benchmark in bench/ and prints their figures. Usage: scripts/run-bench.sh PYTHON
set -euo pipefail
py="$1"
export QT_QPA_PLATFORM=offscreen
for b in bench/bench_*.py; do
  echo "== $b"
  "$py" "$b"
done
