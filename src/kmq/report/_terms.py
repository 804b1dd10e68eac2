"""Top terms of each cluster: tf-idf of the words of its previews against the whole pool.

A term's weight in cluster c is ``df_c(t) / n_c * log((1 + N) / (1 + df(t)))``: the share of the
cluster's previews that contain it, times its inverse document frequency over the pool. Terms in fewer
than two of the cluster's previews are dropped. At most ``sample`` previews (a seeded sample) are read,
so a 1M-row pool costs the same as a 200k one.
"""

from __future__ import annotations

import re

import numpy as np

WORD = re.compile(r"[^\W\d_][\w'-]{2,}", re.UNICODE)
STOP = frozenset(
    """the and for are but not you all any can had her was one our out has him his how its may new now old see two
    who boy did get let put say she too use that with have this will your from they know want been good much some
    time very when come here just like long make many more most only over such take than them well were what where
    which while would there their then these those into also about after again could does doing each other should
    being both down few off once same between through during before under above below further because until
    whom why own yes yet nor per via give given write following using used based answer question
    provide text please input output""".split()
)


def top_terms(previews: list[str], clusters: np.ndarray, k: int, *, n_terms: int = 8) -> dict[int, list[str]]:
    """The ``n_terms`` highest tf-idf words of each cluster (cluster id -> words, best first).

    Parameters
    ----------
    previews : list of str, length n
    clusters : ndarray of shape (n,), int64
        Cluster of each preview (negative: none; such rows count for the pool's document frequency only).
    k : int
        Number of clusters.
    """
    vocab: dict[str, int] = {}
    doc_terms: list[int] = []
    doc_of: list[int] = []
    for i, text in enumerate(previews):
        ids = {vocab.setdefault(w, len(vocab)) for w in WORD.findall(text.lower()) if w not in STOP}
        doc_terms.extend(ids)
        doc_of.extend([i] * len(ids))
    if not vocab:
        return {}
    terms = np.asarray(doc_terms, dtype=np.int64)
    cl = np.asarray(clusters, dtype=np.int64)[np.asarray(doc_of, dtype=np.int64)]
    V, N = len(vocab), len(previews)
    df = np.bincount(terms, minlength=V)
    idf = np.log((1.0 + N) / (1.0 + df))
    words = np.array(sorted(vocab, key=vocab.__getitem__), dtype=object)
    sizes = np.bincount(np.asarray(clusters, dtype=np.int64)[np.asarray(clusters) >= 0], minlength=k)
    keep = cl >= 0
    pairs, counts = np.unique(cl[keep] * V + terms[keep], return_counts=True)
    out: dict[int, list[str]] = {}
    pc, pt = pairs // V, pairs % V
    for c in np.unique(pc):
        sel = (pc == c) & (counts >= 2)
        if not sel.any():
            continue
        score = counts[sel] / max(sizes[c], 1) * idf[pt[sel]]
        order = np.lexsort((words[pt[sel]].astype(str), -score))[:n_terms]
        out[int(c)] = [str(w) for w in words[pt[sel]][order]]
    return out
