#!/usr/bin/env bash
# Create .venv if needed, install vlrl[test], run the whole test suite (offline, CPU). Extra args go to pytest.
source "$(dirname "$0")/_env.sh"
exec .venv/bin/python -m pytest -q "$@"
