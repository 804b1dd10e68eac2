"""pool.parquet's ``preview`` column: the first PREVIEW_CHARS characters of each prompt, sliced in Arrow."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.data import Pool
from kmq.data.formats import LONE_SURROGATE
from kmq.selection import PREVIEW_CHARS, _previews


def _reference(pool: Pool) -> list[str]:
    return [LONE_SURROGATE.sub("\ufffd", t[:PREVIEW_CHARS]) for t in pool.texts("prompt")]


_TEXT = st.text(st.sampled_from(["a", " ", "é", "€", "😀", "\n", "字"]), max_size=2 * PREVIEW_CHARS)


@settings(max_examples=60, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=12), st.booleans())
def test_previews_equal_python_slices(prompts: list[str], surrogate: bool) -> None:
    if surrogate:  # a lone surrogate somewhere: the batch-decoding branch
        prompts = [*prompts[:-1], prompts[-1] + "\ud800"]
    pool = Pool.from_records([{"instruction": p, "output": "x"} for p in prompts])
    assert pa.types.is_large_binary(pool.text_array("prompt").type) == surrogate
    got = _previews(pool)
    assert got.type == pa.string()
    assert got.to_pylist() == _reference(pool)
