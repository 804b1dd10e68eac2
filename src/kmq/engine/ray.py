"""The Ray engine: the cache misses of an encoder or a model scorer as a Ray Data ``map_batches`` over actors.

Each actor builds its own block function from a picklable factory (:class:`~kmq.engine.local.EmbedderFactory`:
the encoder's spec and options; :class:`~kmq.engine.local.ScorerFactory`: the scorer's class, model and
options), so a loaded model never goes through the object store. Every block of :func:`kmq.cache.cached_map`
is one row of the dataset and one call of the function in an actor: the same blocks as the local engine, so
the same values. Results come back to the driver in the blocks' order and cached_map writes each one to the
cache as it arrives. The blocks go to Ray ``window`` at a time (one dataset per window), so the object store
never holds more than one window of texts.

Ray itself: ``address`` (``--ray-address``) connects to a running cluster; without it kmq starts a local
Ray once per process (no dashboard, worker logs kept out of the driver's stderr, a temporary folder under
``/tmp``, usage statistics off: ``RAY_USAGE_STATS_ENABLED=0``) and shuts it down at exit (:func:`shutdown`).
On CPU machines every actor reserves ``cpus`` = 0.5 CPU: Ray Data deadlocked on 2 CPUs when actors took
whole CPUs. ``gpus`` is each actor's share of a GPU (``--engine-gpus``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import Any

import numpy as np

from kmq._deps import require
from kmq.errors import InvalidParameterError, KmqError

logger = logging.getLogger(__name__)

PIP = "pip install 'kmq[ray]'"
#: blocks per Ray dataset: 256 blocks are 256k texts of an encoder (blocks of 1,024; ~256 MB of 1 kB texts in the
#: object store) or 64k inputs of a model scorer (blocks of 256); every window loads the actors' models once more
WINDOW_BLOCKS = 256
#: the Ray session this process started (kmq shuts it down), and its temporary folder
_SESSION: dict[str, Any] = {"owned": False, "tmp": None}


def import_ray() -> Any:
    """``ray`` with Ray Data, or :class:`~kmq.errors.MissingDependencyError` naming ``pip install 'kmq[ray]'``."""
    from kmq.errors import MissingDependencyError

    try:
        require("ray.data", purpose="--engine ray")
    except MissingDependencyError as err:
        raise MissingDependencyError(f"Please install Ray Data to use --engine ray (`{PIP}`).") from err
    import ray

    return ray


@dataclass
class RayEngine:
    """Ray Data actors that compute blocks of cache misses.

    Parameters
    ----------
    address : str or None
        A running cluster (``ray://host:10001``, ``host:6379`` or ``auto``); None starts a local Ray.
    actors : int, default 1
        Actors at once, each with its own copy of the model.
    gpus : float, default 0.0
        GPUs per actor (fractions share a GPU).
    cpus : float, default 0.5
        CPUs reserved per actor.
    window : int, default WINDOW_BLOCKS
        Blocks per Ray dataset (:meth:`map_blocks`): the most texts the object store holds at once is ``window``
        blocks' worth. Each window starts its own actors, which load their model again.
    """

    address: str | None = None
    actors: int = 1
    gpus: float = 0.0
    cpus: float = 0.5
    window: int = 0
    name = "ray"

    def __post_init__(self) -> None:
        self.window = int(self.window or 0) or WINDOW_BLOCKS

    @classmethod
    def from_config(cls, cfg: Any) -> RayEngine:
        """From an :class:`~kmq.config.EngineConfig`."""
        return cls(address=cfg.ray_address, actors=cfg.actors, gpus=cfg.gpus, cpus=cfg.cpus,
                   window=getattr(cfg, "window", None) or 0)  # fmt: skip

    def info(self) -> dict[str, Any]:
        from kmq.redact import redact_url

        address = redact_url(self.address) if self.address else None
        return {"engine": self.name, "address": address, "actors": self.actors, "gpus": self.gpus, "cpus": self.cpus,
                "window": self.window}  # fmt: skip

    def start(self) -> Any:
        """Connect to ``address`` or start a local Ray (once per process); checks that the actors fit."""
        ray = import_ray()
        if not ray.is_initialized():
            _init(ray, self.address)
        have = ray.cluster_resources()
        for what, per in (("GPU", self.gpus), ("CPU", self.cpus)):
            if per and have.get(what, 0) < per * self.actors:
                flag = {"GPU": "--engine-gpus", "CPU": "engine.cpus"}[what]
                raise InvalidParameterError(
                    f"--engine ray: {self.actors} actor(s) x {per} {what} ({flag}) need {per * self.actors:g} {what}; "
                    f"the Ray cluster has {have.get(what, 0):g}. Use fewer actors (engine.actors) or a smaller {flag}."
                )
        return ray

    def mapper(
        self, factory: Callable[[], Callable[[list[str]], np.ndarray]]
    ) -> Callable[[Iterable[list[str]]], Iterator[np.ndarray]]:
        """What :func:`kmq.cache.cached_map` takes as ``mapper``: the blocks' results, in order, computed by actors."""
        return partial(self.map_blocks, factory)

    def map_blocks(
        self, factory: Callable[[], Callable[[list[str]], np.ndarray]], blocks: Iterable[list[str]]
    ) -> Iterator[np.ndarray]:
        """``factory()(block)`` of every block, computed on the actors and yielded in the blocks' order.

        The blocks are taken from ``blocks`` (a generator: :func:`kmq.cache.cached_map` builds each block's texts
        when it is taken) ``window`` at a time, and each window is one Ray dataset: only that window's texts are
        in the object store, whatever the pool's size. Ray starts only when there is a block to compute (a warm
        run starts nothing).
        """
        it = iter(blocks)
        seq = 0
        while window := list(islice(it, self.window)):
            yield from self._map_window(factory, window, seq)
            seq += len(window)

    def _map_window(
        self, factory: Callable[[], Callable[[list[str]], np.ndarray]], blocks: list[list[str]], first: int
    ) -> Iterator[np.ndarray]:
        """One window of blocks as one dataset over its own actor pool; results in order."""
        ray = self.start()
        rows = [{"seq": i, "texts": [t.encode("utf-8", "surrogatepass") for t in b]} for i, b in enumerate(blocks)]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        del rows  # the object store holds them now
        worker = type("KmqBlockWorker", (_BlockWorker,), {"factory": factory})  # the factory travels with the class
        remote = {"num_gpus": self.gpus} if self.gpus else {}
        pool = ray.data.ActorPoolStrategy(size=min(self.actors, len(blocks)))  # an idle actor would only hold a model
        ds = ds.map_batches(worker, batch_size=1, batch_format="numpy", num_cpus=self.cpus, compute=pool, **remote)
        ready: dict[int, np.ndarray] = {}
        nxt = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            _raise_worker_error(batch["error"])
            for seq, values in zip(batch["seq"].tolist(), batch["values"], strict=True):
                ready[int(seq)] = np.asarray(values)
            while nxt in ready:
                yield ready.pop(nxt)
                nxt += 1
        if nxt != len(blocks):
            raise RuntimeError(f"--engine ray returned {nxt} of {len(blocks)} blocks (blocks {first}-{first + nxt})")


class _BlockWorker:
    """One Ray Data actor: builds the block function once (``factory``, set on a subclass), then computes blocks.

    It is built at the first block, not in the constructor: an error there (a missing model) is then a task's
    error, which reaches the driver as the kmq error it is, not a dead actor that Ray restarts.
    """

    factory: Callable[[], Callable[[list[str]], np.ndarray]]
    fn: Callable[[list[str]], np.ndarray] | None = None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seq = np.asarray(batch["seq"], dtype=np.int64)
        try:
            if self.fn is None:
                self.fn = type(self).factory()
            out = [np.asarray(self.fn([bytes(t).decode("utf-8", "surrogatepass") for t in texts]))
                   for texts in batch["texts"]]  # fmt: skip
        except KmqError as err:  # Ray passes on only the text of a task's error: send the kmq error as data
            return {"seq": seq, "values": np.zeros((len(seq), 0)), "error": np.array([f"{type(err).__name__}:{err}"])}
        return {"seq": seq, "values": np.stack(out), "error": np.array([""] * len(seq))}


def _raise_worker_error(errors: np.ndarray) -> None:
    """Raise the kmq error an actor sent back (``"ClassName:message"``) as that class, with its one-line message."""
    from kmq import errors as kmq_errors

    for text in np.asarray(errors).tolist():
        if text:
            name, _, message = str(text).partition(":")
            cls = getattr(kmq_errors, name, KmqError)
            raise (cls if isinstance(cls, type) and issubclass(cls, KmqError) else KmqError)(message)


def _init(ray: Any, address: str | None) -> None:
    """Connect to a cluster, or start a quiet local Ray that :func:`shutdown` stops."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before ray.init: no usage report is sent
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        try:
            ray.init(address=address, **quiet)
        except Exception as err:  # ConnectionError, or Ray's own errors for a bad address
            raise InvalidParameterError(
                f"--ray-address {address}: cannot connect to a Ray cluster ({type(err).__name__}: {err}). Start one "
                "(`ray start --head`) or leave --ray-address out to run a local Ray."
            ) from err
    else:
        tmp = tempfile.mkdtemp(prefix="kmq-ray-", dir="/tmp" if os.path.isdir("/tmp") else None)  # short: unix sockets
        _SESSION.update(owned=True, tmp=tmp)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ray.init(num_cpus=cpus or 1, _temp_dir=tmp, **quiet)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # cached_map shows kmq's own bar
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"


def shutdown() -> None:
    """Stop the Ray that kmq started in this process (a connected cluster is left running); also at exit."""
    if not _SESSION["owned"]:
        return
    import ray

    with contextlib.suppress(Exception):
        ray.shutdown()
    if _SESSION["tmp"]:
        shutil.rmtree(_SESSION["tmp"], ignore_errors=True)
    _SESSION.update(owned=False, tmp=None)


atexit.register(shutdown)
