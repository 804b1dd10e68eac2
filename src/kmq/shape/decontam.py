"""Decontamination: find pool records whose prompts overlap evaluation sets.

A pool record is contaminated by an eval record when

``exact``
    their normalised prompts are equal (this catches eval prompts shorter than ``ngram`` words), or
``ngram``
    the pool prompt contains a run of ``ngram`` consecutive words (13 by default, as in the GPT-3 paper and
    lm-eval's decontamination janitor) that also occurs in the eval prompt.

Normalisation (:func:`words`): Unicode case folding (``str.casefold``), then words are the maximal runs of
letters, digits and combining marks; everything else (white space, punctuation, symbols, ``_``) separates
words. lm-eval's janitor lower-cases ASCII, *deletes* ASCII punctuation and splits on white space, so
``"well-known"`` is one word there and two here; splitting makes an edit of a hyphen or an apostrophe
(``’`` for ``'``) change nothing. Scripts written without spaces (Chinese, Japanese) give one word per run
of characters, as in the janitor.

How it scales: the eval prompts' words form a vocabulary; each pool word becomes its index there (Arrow's
hash lookup, unknown words break every n-gram through them), each n-gram of indices a 64-bit polynomial
hash, probed first in a presence table and then in the sorted eval hashes. Every hash hit is then checked
word by word against the eval n-gram, so a hash collision never flags a record; at worst two n-grams of one
eval record sharing a hash could hide a match (about m**2 / 2**65 per eval record of m n-grams). The
per-record work is ``str.casefold`` (about 3 s per million prompts) and Arrow's tokenisation in C++; nothing
loops over pairs in Python.

Eval sets (:func:`load_eval_set`, in :mod:`kmq.shape.evalsets`, re-exported here) are files kmq's readers take
(JSON Lines, JSON, Parquet, CSV, TSV, ``.gz``, ``.zip``) or a folder holding one such file (a datakit eval set),
optionally ``PATH:FIELD``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kmq.data.formats import LONE_SURROGATE
from kmq.errors import InvalidParameterError, invalid_parameter
from kmq.shape.evalsets import PROMPT_FIELDS, EvalSet, load_eval_set

__all__ = ["DEFAULT_NGRAM", "PROMPT_FIELDS", "Contamination", "EvalSet", "decontaminate", "load_eval_set", "words"]

logger = logging.getLogger(__name__)

DEFAULT_NGRAM = 13
#: what separates words: anything but a letter, a digit or a combining mark (RE2 syntax, used by Arrow)
SEPARATOR = r"[^\pL\pN\pM]+"
_P = np.uint64(0x100000001B3)  # FNV-64 prime, odd: the polynomial base of the n-gram hash
_BATCH = 65536


# ----------------------------------------------------------------------------------------------- matching


@dataclass
class Contamination:
    """What :func:`decontaminate` found.

    Attributes
    ----------
    mask : ndarray of shape (n,), bool
        True for a pool record that matches at least one eval record.
    per_set : dict of str to int
        Pool records matched per eval set (a record matching two sets counts in both).
    matches : pyarrow.Table
        One row per (pool record, eval record) pair: ``id``, ``eval_set``, ``eval_id``, ``kind``
        (``"exact"`` or ``"ngram"``; a pair that is both is ``"exact"``), in pool order, then eval set order.
    ngram : int
        The n-gram length used.
    eval_sizes : dict of str to int
        Records per eval set.
    seconds : float
        Wall time of the matching.
    """

    mask: np.ndarray
    per_set: dict[str, int]
    matches: Any
    ngram: int
    eval_sizes: dict[str, int]
    seconds: float
    eval_sources: dict[str, str] = field(default_factory=dict)

    @property
    def n_contaminated(self) -> int:
        return int(self.mask.sum())

    def stats(self) -> dict[str, Any]:
        """JSON-able counts for the manifest."""
        kinds = self.matches.column("kind").to_numpy(zero_copy_only=False) if self.matches.num_rows else []
        return {
            "ngram": self.ngram,
            "pool_records": int(len(self.mask)),
            "contaminated": self.n_contaminated,
            "per_set": dict(self.per_set),
            "pairs": {"exact": int(np.sum(kinds == "exact")), "ngram": int(np.sum(kinds == "ngram"))},
            "eval_sets": {
                name: {"records": size, "source": self.eval_sources.get(name, "")}
                for name, size in self.eval_sizes.items()
            },
            "seconds": round(self.seconds, 3),
        }


def decontaminate(
    pool_ids: Sequence[str],
    pool_prompts: Sequence[str],
    eval_sets: Sequence[EvalSet | str | Path],
    *,
    ngram: int = DEFAULT_NGRAM,
    batch_size: int = _BATCH,
) -> Contamination:
    """Find the pool records whose prompts overlap the eval sets (see the module docstring for the rule).

    Parameters
    ----------
    pool_ids : sequence of str, length n
    pool_prompts : sequence of str, length n
        The text of each pool record to check (for example its user turns joined by blank lines).
    eval_sets : sequence of EvalSet, str or Path
        Loaded sets, or specs for :func:`load_eval_set`. Two sets with one name get ``-2``, ``-3``... suffixes.
    ngram : int, default 13
        Words per n-gram, >= 1.
    batch_size : int, default 65536
        Pool records tokenised at a time (memory is about 1 kB per record of 300 characters).

    Returns
    -------
    Contamination

    Examples
    --------
    >>> ev = EvalSet("toy", ["q1"], ["What is the capital of France?"], "<toy>")
    >>> found = decontaminate(["a", "b"], ["what is the CAPITAL of france", "Name a city."], [ev])
    >>> found.mask.tolist(), found.per_set
    ([True, False], {'toy': 1})
    """
    start = time.perf_counter()
    if not isinstance(ngram, (int, np.integer)) or isinstance(ngram, bool) or ngram < 1:
        raise invalid_parameter("ngram", "decontaminate", "an int >= 1", ngram)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise invalid_parameter("batch_size", "decontaminate", "an int >= 1", batch_size)
    if len(pool_ids) != len(pool_prompts):
        raise InvalidParameterError(
            f"pool_ids has {len(pool_ids)} entries but pool_prompts has {len(pool_prompts)}; pass one prompt per id."
        )
    sets = _unique_names([s if isinstance(s, EvalSet) else load_eval_set(s) for s in eval_sets])
    index = _EvalIndex(sets, int(ngram))
    n = len(pool_prompts)
    rows, evals, kinds = [], [], []
    for lo in range(0, n, batch_size):
        r, e, k = index.match(pool_prompts[lo : lo + batch_size])
        rows.append(r + lo)
        evals.append(e)
        kinds.append(k)
    row = np.concatenate(rows) if rows else np.empty(0, np.int64)
    ev = np.concatenate(evals) if evals else np.empty(0, np.int64)
    kind = np.concatenate(kinds) if kinds else np.empty(0, bool)
    mask = np.zeros(n, dtype=bool)
    mask[row] = True
    set_of = index.set_of[ev]
    per_set = {}
    for s, evalset in enumerate(sets):
        per_set[evalset.name] = int(len(np.unique(row[set_of == s])))
    found = Contamination(
        mask=mask,
        per_set=per_set,
        matches=_matches_table(pool_ids, sets, index, row, ev, kind),
        ngram=int(ngram),
        eval_sizes={s.name: len(s) for s in sets},
        seconds=time.perf_counter() - start,
        eval_sources={s.name: s.source for s in sets},
    )
    logger.info(
        "decontamination: %d of %d pool records match %s (%d-grams, %.1fs)",
        found.n_contaminated, n, per_set, ngram, found.seconds,
    )  # fmt: skip
    return found


def _unique_names(sets: list[EvalSet]) -> list[EvalSet]:
    seen: dict[str, int] = {}
    out = []
    for s in sets:
        k = seen[s.name] = seen.get(s.name, 0) + 1
        out.append(s if k == 1 else EvalSet(f"{s.name}-{k}", s.ids, s.prompts, s.source, s.field))
    return out


def _matches_table(pool_ids, sets, index, row, ev, kind) -> Any:
    import pyarrow as pa

    order = np.lexsort((ev, row))  # pool order, then eval records in set order
    row, ev, kind = row[order], ev[order], kind[order]
    pool_col = np.asarray(pool_ids, dtype=object)[row] if len(row) else np.empty(0, object)
    names = np.asarray([s.name for s in sets], dtype=object)
    eval_ids = np.asarray([i for s in sets for i in s.ids], dtype=object)
    return pa.table(
        {
            "id": pa.array(pool_col.tolist(), pa.string()),
            "eval_set": pa.array(names[index.set_of[ev]].tolist() if len(ev) else [], pa.string()),
            "eval_id": pa.array(eval_ids[ev].tolist() if len(ev) else [], pa.string()),
            "kind": pa.array(np.where(kind, "exact", "ngram").tolist(), pa.string()),
        }
    )


def words(texts: Sequence[str]) -> list[list[str]]:
    """The normalised words of each text, as decontamination compares them (see the module docstring).

    >>> words(["Janet’s ducks lay 16 eggs-per-day."])
    [['janet', 's', 'ducks', 'lay', '16', 'eggs', 'per', 'day']]
    """
    flat, offsets = _tokenise(texts)
    values = flat.to_pylist()
    return [values[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _tokenise(texts: Sequence[str]) -> tuple[Any, np.ndarray]:
    """Return (the words of all texts, one Arrow large_string array; offsets of shape (n+1,), int64)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _arrow_texts(texts)
    lists = pc.split_pattern_regex(arr, pattern=SEPARATOR)
    flat, parents = pc.list_flatten(lists), pc.list_parent_indices(lists)
    keep = pc.greater(pc.binary_length(flat), 0)  # a text starting or ending with a separator gives ""
    flat, parents = flat.filter(keep), parents.filter(keep).to_numpy()
    counts = np.bincount(parents, minlength=len(arr)) if len(parents) else np.zeros(len(arr), np.int64)
    offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return flat.cast(pa.large_string()), offsets


def _arrow_texts(texts: Sequence[str]) -> Any:
    """The case-folded texts as an Arrow array (``str.casefold``: also ``ß`` = ``ss``, ``µ`` = ``μ``)."""
    import pyarrow as pa

    values = ["" if t is None else t.casefold() for t in texts]
    try:
        return pa.array(values, pa.large_string())
    except (pa.ArrowException, UnicodeEncodeError):  # lone surrogates are not UTF-8
        return pa.array([LONE_SURROGATE.sub("\ufffd", t) for t in values], pa.large_string())


def _joined(flat: Any, offsets: np.ndarray) -> Any:
    """Each text's normalised form: its words joined by one space (Arrow large_string array)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = pa.LargeListArray.from_arrays(pa.array(offsets), flat)
    return pc.binary_join(lists, pa.scalar(" ", pa.large_string()))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: word indices (int64) -> well-spread uint64 (0 stays 0)."""
    z = x.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _ngrams(ids: np.ndarray, offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Start positions and hashes of the n-grams inside one text each and free of unknown words (id 0).

    Returns (starts of shape (m,), int64; hashes of shape (m,), uint64).
    """
    total = len(ids)
    if total < n:
        return np.empty(0, np.int64), np.empty(0, np.uint64)
    length = total - n + 1
    u = _mix(ids)
    h = np.zeros(length, dtype=np.uint64)
    for k in range(n):
        h *= _P
        h += u[k : k + length]
    lengths = np.diff(offsets)
    ends = np.repeat(offsets[1:], lengths)[:length]  # end of the text each position belongs to
    unknown = np.concatenate([[0], np.cumsum(ids == 0)])
    valid = (np.arange(length) + n <= ends) & (unknown[n:] == unknown[:length])
    starts = np.flatnonzero(valid)
    return starts, h[starts]


def _equal_pairs(sorted_keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (query index, position in ``sorted_keys``) pairs with equal keys; both int64 arrays."""
    lo = np.searchsorted(sorted_keys, queries, side="left")
    hi = np.searchsorted(sorted_keys, queries, side="right")
    count = hi - lo
    q = np.repeat(np.arange(len(queries)), count)
    step = np.arange(len(q)) - np.repeat(np.cumsum(count) - count, count)
    return q, np.repeat(lo, count) + step


class _EvalIndex:
    """The eval sets' vocabulary, n-gram hashes and normalised prompts, ready to probe with pool batches."""

    def __init__(self, sets: list[EvalSet], n: int) -> None:
        import pyarrow.compute as pc

        self.n = n
        prompts = [p for s in sets for p in s.prompts]
        self.set_of = np.repeat(np.arange(len(sets)), [len(s) for s in sets]).astype(np.int64)
        flat, offsets = _tokenise(prompts)
        self.vocab = pc.unique(flat)
        self.ids = pc.index_in(flat, value_set=self.vocab).to_numpy().astype(np.int64) + 1
        starts, hashes = _ngrams(self.ids, offsets, n)
        owner = np.repeat(np.arange(len(prompts)), np.diff(offsets))[starts]
        order = np.lexsort((starts, owner, hashes))
        self.hashes, self.owner, self.starts = hashes[order], owner[order], starts[order]
        keep = np.ones(len(order), dtype=bool)  # one entry per (hash, eval record): its first start
        keep[1:] = (self.hashes[1:] != self.hashes[:-1]) | (self.owner[1:] != self.owner[:-1])
        self.hashes, self.owner, self.starts = self.hashes[keep], self.owner[keep], self.starts[keep]
        bits = max(16, int(np.ceil(np.log2(max(1, len(self.hashes)) * 32))))
        self.shift = np.uint64(64 - bits)
        self.table = np.zeros(1 << bits, dtype=bool)
        self.table[self.hashes >> self.shift] = True
        norm = _joined(flat, offsets)
        self.norms = pc.unique(pc.filter(norm, pc.greater(pc.binary_length(norm), 0)))
        norm_index = pc.index_in(norm, value_set=self.norms).fill_null(-1).to_numpy()
        self.exact_order = np.argsort(norm_index, kind="stable")
        self.exact_keys = norm_index[self.exact_order]

    def match(self, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (batch row, eval record, is exact) triples of one batch of pool prompts, each pair once."""
        import pyarrow.compute as pc

        flat, offsets = _tokenise(prompts)
        norm = _joined(flat, offsets)
        pool_norm = pc.index_in(norm, value_set=self.norms).fill_null(-1).to_numpy().astype(np.int64)
        hit = np.flatnonzero(pool_norm >= 0)
        q, pos = _equal_pairs(self.exact_keys, pool_norm[hit])
        exact_rows, exact_evals = hit[q], self.exact_order[pos]
        rows, evals = self._ngram_pairs(flat, offsets)
        rows = np.concatenate([exact_rows, rows])
        evals = np.concatenate([exact_evals, evals])
        is_exact = np.concatenate([np.ones(len(exact_rows), bool), np.zeros(len(rows) - len(exact_rows), bool)])
        _, first = np.unique(rows * len(self.set_of) + evals, return_index=True)  # exact rows come first: they win
        return rows[first], evals[first], is_exact[first]

    def _ngram_pairs(self, flat: Any, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import pyarrow.compute as pc

        ids = pc.index_in(flat, value_set=self.vocab).fill_null(-1).to_numpy().astype(np.int64) + 1
        starts, hashes = _ngrams(ids, offsets, self.n)
        maybe = self.table[hashes >> self.shift]
        starts, hashes = starts[maybe], hashes[maybe]
        q, pos = _equal_pairs(self.hashes, hashes)
        if len(q) == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        span = np.arange(self.n)
        pool_words = ids[starts[q][:, None] + span]
        eval_words = self.ids[self.starts[pos][:, None] + span]
        same = np.all(pool_words == eval_words, axis=1)  # a hash collision is not a match
        row = np.searchsorted(offsets, starts[q][same], side="right") - 1
        return row.astype(np.int64), self.owner[pos][same]
