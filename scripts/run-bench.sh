#!/usr/bin/env bash
# Runs the benchmarks in bench/ and prints their figures.
# Usage: scripts/run-bench.sh PYTHON [bench/bench_X.py ...]   (default: every bench/bench_*.py)
# Takes /tmp/peercall-bench.lock first (benchmarks on a shared machine must not overlap); set
# PEERCALL_BENCH_LOCKED=1 when the caller already holds it, or flock would wait on itself.
set -uo pipefail
py="$1"
shift
if [ -z "${PEERCALL_BENCH_LOCKED:-}" ]; then
  exec env PEERCALL_BENCH_LOCKED=1 flock -x /tmp/peercall-bench.lock "$0" "$py" "$@"
fi
export QT_QPA_PLATFORM=offscreen
benches=("$@")
[ ${#benches[@]} -eq 0 ] && benches=(bench/bench_*.py)
failed=()
for b in "${benches[@]}"; do
  echo "== $b"
  "$py" "$b" || failed+=("$b")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
