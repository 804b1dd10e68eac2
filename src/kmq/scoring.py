"""``kmq.scorers(...)``: the quality score of every record of a pool, and the scores file ``kmq score`` writes.

A scores file has two columns, ``id`` and ``score``, as JSON Lines (``.jsonl``), CSV (``.csv``) or Parquet
(``.parquet``); the extension decides. With ``explain`` (``kmq score --explain``) the heuristic's per-record
features follow as further columns, in the formula's order (:data:`kmq.scorers.heuristic.FEATURE_NAMES`).
A record a scorer left unscored on purpose (``--judge-unparsable nan``) is written as missing: null in JSON
Lines and Parquet, an empty cell in CSV. Writing follows the file-safety rules of :mod:`kmq.publish`: the
file is never an input, is staged and renamed into place, and an existing file is replaced only when it is
a kmq scores file (``id`` and ``score`` first, then only feature columns) or with ``overwrite``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kmq.errors import InvalidParameterError

SUFFIXES = (".jsonl", ".csv", ".parquet")
#: scorers that keep per-record features (``explain=True``, ``kmq score --explain``)
EXPLAIN_SCORERS = ("heuristic",)


@dataclass
class Scores:
    """The scores of a pool's records.

    Attributes
    ----------
    ids : list of str
        The records' ids, in pool order.
    values : ndarray of shape (n,), float64
        Higher is better; NaN for records the scorer left unscored (``judge_unparsable="nan"``).
    scorer : str
        The scorer spec (credentials in URLs redacted).
    stats : dict
        What the score stage reported (cached, seconds, the relevance encoder, the scorer's own counts).
    features : dict of str to ndarray of shape (n,), float64
        With ``explain=True``: the scorer's per-record features, name -> values in pool order, in the
        formula's order (:func:`kmq.scorers.heuristic.heuristic_features` defines them); else empty.
    path : Path or None
        Where the scores were written.
    """

    ids: list[str]
    values: np.ndarray
    scorer: str
    stats: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        where = f", written to {self.path}" if self.path else ""
        return f"Scores({len(self)} records, scorer {self.scorer!r}, {self.missing} missing{where})"

    @property
    def missing(self) -> int:
        return int(np.isnan(self.values).sum())

    def write(self, out: str | os.PathLike, *, overwrite: bool = False, inputs: Any = ()) -> Path:
        """Write ``id``, ``score`` (and the features) to ``out`` (format by extension), safely (see the module
        docstring)."""
        out = Path(out)
        plan = _plan(out, inputs, overwrite)
        plan.publish({}, out_writer=lambda p: write_scores(p, self.ids, self.values, self.features))
        self.path = out
        return out


def _plan(out: Path, inputs: Any, overwrite: bool) -> Any:
    from kmq.publish import plan_outputs

    check_suffix(out)
    return plan_outputs("score", out=out, run_dir=None, inputs=inputs, overwrite=overwrite, out_is_kmq=is_scores_file)


def check_suffix(out: Path) -> None:
    if out.suffix not in SUFFIXES:
        raise InvalidParameterError(
            f"--out {out}: a scores file ends in {', '.join(SUFFIXES)}; got {out.suffix or 'no extension'}."
        )


def write_scores(
    path: Path, ids: list[str], scores: np.ndarray, features: dict[str, np.ndarray] | None = None
) -> Path:
    """Write ``id``, ``score`` and one column per feature to exactly ``path`` (callers stage it).

    The extension picks the format; NaN is written as missing (null, an empty cell). ``features`` maps a
    column name to an (n,) float array.
    """
    columns = {"score": np.asarray(scores, dtype=np.float64)}
    columns.update((name, np.asarray(v, dtype=np.float64)) for name, v in (features or {}).items())
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = {"id": pa.array(ids, pa.string())}
        table.update((name, pa.array(v, pa.float64(), mask=np.isnan(v))) for name, v in columns.items())
        pq.write_table(pa.table(table), path)
        return path
    names = list(columns)
    rows = zip(ids, *(v.tolist() for v in columns.values()), strict=True)  # NaN stays NaN: x != x below
    if path.suffix == ".csv":
        import csv

        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["id", *names])
            w.writerows((i, *("" if x != x else repr(x) for x in vals)) for i, *vals in rows)
    else:
        with open(path, "w", encoding="utf-8") as f:
            for i, *vals in rows:
                record = {"id": i, **{n: None if x != x else x for n, x in zip(names, vals, strict=True)}}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def is_scores_file(path: Path) -> bool:
    """Whether ``path`` holds only columns kmq writes, so replacing it loses nothing else.

    That is ``id`` and ``score`` first, then at most the heuristic's feature columns (``--explain``).
    """
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return _scores_columns(pq.read_schema(path).names)
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        if path.suffix == ".csv":
            return _scores_columns(first.rstrip("\r\n").split(","))
        return first == "" or _scores_columns(list(json.loads(first)))
    except (OSError, ValueError, TypeError):
        return False


def _scores_columns(names: list[str]) -> bool:
    from kmq.scorers.heuristic import FEATURE_NAMES

    extra = names[2:]
    return names[:2] == ["id", "score"] and len(set(extra)) == len(extra) and set(extra) <= set(FEATURE_NAMES)


def score(
    pool: Any,
    *,
    scorer: str | None = None,
    out: str | os.PathLike | None = None,
    embedder: str | None = None,
    format: str | None = None,
    config: Any = None,
    settings: dict[str, Any] | None = None,
    overwrite: bool = False,
    explain: bool = False,
    show_progress: bool | None = None,
    engine: str | None = None,
) -> Scores:
    """Score every record of a pool (and write the scores when ``out`` is given).

    Parameters
    ----------
    pool : str, path or Pool
        A file, a ``save_to_disk`` folder, a Hugging Face dataset name, or a :class:`kmq.data.Pool`.
    scorer : str, default "heuristic"
        ``heuristic | column:FIELD | relevance | perplexity:M | ifd:M | reward:M | deita:C,Q | judge:M@URL``.
    out : path, optional
        A ``.jsonl``, ``.csv`` or ``.parquet`` scores file.
    embedder, format : see :class:`kmq.config.RunConfig`
    config : RunConfig or path to YAML, optional
        Base settings; the arguments override it.
    settings : dict, optional
        Further dotted overrides, e.g. ``{"score.batch_size": 16, "score.judge_unparsable": "nan"}``.
    overwrite : bool, default False
        Replace an existing ``out`` that is not a kmq scores file.
    explain : bool, default False
        Also return (in :attr:`Scores.features`) and write (as columns after ``score``) the scorer's per-record
        features, so a low score can be traced to its cause. Only the scorers in :data:`EXPLAIN_SCORERS` keep
        features; any other is an error. Cached with the scores.
    show_progress : bool or None
    engine : {"local", "ray"}, optional
        Where the cache misses of the model scorers and of the heuristic's encoder are computed (:mod:`kmq.engine`;
        ``--engine``; the rest of ``engine:`` in ``config`` or ``settings``).

    Returns
    -------
    Scores
    """
    from kmq.data import in_memory, load_pool
    from kmq.pipeline import build_config
    from kmq.publish import input_paths
    from kmq.redact import redact_url
    from kmq.stages import Stages

    is_pool = in_memory(pool)
    given = {"pool": None if is_pool else str(pool), "score.scorer": scorer, "embed.embedder": embedder,
             "format": format, "engine.engine": engine}  # fmt: skip
    overrides = {**(settings or {}), **{k: v for k, v in given.items() if v is not None}}
    cfg = build_config(config, overrides)
    if explain and cfg.score.scorer not in EXPLAIN_SCORERS:
        raise InvalidParameterError(
            f"--explain: the {redact_url(cfg.score.scorer)} scorer has no per-record features; only "
            f"{', '.join(EXPLAIN_SCORERS)} has them. Drop --explain, or pass --scorer heuristic."
        )
    if is_pool:
        pool = load_pool(cfg, pool)
    inputs = input_paths(cfg.pool if not is_pool else pool.source, cfg.embed.embedder, cfg.score.relevance_embedder,
                         *([config] if isinstance(config, (str, os.PathLike)) else []))  # fmt: skip
    plan = None
    if out is not None:
        out = Path(out)
        plan = _plan(out, inputs, overwrite)
    if not is_pool:
        pool = load_pool(cfg)
    run = Stages(cfg, pool, show_progress)
    run.check_responses()
    values, features = run.quality(explain=True).value if explain else (run.quality().value, {})
    stats = {**run.stats["score"], "warnings": list(run.warnings)}
    scorer_name = redact_url(str(stats.get("scorer", cfg.score.scorer)))
    result = Scores(list(pool.ids), values, scorer_name, stats, features=features)
    if plan is not None:
        plan.publish({}, out_writer=lambda p: write_scores(p, result.ids, result.values, result.features))
        result.path = out
    return result
