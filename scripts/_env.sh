# Shared by demo.sh and test.sh: create .venv if missing and install vlrl with its test extras.
# torch is pinned to the CPU/GPU build that pip resolves from this machine's local disk (2.14.1 with
# torchvision 0.29.1; the 2.13 CPU wheel cannot import PyPI's torchvision). Set VLRL_TORCH to override.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
STAMP=.venv/.vlrl-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "[setup] installing torch and vlrl[test] into .venv (first run: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q ${VLRL_TORCH:-torch==2.14.1 torchvision==0.29.1} 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, torchvision, open_clip, transformers, vlrl" || { echo "[setup] install failed"; exit 1; }
  touch "$STAMP"
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PATH="$PWD/.venv/bin:$PATH"
