"""Lazy re-exports for package ``__init__`` modules, so importing a package loads no heavy library.

In a package's ``__init__``::

    _LAZY = {"Selection": "kmq.selection"}
    __getattr__ = lazy_getattr(__name__, _LAZY)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_getattr(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that imports ``names[name]`` on the first use of ``name``.

    Parameters
    ----------
    module : str
        The package's ``__name__``. The loaded value is stored in the package's globals, so each import
        runs once and later lookups never reach ``__getattr__``.
    names : dict of str to str
        Public name -> the module that defines it.

    Returns
    -------
    __getattr__ : callable
        Raises AttributeError, as Python does, for any other name.
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(sys.modules[module], name, value)
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
