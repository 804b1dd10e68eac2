"""Without Chromium the browser tests skip with the reason, except in CI (``CI=true``), where they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST = "tests/report/test_report_browser.py::test_compare_page"


@pytest.mark.parametrize(("ci", "outcome"), [("", "1 skipped"), ("true", "1 error")])
def test_no_chromium(ci, outcome):
    env = {**os.environ, "KMQ_CHROMIUM": "/nonexistent/chromium", "CI": ci}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", TEST], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert outcome in res.stdout, res.stdout[-2000:]
    assert "KMQ_CHROMIUM=/nonexistent/chromium is not an executable" in res.stdout
    if ci:
        assert res.returncode != 0 and "CI=true but" in res.stdout
