"""The input checks of the selection methods, in the one message form of :mod:`kmq.errors`.

:mod:`kmq.methods.registry` runs the common ones once, before any registered method is called: the pool
size and budget, the random state, and each input the method's signature asks for (labels, quality,
embeddings, centroids). The method itself checks only its own parameters, with :func:`check_number`,
:func:`check_choice` and :func:`check_bool`. The pure functions (:mod:`~kmq.methods.allocate`,
:mod:`~kmq.methods.draw`) use the same checks.
"""

from __future__ import annotations

import math

import numpy as np

from kmq.errors import InvalidParameterError, invalid_parameter
from kmq.methods._arrays import row_chunk

__all__ = [
    "check_bool",
    "check_budget",
    "check_centroids",
    "check_choice",
    "check_embeddings",
    "check_labels",
    "check_number",
    "check_random_state",
    "check_scores",
    "check_temperature",
]

_NORM_TOL = 1e-3


def check_random_state(
    random_state: np.random.Generator | int | None, owner: str = "kmq.methods"
) -> np.random.Generator:
    """Turn ``int | Generator | None`` into a ``np.random.Generator`` (a Generator is returned as is)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state)
    raise invalid_parameter("random_state", owner, "an int, a numpy.random.Generator or None", random_state)


def check_budget(n: int, budget: int, owner: str) -> tuple[int, int]:
    """Validate the pool size ``n >= 0`` and ``0 <= budget <= n``; returns them as ints."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise invalid_parameter("n", owner, "an int in the range [0, inf)", n)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or not 0 <= budget <= n:
        raise InvalidParameterError(
            f"The 'budget' parameter of {owner} must be an int in the range [0, {n}] (the pool size). "
            f"Got {budget!r} instead. Lower the budget or use a larger pool."
        )
    return int(n), int(budget)


def check_scores(values: np.ndarray, n: int, *, name: str, owner: str) -> np.ndarray:
    """Validate a (n,) array of finite real scores and return it as float64."""
    arr = np.asarray(values)
    if arr.shape != (n,) or not (np.issubdtype(arr.dtype, np.number) and not np.iscomplexobj(arr)):
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a real array of shape ({n},), one value per row. "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    arr = arr.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be finite. Got {bad.size} NaN or infinite value(s), first at "
            f"row {bad[0]} ({arr[bad[0]]}). Drop or impute those rows first."
        )
    return arr


def check_labels(
    labels: np.ndarray, *, n: int | None = None, k: int | None = None, k_from: str = "counts", owner: str
) -> np.ndarray:
    """Validate (n,) cluster ids in ``[0, k)`` and return them as int64 (``k_from`` names what gives k)."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise InvalidParameterError(
            f"The 'labels' parameter of {owner} must be a 1-D int array of cluster ids. "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    if n is not None and arr.shape[0] != n:
        raise InvalidParameterError(f"'labels' has {arr.shape[0]} rows but the pool has n={n}. Align them.")
    arr = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise InvalidParameterError(
            f"The 'labels' parameter of {owner} must hold cluster ids >= 0. Got {bad.size} negative value(s), "
            f"first labels[{bad[0]}]={arr[bad[0]]}. Assign every row to a cluster first."
        )
    if k is not None and arr.size and arr.max() >= k:
        raise InvalidParameterError(
            f"The 'labels' parameter of {owner} has cluster ids up to {arr.max()} but {k_from!r} covers only {k} "
            f"clusters. Pass {k_from} for at least {arr.max() + 1} clusters."
        )
    return arr


def check_embeddings(embeddings: np.ndarray, n: int, owner: str) -> np.ndarray:
    """Validate (n, d) finite L2-normalised rows; return them as C-contiguous float32 (no copy when already so).

    float16 rows (a float16 ``npy:`` file, kept float16) are converted to one float32 matrix here: the methods
    that take embeddings (k-center, QDIT, Deita, kmeans-closest) compute BLAS products over all rows, which
    numpy does not do in float16. The default ``kmq`` method takes no embeddings, so it never pays this copy.
    """
    arr = np.asarray(embeddings)
    if arr.ndim != 2 or arr.shape[0] != n or not np.issubdtype(arr.dtype, np.floating) or arr.shape[1] == 0:
        raise InvalidParameterError(
            f"The 'embeddings' parameter of {owner} must be a float array of shape ({n}, d), one row per pool row. "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    step = row_chunk(arr.shape[1])
    for start in range(0, n, step):
        block = arr[start : start + step]
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        bad = np.flatnonzero(~(np.abs(norms - 1.0) <= _NORM_TOL))  # also catches NaN and inf
        if bad.size:
            row = start + int(bad[0])
            raise InvalidParameterError(
                f"The 'embeddings' parameter of {owner} must have finite, L2-normalised rows. Row {row} has norm "
                f"{norms[bad[0]]:.6g}. Normalise the rows (x / ||x||) and drop non-finite ones first."
            )
    return arr


def check_centroids(centroids: np.ndarray, d: int | None, owner: str) -> np.ndarray:
    """Validate (k, d) finite centroids (``d``: the embeddings' width, None for any); return them as float32."""
    arr = np.asarray(centroids)
    ok = arr.ndim == 2 and np.issubdtype(arr.dtype, np.number) and (d is None or arr.shape[1] == d)
    if not ok or not np.isfinite(arr).all():
        width = "d" if d is None else str(d)
        raise InvalidParameterError(
            f"The 'centroids' parameter of {owner} must be a finite float array of shape (k, {width}), one row per "
            f"cluster, as wide as the embeddings. Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    return arr.astype(np.float32, copy=False)


def check_temperature(temperature: float, owner: str) -> float:
    """Validate a finite temperature > 0."""
    ok = isinstance(temperature, (int, float, np.integer, np.floating)) and not isinstance(temperature, bool)
    if not ok or not np.isfinite(temperature) or temperature <= 0:
        raise invalid_parameter("temperature", owner, "a finite float in the range (0, inf)", temperature)
    return float(temperature)


def check_number(
    value: object, name: str, owner: str, *, low: float, high: float = math.inf, closed: str = "[)", kind: type = float
) -> float | int:
    """Validate a real (``kind=float``) or an int (``kind=int``) in an interval; ``closed`` is "()", "(]", etc."""
    types = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
    ok = isinstance(value, types) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v >= low if closed[0] == "[" else v > low) and (v <= high if closed[1] == "]" else v < high)
    if not ok:
        what = "an int" if kind is int else "a float"
        hi = "inf" if math.isinf(high) else f"{high:g}"
        raise invalid_parameter(name, owner, f"{what} in {closed[0]}{low:g}, {hi}{closed[1]}", value)
    return int(value) if kind is int else float(value)


def check_choice(value: object, name: str, owner: str, choices: tuple[str, ...]) -> str:
    """Validate a string option."""
    if value not in choices:
        raise invalid_parameter(name, owner, f"one of {list(choices)}", value)
    return str(value)


def check_bool(value: object, name: str, owner: str) -> bool:
    """Validate a bool (numpy's included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise invalid_parameter(name, owner, "a bool", value)
    return bool(value)
