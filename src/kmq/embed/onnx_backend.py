"""ONNX Runtime for sentence-transformers BERT encoders (the bundled MiniLM): exported once, fused, cached.

On a CPU without native bf16 (AVX2 only) ONNX Runtime's fused BERT graph (one ``Attention`` op per layer,
``SkipLayerNormalization``, ``BiasGelu``, ``EmbedLayerNormalization``) runs MiniLM faster than torch's eager
fp32 forward with the same vectors to float32 noise (BENCHMARKS.md, "MiniLM on an AVX2 CPU: backends").
:func:`export` builds that graph from the model's own weights (``torch.onnx.export`` of the BERT with eager
attention, mean pooling and the L2 normalisation inside the graph, then ``onnxruntime.transformers``'
BERT fusions) and publishes it atomically under ``$KMQ_CACHE_DIR/onnx/<key>``, keyed by the digest of the
model files' bytes, the recipe, the precision and the onnxruntime and torch versions: a second run loads it in
well under a second. Nothing is pickled (an ``.onnx`` file is a protobuf), nothing is downloaded.

``int8`` is ONNX Runtime's dynamic quantisation of the exported graph's matrix products (weights int8 per
tensor, activations quantised per batch): faster still, but its vectors are another cache entry (mean cosine to
fp32 0.96 on MiniLM, see BENCHMARKS.md).

onnxruntime is optional (``pip install kmq[onnx]``); importing this module imports none of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kmq._deps import require
from kmq.cache import atomic_path, default_cache_dir, digest

logger = logging.getLogger(__name__)

#: what :func:`export` builds; part of the cache key (change it when the graph changes)
RECIPE = "st-bert-eager-mean-l2-ortfused-v1"
#: the model types whose graph :func:`export` handles (the fusions are BERT's)
MODEL_TYPES = ("bert",)
#: ``input name -> tokenizer field`` of the exported graph
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_PRECISIONS = ("fp32", "int8")


def available() -> bool:
    """Whether onnxruntime and onnx are installed (checked without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def unsupported(model: Any) -> str | None:
    """Why :func:`export` cannot take this ``SentenceTransformer`` (None: it can).

    It takes a ``Transformer`` module over a BERT, then mean-token ``Pooling``, then optionally ``Normalize``:
    the bundled MiniLM and other BERT sentence encoders.
    """
    names = [type(m).__name__ for m in model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return f"modules {names} (the ONNX backend takes Transformer, Pooling and Normalize)"
    bert = getattr(model[0], "auto_model", None)
    kind = getattr(getattr(bert, "config", None), "model_type", None)
    if kind not in MODEL_TYPES:
        return f"model type {kind!r} (the ONNX backend takes {list(MODEL_TYPES)})"
    pooling = model[1]
    mode = getattr(pooling, "pooling_mode", None)
    modes = [mode] if isinstance(mode, str) else list(mode or [])
    if modes != ["mean"] and not (mode is None and getattr(pooling, "pooling_mode_mean_tokens", False)):
        return f"pooling {modes or 'unknown'} (the ONNX backend takes mean pooling)"
    return None


def takes_files(folder: Path) -> bool:
    """Whether the saved model in ``folder`` is one :func:`unsupported` takes, judged from its files alone."""
    modules = _json(folder / "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        return False
    names = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return False
    config = _json(folder / str(modules[0].get("path", "")) / "config.json")
    pooling = _json(folder / str(modules[1].get("path", "")) / "config.json")
    if not isinstance(config, dict) or config.get("model_type") not in MODEL_TYPES or not isinstance(pooling, dict):
        return False
    mode = pooling.get("pooling_mode")
    if mode is None:
        on = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True}
        return on in (set(), {"pooling_mode_mean_tokens"})
    return mode == "mean" or mode == ["mean"]


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=8)
def files_digest(folder: str) -> str:
    """BLAKE2b-128 of a model folder's files: their relative names and bytes (hidden files left out)."""
    h = hashlib.blake2b(digest_size=16)
    root = Path(folder)
    files = (p for p in root.rglob("*") if p.is_file())
    for path in sorted(p for p in files if not any(s.startswith(".") for s in p.relative_to(root).parts)):
        h.update(str(path.relative_to(root)).encode() + b"\x00")
        with open(path, "rb") as f:
            while chunk := f.read(8 << 20):
                h.update(chunk)
        h.update(b"\x00")
    return h.hexdigest()


def export_key(folder: Path, precision: str) -> str:
    """The cache key of the exported graph of the model in ``folder``."""
    import onnxruntime
    import torch

    return digest(RECIPE, files_digest(str(folder)), precision, onnxruntime.__version__, torch.__version__)


def export(model: Any, folder: Path, *, precision: str = "fp32") -> Path:
    """The fused ONNX graph of the ``SentenceTransformer`` ``model`` (loaded from ``folder``), built once.

    Returns ``$KMQ_CACHE_DIR/onnx/<key>/model.onnx``; it is built in a temporary folder beside it and renamed
    into place (a concurrent run builds the same bytes; the first rename wins). The graph takes
    ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64, batch x tokens) and gives the unit
    mean-pooled vectors (float32, batch x dim) for ``precision`` ``fp32`` or ``int8``.
    """
    if precision not in ONNX_PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {ONNX_PRECISIONS}")
    target = default_cache_dir() / "onnx" / export_key(folder, precision)
    path = target / "model.onnx"
    if path.is_file():
        return path
    start = time.perf_counter()
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        raw = tmp / "raw.onnx"
        _torch_export(model, raw)
        if precision == "fp32":
            _fuse(model, raw, tmp / "model.onnx")
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            with _without_root_advice():
                quantize_dynamic(str(raw), str(tmp / "model.onnx"), weight_type=QuantType.QInt8)
        raw.unlink()
        meta = {"recipe": RECIPE, "precision": precision, "model_files": files_digest(str(folder))}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    logger.info("exported %s to ONNX (%s) in %.1f s: %s", folder, precision, time.perf_counter() - start, path)
    return path


@contextlib.contextmanager
def _without_root_advice() -> Any:
    """Drop onnxruntime's "run pre-processing before quantization" advice (a root-logger warning, even with -q)."""

    def keep(record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


class _Pooled:
    """BERT, mean pooling over the attention mask, L2 normalisation: what the exported graph computes."""

    @staticmethod
    def module(bert: Any, normalize: bool) -> Any:
        import torch

        class Pooled(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001
                hidden = self.bert(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(vec, p=2, dim=1) if normalize else vec

        return Pooled().eval()


def _torch_export(model: Any, path: Path) -> None:
    """``torch.onnx.export`` (TorchScript exporter) of the model, with eager attention so the fusions match it."""
    import warnings

    import torch

    bert = model[0].auto_model
    before = getattr(bert.config, "_attn_implementation", None)
    _set_attention(bert, "eager")
    try:
        net = _Pooled.module(bert, normalize=len(model) > 2)
        ids = torch.ones(2, 8, dtype=torch.long)
        axes = {name: {0: "batch", 1: "tokens"} for name in INPUTS}
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on the attention mask's shape checks
            torch.onnx.export(net, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path),
                              input_names=list(INPUTS), output_names=["embedding"],
                              dynamic_axes={**axes, "embedding": {0: "batch"}}, opset_version=17,
                              dynamo=False)  # fmt: skip
    finally:
        if before is not None:
            _set_attention(bert, before)


def _set_attention(bert: Any, implementation: str) -> None:
    setter = getattr(bert, "set_attn_implementation", None)
    if setter is not None:
        setter(implementation)
    else:
        bert.config._attn_implementation = implementation


def _fuse(model: Any, src: Path, dst: Path) -> None:
    """onnxruntime's BERT fusions (attention, layer norms, GELU, embeddings) on the exported graph."""
    from onnxruntime.transformers import optimizer

    config = model[0].auto_model.config
    opt = optimizer.optimize_model(str(src), model_type="bert", num_heads=int(config.num_attention_heads),
                                   hidden_size=int(config.hidden_size), opt_level=0)  # fmt: skip
    fused = opt.get_fused_operator_statistics()
    if not fused.get("Attention"):
        logger.warning("onnxruntime fused no attention in %s (%s): the ONNX graph runs unfused", src, fused)
    opt.save_model_to_file(str(dst))


class OrtEncoder:
    """An ONNX Runtime session over an exported graph: padded token batches -> unit vectors.

    Parameters
    ----------
    path : Path
        The ``.onnx`` file :func:`export` gave.
    threads : int
        Intra-op threads (the caller passes torch's count, so ``OMP_NUM_THREADS`` and ``torch.set_num_threads``
        apply alike); inter-op is 1 (the graph is a chain).
    """

    def __init__(self, path: Path, *, threads: int) -> None:
        ort = require("onnxruntime", purpose="the ONNX encoder backend (--encoder-backend onnx)")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        ids = np.asarray(batch["input_ids"], dtype=np.int64)
        feed = {name: np.asarray(batch[name], dtype=np.int64) if name in batch else np.zeros_like(ids)
                for name in self.inputs}  # fmt: skip
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)
