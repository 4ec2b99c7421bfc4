#!/usr/bin/env bash
# The README's demo on a fresh machine (Python 3.11 only): installs uv if missing, the locked
# environment, then runs a small real search (CPU, local Ray, SQLite effvit-nas.db, the 64 px
# `tiny` space, the default proxy `macs`, budget 2x M0 measured on this machine first) and
# prints the study. Re-running resumes the study (it has its 12 trials: nothing runs again).
# Extra arguments go to the search, e.g. `bash runners/demo.sh --trials 20`; another proxy
# needs another study (README, quick start).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
fi
uv sync --locked --compile-bytecode --quiet  # see .ci/run: ~3x faster process starts
uv run effvit-nas search --space tiny --device cpu --budget 2xM0 --trials 12 --study demo "$@"
uv run effvit-nas show --study demo
