"""Content-addressed artifact store, atomic writes, and the cached block-map of embedders and scorers.

Everything expensive is cached under one directory (``$KMQ_CACHE_DIR``, default ``~/.cache/kmq``):

``vectors/<embedder-key>/shard-*/`` (and ``scores/<scorer-key>/shard-*/``)
    Per-text rows (vectors, or per-example scores) keyed by a 128-bit BLAKE2b digest of the text, written
    a shard at a time as blocks finish: :class:`VectorStore` (``_vectors.py``, over the per-process index
    of ``_index.py``). :func:`cached_map` (``_map.py``) is the loop that fills and reads it, for embedders
    and scorers alike.
``artifacts/<kind>/<key>/``
    Whole-array results (cluster labels and centroids, quality scores) keyed by a digest of
    everything that determines them: :class:`ArtifactStore` (``_arrays.py``).

Nothing is pickled: arrays are ``.npy`` (loaded with ``allow_pickle=False``) and metadata is JSON. Every
entry's arrays carry digests checked on read (``_arrays.py``); a damaged entry is a miss, recomputed and
replaced. A cache folder that cannot be written is not an error: the run goes on uncached, with one warning.

The modules of this package:

``_files.py``
    :func:`digest` (cache keys), :func:`atomic_path`, :func:`write_text`, :func:`write_json`,
    :func:`default_cache_dir`, :func:`progress_enabled`.
``_keys.py``
    Per-text content keys: :func:`text_keys` (V16), :func:`unique_keys`.
``_arrays.py``
    :func:`array_digest`, :func:`save_arrays`, :func:`load_arrays`, :class:`ArtifactStore`, the
    integrity checks and their one-per-run warnings.
``_index.py``, ``_vectors.py``, ``_map.py``
    The per-text row store and the cached block-map, as above.

Import from ``kmq.cache``: the modules are its layout, not its interface.
"""

from __future__ import annotations

from kmq.cache._arrays import _VERIFIED as _VERIFIED
from kmq.cache._arrays import _WARNED as _WARNED
from kmq.cache._arrays import ArtifactStore, array_digest, load_arrays, save_arrays
from kmq.cache._files import _json_default as _json_default
from kmq.cache._files import (
    atomic_path,
    default_cache_dir,
    digest,
    digest_update,
    progress_enabled,
    write_json,
    write_text,
)
from kmq.cache._index import _OPEN as _OPEN
from kmq.cache._keys import KEY_DTYPE, text_keys, unique_keys
from kmq.cache._map import CachedMap, cached_map
from kmq.cache._vectors import COMPACT_AFTER, COMPACT_BYTES, GATHER_ROWS, VectorStore

__all__ = [
    "COMPACT_AFTER",
    "COMPACT_BYTES",
    "GATHER_ROWS",
    "KEY_DTYPE",
    "ArtifactStore",
    "CachedMap",
    "VectorStore",
    "array_digest",
    "atomic_path",
    "cached_map",
    "default_cache_dir",
    "digest",
    "digest_update",
    "load_arrays",
    "progress_enabled",
    "save_arrays",
    "text_keys",
    "unique_keys",
    "write_json",
    "write_text",
]
