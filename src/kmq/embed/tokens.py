"""Training tokens per record, for token budgets (``--budget 2M-tokens``).

A record's tokens are counted with ``--tokenizer NAME`` (the user's model: a hub name or a local folder)
or, by default, the encoder's own tokenizer (``minilm``, ``st:`` and ``hf:`` models); encoders without one
(``hashing``, ``npy:``, ``openai:``) count with the bundled MiniLM tokenizer, so a token budget works offline.

What is counted is what a trainer would see: the conversation rendered with the tokenizer's chat template
when it has one (role tags and special tokens included), else the tokens of every turn's text (no special
tokens). The counts are cached per tokenizer and record content (``$KMQ_CACHE_DIR/tokens``), so a second
run with another budget counts nothing.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from kmq.cache import VectorStore, cached_map, default_cache_dir, digest

logger = logging.getLogger(__name__)

#: records tokenised per block (each finished block is cached)
BLOCK = 4096


def tokenizer_source(tokenizer: str | None, embedder: str) -> str:
    """The tokenizer a token budget counts with: ``tokenizer``, else the encoder's, else the bundled MiniLM's."""
    if tokenizer:
        return tokenizer
    if embedder.startswith("st:"):
        return embedder[3:]
    if embedder.startswith("hf:"):
        name, _, pooling = embedder[3:].rpartition(":")
        return name if name and pooling in ("mean", "last", "cls") else embedder[3:]
    from kmq.embed.sentence import bundled_minilm_path

    return str(bundled_minilm_path())


def count_tokens(
    conversations: list[list[dict[str, str]]],
    source: str,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    show_progress: bool | None = None,
    cache: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Tokens of every conversation (a list of ``{"role", "content"}`` turns) under the tokenizer ``source``.

    Returns
    -------
    tokens : ndarray of shape (n,), int64
    stats : dict
        ``tokenizer``, ``template`` (``"model"``: its chat template; ``"none"``: the turns' text),
        ``records``, ``total``, ``cached``, ``counted``, ``seconds``.
    """
    from kmq import hf

    start = time.perf_counter()
    tok = hf.load_tokenizer(
        source, revision=revision, trust_remote_code=trust_remote_code, purpose=f"the token-budget tokenizer {source}"
    )
    tok.model_max_length = 1 << 62  # counting, not running a model: no "longer than the maximum" warning
    has_template = bool(getattr(tok, "chat_template", None))
    identity = _identity(source, revision)

    def compute(items: list[str]) -> np.ndarray:
        turns = [json.loads(item) for item in items]
        if has_template:
            ids = [tok.apply_chat_template(t, tokenize=True) for t in turns]
            return np.asarray([len(_input_ids(x)) for x in ids], dtype=np.float64)
        texts = ["\n\n".join(m["content"] for m in t) for t in turns]
        enc = tok(texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)
        return np.asarray([len(x) for x in enc["input_ids"]], dtype=np.float64)

    items = [json.dumps(c, ensure_ascii=False, sort_keys=True) for c in conversations]
    key = digest("tokens", identity, has_template)
    store = VectorStore(default_cache_dir() / "tokens" / key, 1, dtype=np.float64) if cache else None
    res = cached_map(items, compute, store, dim=1, dtype=np.float64, block_size=BLOCK, show_progress=show_progress,
                     desc="counting tokens", unit="rec")  # fmt: skip
    tokens = np.asarray(res.values, dtype=np.float64).reshape(-1).astype(np.int64)
    stats = {
        "tokenizer": source, "template": "model" if has_template else "none", "records": len(tokens),
        "total": int(tokens.sum()), "cached": res.stats["cached"], "counted": res.stats["computed"],
        "seconds": round(time.perf_counter() - start, 3),
    }  # fmt: skip
    return tokens, stats


def _input_ids(encoded: Any) -> list[int]:
    """``apply_chat_template(tokenize=True)`` gives a list of ids, or (newer transformers) a BatchEncoding."""
    if isinstance(encoded, dict) or hasattr(encoded, "keys"):
        return list(encoded["input_ids"])
    return list(encoded)


def _identity(source: str, revision: str | None) -> Any:
    """What identifies a tokenizer: a local folder's tokenizer files (names, sizes, mtimes), or name + revision."""
    from kmq import hf

    path = Path(source).expanduser()
    if path.is_dir():
        files = [f for f in hf.fingerprint(path) if "token" in f[0] or f[0] in ("vocab.txt", "merges.txt")]
        return ["folder", str(path.resolve()), files]
    return ["hub", source, revision]
