"""Which names lm-eval's ``TaskManager`` knows, without building its index (tens of seconds, for 14k YAML files).

lm-eval names a task, group or tag in its YAML files: ``task:`` (a task, or a Python task with ``class:``),
``group:`` (a group) and ``tag:`` (a tag over the tasks that list it), each merged over the files named by
``include:``. :func:`scan_task_names` reads those keys with a line scan of each file (the few values the scan
cannot read for certain, such as quoted or folded scalars, are parsed with PyYAML, one file at a time) and
applies the index's rules: sorted file order, first name wins, and a task skipped as a duplicate registers
no tags. The result is the set of ``TaskManager.all_tasks`` for the same folder, which
``benchmarks/bench_eval.py --index`` checks on the installed lm-eval's whole tree.

:func:`lm_eval_task_names` is that set for the installed lm-eval, cached per lm-eval version under
``$KMQ_CACHE_DIR/lm_eval_tasks/`` (written atomically; a cache that cannot be written only costs the scan).
The scan answers in about half a second, the cache in milliseconds; kmq uses it to reject an unknown task
name (with close matches) before anything builds lm-eval's index.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: bump when the scan's rules change (part of the cache key)
SCAN_VERSION = 1
_KEYS = ("task", "group", "tag", "include", "class")
_TOP = re.compile(r"^([\"']?)(task|group|tag|include|class)\1[ \t]*:(?:[ \t]+(.*?))?[ \t]*$", re.M)
_PLAIN = re.compile(r"[^\s'\"\[\]{}#&*!|>%@`,][^#]*?")
#: plain scalars that YAML 1.1 reads as something other than a string
_NOT_STR = re.compile(r"[-+]?(\.?\d[\d_.eE+-]*|0x[0-9a-fA-F_]+|\.inf|\.nan)|\d+(:[0-5]?\d)+(\.\d*)?|~"
                      r"|(?i:y|n|yes|no|true|false|on|off|null)")
_IGNORE_DIRS = {"__pycache__", ".ipynb_checkpoints"}
_UNSURE = object()  # a value the line scan cannot read for certain: parse the file with PyYAML


def lm_eval_task_names() -> frozenset[str]:
    """Every task, group and tag name of the installed lm-eval's own task folder (see the module docstring)."""
    import lm_eval  # not lm_eval.tasks, which imports datasets and torch (seconds)

    folder = Path(lm_eval.__file__).resolve().parent / "tasks"
    try:
        version = importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return _cached_names(str(folder), version, folder.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _cached_names(folder: str, version: str, mtime_ns: int) -> frozenset[str]:
    from kmq.cache import default_cache_dir, digest, write_json

    key = {"folder": folder, "lm_eval": version, "mtime_ns": mtime_ns, "scan": SCAN_VERSION}
    path = default_cache_dir() / "lm_eval_tasks" / f"{version}-{digest(key)}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("key") == key and isinstance(data.get("names"), list):
            return frozenset(data["names"])
    except (OSError, ValueError):
        pass
    names = scan_task_names([Path(folder)])
    try:
        write_json(path, {"key": key, "names": sorted(names)})
    except OSError as err:
        log.debug("lm-eval's task names not cached at %s: %s", path, err)
    return names


def scan_task_names(roots: Iterable[Path]) -> frozenset[str]:
    """The names ``TaskIndex.build(roots)`` registers (tasks, groups, tags), from a line scan of the YAML files."""
    names: set[str] = set()
    for root in roots:
        index: dict[Any, str] = {}  # name -> "task" | "group" | "tag", per root as lm-eval builds it
        top = os.path.realpath(root)  # below it paths are normalised, not resolved (a syscall per part)
        files = sorted((p for p in Path(top).glob("**/*.yaml") if not _IGNORE_DIRS.intersection(p.parts)),
                       key=lambda p: p.as_posix())  # fmt: skip
        raw: dict[str, dict[str, Any] | None] = {}
        for path in files:
            cfg = _merged(str(path), raw, set())
            if cfg is not None:
                _register(cfg, index)
        names.update(n for n in index if isinstance(n, str))  # a name YAML reads as a number is no task name
    return frozenset(names)


def _register(cfg: dict[str, Any], index: dict[Any, str]) -> None:
    """lm-eval's ``TaskIndex.process_cfg`` on the merged keys: what it registers, and where it stops on an error
    (a config of no known shape, a missing or unhashable name or tag); names that are not strings are kept."""
    tags = cfg.get("tag")
    if "class" in cfg or ("group" not in cfg and "task" in cfg):
        if "task" not in cfg or not _hashable(name := cfg["task"]) or name in index or not _settable(tags):
            return
        index[name] = "task"
        for tag in (tags if isinstance(tags, list) else [tags]) if tags else []:
            if not _hashable(tag):
                return
            index.setdefault(tag, "tag")
    elif "group" in cfg and _hashable(cfg["group"]) and cfg["group"] not in index and _settable(tags):
        index[cfg["group"]] = "group"


def _settable(tags: Any) -> bool:
    """Whether lm-eval's ``_str_to_set(tags)`` succeeds (it runs before the entry is registered)."""
    if tags is None or isinstance(tags, str):
        return True
    try:
        set().update(tags)
    except TypeError:
        return False
    return True


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _merged(path: str, raw: dict[str, dict[str, Any] | None], seen: set[str]) -> dict[str, Any] | None:
    """The file's keys merged over its includes' (lm-eval's ``load_yaml``); None where lm-eval skips the file.

    ``seen`` is every file read so far for this one: lm-eval refuses a file included twice, as a cycle.
    """
    if path in seen:
        return None
    seen.add(path)
    if path not in raw:
        raw[path] = _read_keys(path)
    cfg = raw[path]
    if cfg is None or "include" not in cfg:
        return cfg
    cfg = dict(cfg)
    includes = cfg.pop("include")
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        if not isinstance(inc, str):
            return None
        sub = _merged(os.path.normpath(os.path.join(os.path.dirname(path), os.path.expanduser(inc))), raw, seen)
        if sub is None:
            return None
        merged.update(sub)
    merged.update(cfg)
    return merged


def _read_keys(path: str) -> dict[str, Any] | None:
    """The top-level keys of :data:`_KEYS` in one YAML file, or None where it is not a YAML mapping."""
    try:
        with open(path, "rb") as fh:
            text = fh.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = _scan(text)
    if found is _UNSURE:
        return _parse(path)
    return found


def _scan(text: str) -> dict[str, Any] | object:
    """The keys from lines that start with ``key:``; :data:`_UNSURE` where a value needs a YAML parser."""
    if "\t" in text or re.search(r"^(---|\.\.\.)", text, re.M) or not re.search(r"^[\w\"']", text, re.M):
        return _UNSURE  # tabs, several documents or no top-level key: let PyYAML decide
    out: dict[str, Any] = {}
    for m in _TOP.finditer(text):
        key, value = m.group(2), m.group(3)
        if key == "class":
            parsed = value  # only its presence counts
        elif value:
            parsed = _scalar_or_flow(value)
        else:
            parsed = _block_list(text, m.end(), want_items=key != "task")
        if parsed is _UNSURE:
            return _UNSURE
        out[key] = parsed
    return out


def _scalar_or_flow(value: str) -> Any:
    if value.startswith("!"):
        return _UNSURE  # a tag (``!function``: lm-eval reads a path beside the file)
    if value.startswith("[") and value.endswith("]"):
        items = [_scalar_or_flow(v.strip()) for v in value[1:-1].split(",") if v.strip()]
        return _UNSURE if any(i is _UNSURE or not isinstance(i, str) for i in items) else items
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" and value[0] not in value[1:-1]:
        return value[1:-1] if "\\" not in value else _UNSURE
    if "#" in value:  # a comment after the value
        value = value.split(" #", 1)[0].rstrip()
    if not _PLAIN.fullmatch(value) or ": " in value or _NOT_STR.fullmatch(value):
        return _UNSURE
    return value


def _block_list(text: str, start: int, *, want_items: bool) -> Any:
    """The block sequence under a key with no inline value (``- a`` lines); a group's task list needs no items."""
    items: list[Any] = []
    for line in text[start:].split("\n")[1:]:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            break  # the next top-level key
        if not stripped.startswith("- ") and stripped != "-":
            if not items:
                return _UNSURE  # a mapping or a multi-line scalar under the key
            continue  # the rest of a mapping item
        if want_items:
            item = _scalar_or_flow(stripped[2:].strip())
            if item is _UNSURE:
                return _UNSURE
            items.append(item)
        else:
            items.append(None)
    return items if items else _UNSURE


def _parse(path: str) -> dict[str, Any] | None:
    """The keys as lm-eval's index reads them (C-accelerated safe loader, ``!function`` as a path beside the file)."""
    import yaml

    base = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader

    class _Loader(base):  # type: ignore[misc, valid-type]
        pass

    base_dir = Path(path).parent.expanduser()  # lm-eval's loader without resolving functions: a path
    _Loader.add_constructor("!function", lambda loader, node: str(base_dir / loader.construct_scalar(node)))
    try:
        with open(path, "rb") as fh:
            cfg = yaml.load(fh, Loader=_Loader)  # noqa: S506 - a safe loader with one more tag
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(cfg, dict):
        return None
    return {k: cfg[k] for k in _KEYS if k in cfg}
