"""Who was evaluated: the identity of a model or adapter that ``kmq eval`` records.

A local folder is identified by the SHA-256 of its files' relative names and bytes
(:func:`kmq.publish.sha256_tree`): any change to the weights, the tokenizer or the config changes it. A hub
name is identified by the commit of the snapshot that loaded (read from the local Hugging Face cache, so
nothing is downloaded for it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kmq import hf
from kmq.publish import sha256_tree

#: files whose snapshot names the commit of a hub model or adapter, tried in order
_HUB_PROBES = ("config.json", "adapter_config.json", "tokenizer_config.json")


def identity(name: str, *, revision: str | None = None, purpose: str) -> dict[str, Any]:
    """``{"name", "path", "fingerprint"}`` of a folder, ``{"name", "hub", "revision", "fingerprint"}`` of a hub name.

    Call it after the model loaded: a hub model is then in the cache, and its fingerprint is the commit sha of
    the snapshot there (None when the cache holds no snapshot of it, e.g. a model loaded from elsewhere).
    """
    src = hf.resolve(name, revision=revision, purpose=purpose)
    if src.local:
        path = Path(src.location).resolve()
        return {"name": name, "path": str(path), "fingerprint": "sha256:" + sha256_tree(path)}
    return {"name": name, "hub": name, "revision": revision, "fingerprint": hub_commit(name, revision=revision)}


def hub_commit(name: str, *, revision: str | None = None) -> str | None:
    """The commit sha of the cached snapshot of the hub repository ``name`` at ``revision`` (None if not cached)."""
    for probe in _HUB_PROBES:
        found = hf.cached_file(name, probe, revision=revision)
        if found is not None:
            snapshot = Path(found).parent
            if snapshot.parent.name == "snapshots":
                return snapshot.name
    return None
