"""A pool's normalized turns held in Arrow: bytes in three flat arrays, not one Python dict per turn.

:class:`Messages` is what :attr:`kmq.data.Pool.messages` holds: a read-only sequence (``len``, ``[i]``,
slices, iteration) whose items are the lists of ``{"role", "content"}`` dicts callers always got, built
on access. Underneath, every turn of every record sits in one of three arrays:

- ``offsets`` (n + 1,) int64: record i's turns are ``offsets[i]:offsets[i + 1]``;
- ``roles`` (turns,) int8: an index into :data:`ROLES`;
- ``contents``: a ``pyarrow.LargeBinaryArray`` of the turns' UTF-8 bytes. A lone surrogate (``"\\ud800"``,
  which JSON allows and kmq keeps) is stored with Python's ``surrogatepass`` encoding, so every text comes
  back exactly as read; ``utf8`` says whether the bytes are valid UTF-8 (they are unless such a text occurs).

Text views (:meth:`Messages.text_array`) are computed in Arrow: ``binary_join`` over list arrays, with the
roles of a view selected by a mask and the offsets recounted. They are computed for a range of records on each
call and not kept (a whole view of 10M records is about a GB): the batch readers (:meth:`Messages.iter_texts`,
:meth:`Messages.text_batches`, :class:`LazyTexts`) hold one batch's bytes at a time.
"""

from __future__ import annotations

import operator
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kmq.data.formats import MESSAGE_ROLES, Turn

__all__ = ["ROLES", "LazyTexts", "Messages", "MessagesBuilder"]

#: role codes of :attr:`Messages.roles`
ROLES = MESSAGE_ROLES
_CODE = {role: np.int8(i) for i, role in enumerate(ROLES)}
_VIEW_CODES = {"prompt": (_CODE["system"], _CODE["user"]), "response": (_CODE["assistant"],)}
_SEP = pa.scalar(b"\n\n", pa.large_binary())
_BATCH = 8192


def _binary(contents: list[str]) -> tuple[pa.Array, bool]:
    """Contents as a LargeBinaryArray, and whether they are valid UTF-8 (no lone surrogate)."""
    try:
        return pa.array(contents, pa.large_string()).view(pa.large_binary()), True
    except UnicodeEncodeError:
        raw = [c.encode("utf-8", "surrogatepass") for c in contents]
        return pa.array(raw, pa.large_binary()), False


class MessagesBuilder:
    """Append records' turns one record at a time; every ``chunk`` records go to Arrow, so Python objects stay few."""

    def __init__(self, chunk: int = 65536) -> None:
        self.chunk = chunk
        self._offsets = array("q", [0])  # 8 bytes a record, no int objects
        self._roles = bytearray()
        self._contents: list[str] = []
        self._records = 0
        self._chunks: list[pa.Array] = []
        self._utf8 = True

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def append(self, turns: list[Turn]) -> None:
        """Add one record's normalized turns (roles from :data:`ROLES`, str contents)."""
        for turn in turns:
            self._roles.append(_CODE[turn["role"]])
            self._contents.append(turn["content"])
        self._offsets.append(len(self._roles))
        self._records += 1
        if self._records >= self.chunk:
            self._flush()

    def extend(self, counts: np.ndarray, roles: np.ndarray, contents: pa.Array) -> None:
        """Add records whose turns are already in Arrow: ``counts`` (records,) turns each, their ``roles``
        (turns,) int8 codes and ``contents`` (a LargeBinaryArray of valid UTF-8), record after record."""
        self._flush()
        ends = np.cumsum(counts, dtype=np.int64) + self._offsets[-1]
        self._offsets.frombytes(ends.tobytes())
        self._roles += roles.astype(np.int8).tobytes()
        self._chunks.append(contents)

    def _flush(self) -> None:
        if self._contents:
            arr, ok = _binary(self._contents)
            self._chunks.append(arr)
            self._utf8 &= ok
        self._contents, self._records = [], 0

    def build(self) -> Messages:
        self._flush()
        contents = pa.concat_arrays(self._chunks) if self._chunks else pa.array([], pa.large_binary())
        self._chunks = []
        pa.default_memory_pool().release_unused()  # the chunks (and a reader's tables): pages back to the system
        offsets = np.frombuffer(self._offsets, dtype=np.int64).copy()
        self._offsets = array("q", [0])
        roles = np.frombuffer(bytes(self._roles), dtype=np.int8)
        return Messages(offsets, roles, contents, utf8=self._utf8)


class Messages(Sequence):
    """Read-only turns of n records (module docstring); ``messages[i]`` is record i's list of turn dicts.

    Parameters
    ----------
    offsets : ndarray of shape (n + 1,), int64
    roles : ndarray of shape (turns,), int8
        Indices into :data:`ROLES`.
    contents : pyarrow.LargeBinaryArray of length turns
    utf8 : bool
        Whether every content is valid UTF-8 (else lone surrogates are ``surrogatepass``-encoded).

    Examples
    --------
    >>> m = Messages.from_turns([[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]])
    >>> len(m), m[0][1], m.texts("prompt")
    (1, {'role': 'assistant', 'content': 'Hello'}, ['Hi'])
    """

    def __init__(self, offsets: np.ndarray, roles: np.ndarray, contents: pa.Array, *, utf8: bool) -> None:
        self.offsets = offsets
        self.roles = roles
        self.contents = contents
        self.utf8 = utf8
        self._texts: dict[str, list[str]] = {}

    @classmethod
    def from_turns(cls, records: Sequence[list[Turn]]) -> Messages:
        """Build from in-memory lists of turns (a :class:`Messages` is returned as is)."""
        if isinstance(records, Messages):
            return records
        builder = MessagesBuilder()
        for turns in records:
            builder.append(turns)
        return builder.build()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __repr__(self) -> str:
        return f"Messages(n={len(self)}, turns={len(self.roles)}, bytes={self.contents.nbytes})"

    @property
    def nbytes(self) -> int:
        """Bytes held: contents, offsets and roles."""
        return int(self.contents.nbytes + self.offsets.nbytes + self.roles.nbytes)

    def _decode(self, contents: pa.Array) -> list[str]:
        if self.utf8:
            return contents.view(pa.large_string() if pa.types.is_large_binary(contents.type) else pa.string()
                                 ).to_pylist()  # fmt: skip
        return [b.decode("utf-8", "surrogatepass") for b in contents.to_pylist()]

    def _records(self, lo: int, hi: int) -> list[list[Turn]]:
        """Records ``lo:hi`` as lists of turn dicts (one decode of their contents)."""
        offsets = self.offsets[lo : hi + 1]
        start, stop = int(offsets[0]), int(offsets[-1])
        texts = self._decode(self.contents.slice(start, stop - start))
        roles = [ROLES[c] for c in self.roles[start:stop].tolist()]
        bounds = (offsets - start).tolist()
        return [
            [{"role": roles[t], "content": texts[t]} for t in range(a, b)]
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    def __getitem__(self, index: Any) -> Any:
        n = len(self)
        if isinstance(index, slice):
            lo, hi, step = index.indices(n)
            if step == 1:
                return self._records(lo, max(lo, hi))
            return [self[i] for i in range(lo, hi, step)]
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"Messages indices must be integers or slices, not {type(index).__name__}") from None
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"Messages index {index} out of range for {n} records")
        return self._records(i, i + 1)[0]

    def batches(self, batch_size: int = _BATCH) -> Iterator[list[list[Turn]]]:
        """Yield the records as lists of turn lists, ``batch_size`` records at a time."""
        for lo in range(0, len(self), batch_size):
            yield self._records(lo, min(len(self), lo + batch_size))

    def __iter__(self) -> Iterator[list[Turn]]:
        for batch in self.batches():
            yield from batch

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Messages):
            return (
                np.array_equal(self.offsets, other.offsets)
                and np.array_equal(self.roles, other.roles)
                and self.contents.equals(other.contents)
            )
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------------- text views

    def text_array(self, view: str, lo: int = 0, hi: int | None = None) -> pa.Array:
        """One text per record ``lo:hi`` (all by default) for ``view`` (``conversation``, ``prompt``,
        ``response``), as an Arrow array.

        A ``pyarrow.LargeStringArray`` when the contents are valid UTF-8, else a ``LargeBinaryArray`` of
        ``surrogatepass`` bytes. Computed on each call and not kept (a whole view of 10M records is about a GB):
        walk a big pool with :meth:`text_batches`.
        """
        hi = len(self) if hi is None else max(lo, min(hi, len(self)))
        offsets = self.offsets[lo : hi + 1]
        start, stop = int(offsets[0]), int(offsets[-1])
        contents = self.contents.slice(start, stop - start)
        offsets = offsets - start
        if view != "conversation":
            mask = np.isin(self.roles[start:stop], _VIEW_CODES[view])
            counts = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
            offsets, contents = counts[offsets], contents.filter(pa.array(mask))
        lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), contents)
        joined = pc.binary_join(lists, _SEP)
        return joined.view(pa.large_string()) if self.utf8 else joined

    def text_batches(self, view: str, batch_size: int = _BATCH) -> Iterator[pa.Array]:
        """Yield :meth:`text_array` of ``view`` ``batch_size`` records at a time."""
        for lo in range(0, len(self), batch_size):
            yield self.text_array(view, lo, lo + batch_size)

    def texts(self, view: str) -> list[str]:
        """One Python str per record for ``view`` (see :meth:`text_array`), decoded once and kept.

        Every call returns the same list (do not mutate it): a run that hashes a view and then encodes it
        decodes it once. Only the views asked for are held; :meth:`release_texts` drops them. The Arrow view is
        not kept.
        """
        if view not in self._texts:
            self._texts[view] = self._decode(self.text_array(view).view(pa.large_binary()))
        return self._texts[view]

    def release_texts(self, *views: str) -> None:
        """Drop the Python strings :meth:`texts` keeps for ``views`` (all views when none is given)."""
        for view in views or list(self._texts):
            self._texts.pop(view, None)

    def iter_texts(self, view: str, batch_size: int = _BATCH) -> Iterator[list[str]]:
        """Yield :meth:`texts` ``batch_size`` records at a time (slices of the kept list when there is one, else
        decoded a batch at a time and not kept)."""
        kept = self._texts.get(view)
        if kept is not None:
            for lo in range(0, len(kept), batch_size):
                yield kept[lo : lo + batch_size]
            return
        for arr in self.text_batches(view, batch_size):
            yield self._decode(arr.view(pa.large_binary()))

    def lazy_texts(self, view: str, batch_size: int = _BATCH) -> LazyTexts:
        """The texts of ``view`` as a sequence that decodes them on access, a batch at a time (no list of n str)."""
        return LazyTexts(self, view, batch_size)

    def first_user(self, lo: int = 0, hi: int | None = None) -> list[str]:
        """The first user turn's content of records ``lo:hi``, all by default (``""`` when there is none).

        A range lets a caller walk the pool a batch at a time (no list of n str: H1, 10M rows).
        """
        hi = len(self) if hi is None else max(lo, min(hi, len(self)))
        starts, stops = self.offsets[lo:hi], self.offsets[lo + 1 : hi + 1]
        base = int(self.offsets[lo])
        user = base + np.flatnonzero(self.roles[base : int(self.offsets[hi])] == _CODE["user"])
        if not len(user):
            return [""] * (hi - lo)
        pos = np.searchsorted(user, starts)  # first user turn at or after each record's start
        pos = np.minimum(pos, len(user) - 1)
        first = user[pos]
        has = (first >= starts) & (first < stops)
        taken = self._decode(self.contents.take(pa.array(np.where(has, first, 0))))
        return [t if h else "" for t, h in zip(taken, has.tolist(), strict=True)]


class LazyTexts(Sequence):
    """One view's texts, decoded on access: ``len``, ``[i]`` and iteration in batches (:meth:`Messages.lazy_texts`)."""

    def __init__(self, messages: Messages, view: str, batch_size: int = _BATCH) -> None:
        self.messages, self.view, self.batch_size = messages, view, batch_size

    def __len__(self) -> int:
        return len(self.messages)

    def __getitem__(self, index: Any) -> Any:
        kept = self.messages._texts.get(self.view)
        if kept is not None:
            return kept[index]
        n, messages = len(self.messages), self.messages
        if isinstance(index, slice):
            lo, hi, step = index.indices(n)
            if step != 1:
                return [self[i] for i in range(lo, hi, step)]
            return messages._decode(messages.text_array(self.view, lo, max(lo, hi)).view(pa.large_binary()))
        i = operator.index(index)
        i = i + n if i < 0 else i
        if not 0 <= i < n:
            raise IndexError(f"text index {index} out of range for {n} records")
        return messages._decode(messages.text_array(self.view, i, i + 1).view(pa.large_binary()))[0]

    def __iter__(self) -> Iterator[str]:
        for batch in self.messages.iter_texts(self.view, self.batch_size):
            yield from batch
