"""Top terms of each cluster: tf-idf of the words of its previews against the whole pool.

A term's weight in cluster c is ``df_c(t) / n_c * log((1 + N) / (1 + df(t)))``: the share of the
cluster's previews that contain it, times its inverse document frequency over the pool. Terms in fewer
than two of the cluster's previews are dropped. At most ``sample`` previews (a seeded sample) are read,
so a 1M-row pool costs the same as a 200k one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: a term: a letter, then at least two letters, digits, apostrophes or hyphens (after trimming punctuation)
TERM = r"^\p{L}[\p{L}\p{N}'-]{2,}$"
PUNCT = ".,;:!?()[]{}\"'`*#/\\<>=+|~^&%$@"
STOP = frozenset(
    """the and for are but not you all any can had her was one our out has him his how its may new now old see two
    who boy did get let put say she too use that with have this will your from they know want been good much some
    time very when come here just like long make many more most only over such take than them well were what where
    which while would there their then these those into also about after again could does doing each other should
    being both down few off once same between through during before under above below further because until
    whom why own yes yet nor per via give given write following using used based answer question
    provide text please input output""".split()
)


def top_terms(previews: Any, clusters: np.ndarray, k: int, *, n_terms: int = 8) -> dict[int, list[str]]:
    """The ``n_terms`` highest tf-idf words of each cluster (cluster id -> words, best first).

    Parameters
    ----------
    previews : list of str or pyarrow string Array, length n
    clusters : ndarray of shape (n,), int64
        Cluster of each preview (negative: none; such rows count for the pool's document frequency only).
    k : int
        Number of clusters.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = previews if isinstance(previews, (pa.Array, pa.ChunkedArray)) else pa.array(previews, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lists = pc.utf8_split_whitespace(pc.utf8_lower(arr))
    words = pc.utf8_trim(pc.list_flatten(lists), characters=PUNCT)
    doc = pc.list_parent_indices(lists)
    keep = pc.and_(pc.match_substring_regex(words, pattern=TERM), pc.invert(pc.is_in(words, pa.array(sorted(STOP)))))
    enc = pc.dictionary_encode(pc.filter(words, keep))
    if len(enc) == 0:
        return {}
    doc = np.asarray(pc.filter(doc, keep).to_numpy(), dtype=np.int64)
    ids = np.asarray(enc.indices.to_numpy(), dtype=np.int64)
    vocab = np.asarray(enc.dictionary.to_pylist(), dtype=object)
    V = len(vocab)
    pairs = _unique(doc * V + ids)  # each term once per preview
    doc, terms = pairs // V, pairs % V
    cl = np.asarray(clusters, dtype=np.int64)[doc]
    N = len(arr)
    df = np.bincount(terms, minlength=V)
    idf = np.log((1.0 + N) / (1.0 + df))
    words = vocab
    labels = np.asarray(clusters, dtype=np.int64)
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    keep = cl >= 0
    pairs, counts = _unique(cl[keep] * V + terms[keep], counts=True)  # sorted by cluster, then term
    frequent = counts >= 2
    pairs, counts = pairs[frequent], counts[frequent]
    pcl, pt = pairs // V, pairs % V
    bounds = np.searchsorted(pcl, np.arange(k + 1))
    out: dict[int, list[str]] = {}
    for c in range(k):
        lo, hi = bounds[c], bounds[c + 1]
        if lo == hi:
            continue
        score = counts[lo:hi] / max(sizes[c], 1) * idf[pt[lo:hi]]
        names = words[pt[lo:hi]]
        order = np.lexsort((names.astype(str), -score))[:n_terms]
        out[c] = [str(w) for w in names[order]]
    return out


def _unique(x: np.ndarray, *, counts: bool = False) -> Any:
    """Sorted unique values (and their counts) by one sort; numpy's hash-based unique is slower here."""
    x = np.sort(x)
    first = np.flatnonzero(np.r_[True, x[1:] != x[:-1]]) if len(x) else np.zeros(0, np.int64)
    if not counts:
        return x[first]
    return x[first], np.diff(np.r_[first, len(x)])
