"""Keep credentials out of everything kmq records: config.yaml, manifest.json, logs and error messages.

A URL may carry a user and password (``http://user:sk-...@host/v1``); kmq keeps the scheme, host and
path and replaces the user-info with ``***``. API keys themselves are only ever read from environment
variables and never reach a record.

>>> redact_url("judge:gpt-4o@http://me:sk-123@localhost:8000/v1")
'judge:gpt-4o@http://***@localhost:8000/v1'
>>> redact({"scorer": "judge:m@https://u:p@h/v1", "n": [1, "x"]})
{'scorer': 'judge:m@https://***@h/v1', 'n': [1, 'x']}
"""

from __future__ import annotations

import re
from typing import Any

_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def redact_url(text: str) -> str:
    """``text`` with the user-info of every URL in it (``user:password@``) replaced by ``***@``."""
    return _USERINFO.sub(r"\1***@", text)


def redact(obj: Any) -> Any:
    """A copy of a JSON-like value (dicts, lists, tuples, strings) with :func:`redact_url` applied to every string."""
    if isinstance(obj, str):
        return redact_url(obj)
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return obj
