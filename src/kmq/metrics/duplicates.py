"""Duplicates inside a selection: repeated normalised first prompts (exact) and near-identical vectors (near)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from kmq.errors import InvalidParameterError
from kmq.methods.validation import check_number
from kmq.metrics._search import Index, nearest_similarity

__all__ = ["exact_duplicates", "near_duplicate_mask", "near_duplicates", "normalize_prompt", "prompt_key",
           "prompt_keys"]  # fmt: skip


def normalize_prompt(text: str) -> str:
    """The text compared for exact duplicates: case-folded, whitespace runs collapsed to one space, stripped."""
    return " ".join(str(text).casefold().split())


def prompt_key(text: str) -> int:
    """64-bit key of a prompt: xxhash64 (seed 0) of the UTF-8 of :func:`normalize_prompt`.

    Examples
    --------
    >>> prompt_key("Name  three\\tcolours") == prompt_key("name three colours ")
    True
    """
    import xxhash

    return xxhash.xxh64_intdigest(normalize_prompt(text).encode("utf-8", "surrogatepass"))


def prompt_keys(texts: Iterable[str]) -> np.ndarray:
    """:func:`prompt_key` of every text, ndarray of shape (n,), uint64."""
    return np.fromiter((prompt_key(t) for t in texts), dtype=np.uint64)


def exact_duplicates(keys: np.ndarray, picks: np.ndarray) -> int:
    """Picks whose key repeats an earlier pick's key (picks minus distinct keys among them).

    Parameters
    ----------
    keys : ndarray of shape (n,), uint64
        :func:`prompt_key` of every pool row's first prompt.
    picks : ndarray of shape (b,), int
        The picked pool rows.

    Returns
    -------
    count : int

    Examples
    --------
    >>> exact_duplicates(np.array([5, 5, 7, 5], dtype=np.uint64), np.array([0, 1, 2, 3]))
    2
    """
    picked = np.asarray(keys)[np.asarray(picks, dtype=np.int64)]
    return int(picked.size - np.unique(picked).size)


def near_duplicate_mask(
    X_picks: np.ndarray, tau: float = 0.95, *, index: Index = "auto", seed: int = 0
) -> tuple[np.ndarray, str]:
    """Which picks have a cosine above ``tau`` to another pick, and the search plan used.

    Returns
    -------
    mask : ndarray of shape (b,), bool
    plan : str
        ``"exact"`` or the cell search's ``"ivf:..."`` (:func:`kmq.metrics._search.search_plan`).
    """
    tau = float(check_number(tau, "tau", "near_duplicates", low=-1.0, high=1.0, closed="[]"))
    X = np.asarray(X_picks)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.floating):
        raise InvalidParameterError(
            f"The 'X_picks' parameter of near_duplicates must be a float array of shape (b, d) of L2-normalised "
            f"rows. Got shape {X.shape} and dtype {X.dtype} instead."
        )
    if len(X) < 2:
        return np.zeros(len(X), dtype=bool), "exact"
    X = np.ascontiguousarray(X, dtype=np.float32)
    similarity, plan = nearest_similarity(X, X, exclude_self=True, index=index, seed=seed)
    return similarity > tau, plan


def near_duplicates(X_picks: np.ndarray, tau: float = 0.95, *, index: Index = "auto", seed: int = 0) -> int:
    """Number of picks with a cosine above ``tau`` to another pick (a faiss search among the picks).

    Parameters
    ----------
    X_picks : ndarray of shape (b, d), float32
        L2-normalised rows of the picks.
    tau : float, default=0.95
        Cosine threshold, in [-1, 1].
    index : {"auto", "exact", "ivf"}, default="auto"
        ``"auto"`` searches exactly up to ``EXACT_PAIRS`` pairs (about 11,500 picks), then by cells.
    seed : int, default=0

    Returns
    -------
    count : int
        Both rows of a near pair count (a pick whose only near neighbour is its twin is still a duplicate).

    Examples
    --------
    >>> X = np.array([[1, 0], [0.999, 0.0447], [0, 1]], dtype=np.float32)
    >>> near_duplicates(X / np.linalg.norm(X, axis=1, keepdims=True), 0.95)
    2
    """
    return int(near_duplicate_mask(X_picks, tau, index=index, seed=seed)[0].sum())
