#!/usr/bin/env bash
# Runs the test suite headless. Usage: scripts/run-tests.sh PYTHON [pytest args...]
set -uo pipefail
py="$1"; shift
export QT_QPA_PLATFORM=offscreen
export PYTHONFAULTHANDLER=1
"$py" -m pytest "$@"
rc=$?
# pytest exits 5 when it collected nothing: that is a failure of the suite, not a pass.
exit $rc
