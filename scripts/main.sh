#!/usr/bin/env bash
# The main job: set up .venv if needed, then compute tradeoff curves (test error vs compression ratio) on the
# embedded digits data with LeNet300; results in results/tradeoff/ (rows.csv, rows.jsonl, tradeoff.png).
# Extra arguments go to the job (try --help).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m experiments.tradeoff "$@"
