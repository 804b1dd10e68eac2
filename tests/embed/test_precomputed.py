"""``npy:PATH`` embeddings: any float dtype is accepted and normalised; everything else is one clear error."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from kmq.embed import l2_normalize, load_npy_embeddings
from kmq.errors import DataFormatError, KmqError, MissingArtifactError

N = 6


def _npz(path):
    np.savez(path.with_suffix(""), emb=np.ones((N, 4), dtype=np.float32))  # savez appends .npz
    path.with_suffix(".npz").rename(path)


def _truncated(path):
    np.save(path, np.ones((N, 4), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:-10])


BAD = [
    (lambda p: np.save(p, np.zeros((N, 0), dtype=np.float32)), r"got shape \(6, 0\) \(no columns\)"),
    (_npz, r"is a NumPy \.npz archive \(np\.savez\), not a \.npy array"),
    (lambda p: np.save(p, np.ones(N, dtype=np.float32)), r"got shape \(6,\) \(1 dimension\(s\)\)"),
    (lambda p: np.save(p, np.ones((N, 2, 2), dtype=np.float32)), r"got shape \(6, 2, 2\)"),
    (lambda p: np.save(p, np.array([[1, "a"]] * N, dtype=object), allow_pickle=True), r"holds Python objects"),
    (lambda p: np.save(p, np.ones((N, 4), dtype=np.int64)), r"expected a float array .* got dtype int64"),
    (lambda p: np.save(p, np.ones((N, 4), dtype=bool)), r"got dtype bool"),
    (lambda p: np.save(p, np.ones((N, 4), dtype=np.complex64)), r"got dtype complex64"),
    (lambda p: np.save(p, np.zeros(N, dtype=[("a", "f4"), ("b", "f4")])), r"expected a float array"),
    (lambda p: np.save(p, np.ones((N - 1, 4), dtype=np.float32)), r"has 5 rows but the pool has 6 records"),
    (lambda p: np.save(p, np.where(np.eye(N, 4) > 0, np.nan, 1.0)), r"row 0 contains NaN or inf \(dtype float64\)"),
    (lambda p: np.save(p, np.full((N, 4), 1.0, np.float16) * np.array([[1], [1], [np.inf], [1], [1], [1]])), "row 2"),
    (_truncated, r"it is truncated"),
    (lambda p: pickle.dump([[1.0] * 4] * N, open(p, "wb")), r"is not a \.npy file \(it starts with b'\\x80"),
    (lambda p: p.write_bytes(os.urandom(64)), r"is not a \.npy file"),
    (lambda p: p.write_bytes(b""), r"is not a \.npy file \(it is empty\)"),
]


@pytest.mark.parametrize(("make", "message"), BAD)
def test_bad_files_are_one_line_data_errors(tmp_path, make, message):
    path = tmp_path / "emb.npy"
    make(path)
    with pytest.raises(DataFormatError, match=message) as info:
        load_npy_embeddings(path, N)
    assert isinstance(info.value, KmqError) and "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(MissingArtifactError, match="not found"):
        load_npy_embeddings(tmp_path / "absent.npy", N)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.longdouble])
def test_float_dtypes_are_converted_and_normalised(tmp_path, dtype):
    X = np.random.default_rng(0).normal(size=(N, 5)).astype(dtype)
    X[3] = 0  # zero rows stay zero
    np.save(tmp_path / "e.npy", X)
    got = load_npy_embeddings(tmp_path / "e.npy", N)
    assert got.dtype == np.float32 and got.shape == (N, 5) and got.flags.c_contiguous
    np.testing.assert_allclose(got, l2_normalize(X.astype(np.float64)), atol=1e-6)
    assert not got[3].any()


def test_float32_result_is_unchanged_and_float64_beyond_float32_range_keeps_its_direction(tmp_path):
    X = np.random.default_rng(1).normal(size=(70_000, 3)).astype(np.float32)  # more rows than one chunk
    np.save(tmp_path / "a.npy", X)
    np.testing.assert_array_equal(load_npy_embeddings(tmp_path / "a.npy", len(X)), l2_normalize(X))
    big = np.array([[3e300, 4e300], [1e-300, 0.0]])
    np.save(tmp_path / "b.npy", big)
    np.testing.assert_allclose(load_npy_embeddings(tmp_path / "b.npy", 2), [[0.6, 0.8], [1.0, 0.0]], atol=1e-7)
