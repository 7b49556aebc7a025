#!/usr/bin/env bash
# The main job: set up .venv if needed, then compute a tradeoff curve on the embedded digits data.
# Extra arguments go to the job (try --help).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m experiments.quickstart "$@"
