#!/usr/bin/env bash
# The test command: set up .venv if needed, then run the default (fast) test suite. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest "$@"
