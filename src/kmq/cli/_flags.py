"""Command-line flags made from the config dataclasses: one setting = one flag = one help text.

A flag's type, ``choices`` and default shown in ``--help`` come from the field's declaration in
:mod:`kmq.config` / :mod:`kmq.loop.config` (its type hint and ``help`` metadata), so the command line and
the Python API cannot drift apart. A flag's value is stored under ``dest="set:<dotted key>"`` and
:func:`setting_overrides` turns the parsed flags into the dotted overrides the config builders take (a
flag that is not given is None and leaves the config file's value alone).

>>> import argparse
>>> from kmq.config import RunConfig
>>> p = argparse.ArgumentParser()
>>> setting(p, RunConfig, "cluster.niter", "--niter")
>>> setting_overrides(p.parse_args(["--niter", "5"]))
{'cluster.niter': 5}
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal

from kmq.config import _hints

PREFIX = "set:"


def setting(
    group: Any,
    config: type,
    key: str,
    flag: str,
    *,
    also: tuple[str, ...] = (),
    help: str | None = None,
    metavar: str | None = None,
) -> None:
    """Add ``flag`` for the dotted setting ``key`` of the config class ``config``.

    Parameters
    ----------
    group : argparse parser or argument group
    config : type
        The top-level config dataclass (``RunConfig``, ``IterateConfig``); its defaults are shown.
    key : str
        Dotted setting, e.g. ``"embed.batch_size"``.
    also : tuple of str
        Further dotted settings the same flag sets (``--device`` sets ``embed.device`` and ``score.device``).
    help : str, optional
        Replaces the field's help text (when one field has several flags, e.g. the judge's scorer).
    """
    f, tp, default = _field(config, key)
    base = _strip_none(tp)
    kwargs: dict[str, Any] = {"dest": PREFIX + "|".join((key, *also)), "default": None}
    text = help or f.metadata.get("help", "")
    if base is bool:
        kwargs["action"] = "store_true"
    elif typing.get_origin(base) is list and typing.get_args(base) == (str,):  # --flag A B, or --flag A --flag B
        kwargs.update(nargs="+", action="extend", metavar=metavar or key.rsplit(".", 1)[-1].upper())
    else:
        kwargs["type"], choices = _parser(base, key, flag)
        if choices:
            kwargs["choices"] = choices
        if not choices:
            kwargs["metavar"] = metavar or key.rsplit(".", 1)[-1].upper()
    if default not in (None, "", [], {}) and not isinstance(default, bool):
        text += f" (default {default})"
    group.add_argument(flag, help=text.replace("%", "%%"), **kwargs)


def setting_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The dotted config overrides of every flag made by :func:`setting` (None for flags not given)."""
    out: dict[str, Any] = {}
    dests = [(d[len(PREFIX) :].split("|"), v) for d, v in vars(args).items() if d.startswith(PREFIX)]
    for keys, value in sorted(dests, key=lambda kv: -len(kv[0])):  # a flag of its own beats a shared one
        for key in keys:
            if value is not None or key not in out:
                out[key] = value
    return out


def _field(config: type, key: str) -> tuple[dataclasses.Field, Any, Any]:
    cls, default_obj = config, config()
    *parents, leaf = key.split(".")
    for p in parents:
        default_obj = getattr(default_obj, p)
        cls = type(default_obj)
    f = next(x for x in dataclasses.fields(cls) if x.name == leaf)
    return f, _hints(cls)[leaf], getattr(default_obj, leaf)


def _strip_none(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007 - built at run time
    return tp


def _parser(tp: Any, key: str, flag: str) -> tuple[Any, list[Any] | None]:
    """An argparse ``type`` and ``choices`` for a type hint."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return type(args[0]), list(args)
    if tp in (int, float, str):
        return tp, None
    if origin is list and args == (int,):
        return _int_list(flag), None
    if origin in (typing.Union, types.UnionType) and int in args:  # int | Literal["auto"]
        words = [a for arg in args if typing.get_origin(arg) is Literal for a in typing.get_args(arg)]
        return _int_or(flag, words), None
    if origin in (typing.Union, types.UnionType) and str in args:  # str | list[str]
        return str, None
    return str, None


def _int_list(flag: str):
    def parse(text: str) -> list[int]:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects integers like 16,32,64; got {text!r}") from None

    parse.__name__ = "comma-separated ints"
    return parse


def _int_or(flag: str, words: list[str]):
    def parse(text: str) -> int | str:
        if text in words:
            return text
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects an int or {' | '.join(words)}; got {text!r}") from None

    parse.__name__ = f"int or {'/'.join(words)}"
    return parse
