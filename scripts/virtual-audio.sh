#!/usr/bin/env bash
# Runs a command with a private PulseAudio virtual sound card (null sink "vspeaker", its monitor
# as the default microphone), for trying audio on a machine without a sound card, e.g.
#   scripts/virtual-audio.sh .venv/bin/peercall devices
# The server and its runtime directory are removed when the command exits. See tests/audio.py.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-.venv/bin/python}"
exec "$py" -m tests.audio "$@"
