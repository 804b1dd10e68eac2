"""Array work on an engine: a pure function over row chunks of a matrix, here or as Ray tasks.

This is how clustering's assignment is distributed (``--engine ray``): k-means trains on a sample in the
driver, then every chunk of rows is assigned to its nearest centroid by :func:`map_chunks`. On the local engine
that is a loop in this process; on Ray each chunk is one task (``cpus`` CPUs each, ``gpus`` left out: the
kernels are BLAS), the shared arguments (the centroids) go to the object store once, at most ``2 x actors``
chunks are in flight (so the object store never holds more than that many chunks of the matrix), and the
results come back in the chunks' order. The function must be importable by name (a module-level function of
kmq, or a ``functools.partial`` of one): Ray sends it by reference, so a worker runs the very code the driver
would, on the very bytes, and the results are the local ones bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

#: chunks in flight per actor on Ray (one computing, one on its way)
IN_FLIGHT_PER_ACTOR = 2


def chunks(X: np.ndarray, chunk_size: int) -> Iterator[np.ndarray]:
    """Row chunks of ``X`` as views (``chunk_size`` rows each, the last one shorter)."""
    for lo in range(0, len(X), chunk_size):
        yield X[lo : lo + chunk_size]


def map_chunks(
    engine: Any, fn: Callable[..., Any], parts: Iterator[np.ndarray], *shared: Any
) -> Iterator[Any]:
    """``fn(part, *shared)`` for every part, in order, computed by ``engine`` (``local`` or a RayEngine)."""
    if getattr(engine, "name", "local") == "local":
        for part in parts:
            yield fn(part, *shared)
        return
    yield from _ray_map(engine, fn, parts, shared)


def _ray_map(engine: Any, fn: Callable[..., Any], parts: Iterator[np.ndarray], shared: tuple) -> Iterator[Any]:
    ray = engine.start()
    threads = thread_counts()
    # libraries a task loads later (faiss's OpenMP BLAS) read the counts from the environment; loaded ones get limits
    most = str(max(threads.values(), default=1))
    env = {"OMP_NUM_THREADS": most, "OPENBLAS_NUM_THREADS": most, "MKL_NUM_THREADS": most}
    task = ray.remote(num_cpus=engine.cpus, max_retries=0, runtime_env={"env_vars": env})(_run)
    shared_refs = [ray.put(s) for s in shared]
    limit = max(1, int(engine.actors)) * IN_FLIGHT_PER_ACTOR
    pending: list[Any] = []
    for part in parts:
        pending.append(task.remote(fn, threads, np.ascontiguousarray(part), *shared_refs))
        if len(pending) >= limit:
            yield _result(ray.get(pending.pop(0)))
    while pending:
        yield _result(ray.get(pending.pop(0)))


def _result(out: Any) -> Any:
    """A task's result, or the kmq error it sent back, raised here as that class."""
    if isinstance(out, dict) and "__kmq_error__" in out:
        from kmq.engine.ray import _raise_worker_error

        _raise_worker_error(np.array([out["__kmq_error__"]]))
    return out


def thread_counts() -> dict[str, int]:
    """This process's thread count per BLAS/OpenMP library (threadpoolctl's prefixes), e.g. ``{"libgomp": 2}``."""
    from threadpoolctl import threadpool_info

    return {info["prefix"]: int(info["num_threads"]) for info in threadpool_info()}


def _run(fn: Callable[..., Any], threads: dict[str, int], part: np.ndarray, *shared: Any) -> Any:
    """One Ray task: ``fn`` on one chunk with the driver's BLAS thread counts (a float32 matrix product's last bits
    depend on them; Ray gives a task of half a CPU one thread); a kmq error comes back as data (Ray would keep only
    its text)."""
    from threadpoolctl import threadpool_limits

    from kmq.errors import KmqError

    try:
        with threadpool_limits(limits=threads):
            return fn(part, *shared)
    except KmqError as err:
        return {"__kmq_error__": f"{type(err).__name__}:{err}"}


def assign_rows(
    engine: Any, X: np.ndarray, centroids: np.ndarray, chunk_size: int, backend: str = "numpy"
) -> tuple[np.ndarray, np.ndarray]:
    """k-means' assignment of every row of ``X`` on ``engine``, chunk by chunk (:func:`kmq.cluster.assign_chunk`
    with ``backend``): labels (n,) int64 and similarity (n,) float32, the local loop's values (the same chunks, the
    same kernel)."""
    from kmq.cluster.kmeans import assign_chunk

    labels = np.empty(len(X), dtype=np.int64)
    sims = np.empty(len(X), dtype=np.float32)
    lo = 0
    kernel = partial(assign_chunk, backend=backend)
    for part_labels, part_sims in map_chunks(engine, kernel, chunks(X, chunk_size), centroids):
        labels[lo : lo + len(part_labels)], sims[lo : lo + len(part_labels)] = part_labels, part_sims
        lo += len(part_labels)
    return labels, sims
