"""``kmq.score(...)``: the quality score of every record of a pool, and the scores file ``kmq score`` writes.

A scores file has two columns, ``id`` and ``score``, as JSON Lines (``.jsonl``), CSV (``.csv``) or Parquet
(``.parquet``); the extension decides. A record a scorer left unscored on purpose (``--judge-unparsable
nan``) is written as missing: null in JSON Lines and Parquet, an empty cell in CSV. Writing follows the
file-safety rules of :mod:`kmq.publish`: the file is never an input, is staged and renamed into place, and
an existing file is replaced only when it is a kmq scores file (or with ``overwrite``).
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
    """

    ids: list[str]
    values: np.ndarray
    scorer: str
    stats: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        where = f", written to {self.path}" if self.path else ""
        return f"Scores({len(self)} records, scorer {self.scorer!r}, {self.missing} missing{where})"

    @property
    def missing(self) -> int:
        return int(np.isnan(self.values).sum())

    def write(self, out: str | os.PathLike, *, overwrite: bool = False, inputs: Any = ()) -> Path:
        """Write ``id`` and ``score`` to ``out`` (format by extension), safely (see the module docstring)."""
        out = Path(out)
        plan = _plan(out, inputs, overwrite)
        plan.publish({}, out_writer=lambda p: write_scores(p, self.ids, self.values))
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


def write_scores(path: Path, ids: list[str], scores: np.ndarray) -> Path:
    """Write ``id`` and ``score`` columns to exactly ``path`` (callers stage it); the extension picks the format."""
    missing = np.isnan(scores)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        score_col = pa.array(scores, pa.float64(), mask=missing)
        pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "score": score_col}), path)
    elif path.suffix == ".csv":
        import csv

        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["id", "score"])
            w.writerows((i, "" if m else repr(float(s))) for i, s, m in zip(ids, scores, missing, strict=True))
    else:
        with open(path, "w", encoding="utf-8") as f:
            for i, s, m in zip(ids, scores, missing, strict=True):
                f.write(json.dumps({"id": i, "score": None if m else float(s)}, ensure_ascii=False) + "\n")
    return path


def is_scores_file(path: Path) -> bool:
    """Whether ``path`` holds exactly kmq's scores columns (``id``, ``score``), so replacing it loses nothing else."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_schema(path).names == ["id", "score"]
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        if path.suffix == ".csv":
            return first.rstrip("\r\n") == "id,score"
        return first == "" or set(json.loads(first)) == {"id", "score"}
    except (OSError, ValueError, TypeError):
        return False


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
    show_progress: bool | None = None,
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

    Returns
    -------
    Scores
    """
    from kmq.data import Pool, read_pool
    from kmq.pipeline import build_config
    from kmq.publish import input_paths
    from kmq.redact import redact_url
    from kmq.stages import Stages

    is_pool = not isinstance(pool, (str, os.PathLike))  # a Pool, or records / DataFrame / Dataset in memory
    given = {"pool": None if is_pool else str(pool), "score.scorer": scorer, "embed.embedder": embedder,
             "format": format}  # fmt: skip
    overrides = {**(settings or {}), **{k: v for k, v in given.items() if v is not None}}
    cfg = build_config(config, overrides)
    if is_pool and not isinstance(pool, Pool):
        pool = read_pool(pool, format=cfg.format, split=cfg.split)
    inputs = input_paths(cfg.pool if not is_pool else pool.source, cfg.embed.embedder, cfg.score.relevance_embedder,
                         *([config] if isinstance(config, (str, os.PathLike)) else []))  # fmt: skip
    plan = None
    if out is not None:
        out = Path(out)
        plan = _plan(out, inputs, overwrite)
    if not is_pool:
        pool = read_pool(cfg.pool, format=cfg.format, split=cfg.split)
    run = Stages(cfg, pool, show_progress)
    run.check_responses()
    values = run.quality().value
    stats = {**run.stats["score"], "warnings": list(run.warnings)}
    result = Scores(list(pool.ids), values, redact_url(str(stats.get("scorer", cfg.score.scorer))), stats)
    if plan is not None:
        plan.publish({}, out_writer=lambda p: write_scores(p, result.ids, result.values))
        result.path = out
    return result
