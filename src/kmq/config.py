"""Typed configuration shared by the command line and the Python API.

Precedence: dataclass defaults < ``--config run.yaml`` < command-line flags (or keyword arguments).
The resolved config is written into every run directory as ``config.yaml``, and loading that file
back reproduces the run. A YAML file mirrors the dataclasses::

    pool: ../shared/datakit/dolly_3k/dolly_3k.jsonl
    budget: 500
    seed: 0
    embed: {embedder: minilm, embed_on: conversation}
    cluster: {clusters: auto}
    score: {scorer: heuristic}
    select: {method: kmq, params: {temperature: 0.5}}
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kmq.errors import InvalidParameterError

EmbedOn = Literal["conversation", "prompt", "response"]


@dataclass
class EmbedConfig:
    """How texts become vectors."""

    embedder: str = field(default="minilm", metadata={"help": "minilm | st:NAME_OR_PATH | hashing[:DIM] | npy:PATH"})
    embed_on: EmbedOn = field(default="conversation", metadata={"help": "text view to embed"})
    batch_size: int = field(default=64, metadata={"help": "windows per forward pass"})
    precision: Literal["fp32", "bf16"] = field(default="fp32", metadata={"help": "encoder precision"})
    device: str = field(default="cpu", metadata={"help": "torch device for model encoders"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow model repos to run their own code"})


@dataclass
class ClusterConfig:
    """k-means settings; ``clusters`` is an int, ``"auto"`` (silhouette) or None (the default rule)."""

    clusters: int | Literal["auto"] | None = None
    candidates: list[int] | None = None
    niter: int = 25
    nredo: int = 1
    max_points_per_centroid: int = 256
    silhouette_sample: int = 20000


@dataclass
class ScoreConfig:
    """Quality scoring: ``heuristic`` (offline default), ``column:FIELD`` or a model scorer.

    Model scorers: ``perplexity:MODEL``, ``ifd:MODEL``, ``reward:MODEL``, ``deita:COMPLEXITY,QUALITY``,
    ``judge:MODEL@URL`` (see :mod:`kmq.score.scorers`). The API key of ``judge:`` is read from the
    environment variable named by ``judge_api_key_env``; it is never stored in a config.
    """

    scorer: str = field(
        default="heuristic",
        metadata={
            "help": "heuristic | column:FIELD | relevance | perplexity:M | ifd:M | reward:M | deita:C,Q | judge:M@URL"
        },
    )
    relevance_embedder: str | None = field(
        default=None,
        metadata={"help": "encoder of the prompt-response cosine (heuristic, relevance) when embedder is npy:"},
    )
    device: str | None = field(default=None, metadata={"help": "torch device of model scorers (None: embed.device)"})
    precision: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata={"help": "model scorer precision"})
    batch_size: int = field(default=8, metadata={"help": "sequences per forward pass of model scorers"})
    max_length: int = field(default=2048, metadata={"help": "longest model-scorer input in tokens (longer: cut)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow scorer model repos to run their code"})
    revision: str | None = field(
        default=None, metadata={"help": "hub revision (branch, tag or commit) of model scorers (None: default branch)"}
    )
    judge_concurrency: int = field(default=8, metadata={"help": "judge: requests in flight at most"})
    judge_max_retries: int = field(default=5, metadata={"help": "judge: retries on 429/5xx/timeouts"})
    judge_timeout: float = field(default=120.0, metadata={"help": "judge: seconds per request"})
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "judge: environment variable holding the API key"}
    )
    judge_unparsable: Literal["error", "nan", "min"] = field(
        default="error", metadata={"help": "judge: answers without [[rating]]: error | nan | min (fill 1.0)"}
    )


@dataclass
class SelectConfig:
    """Which method and its parameters (validated against the method's declared parameters)."""

    method: str = "kmq"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """Everything a ``kmq select`` run depends on."""

    pool: str = ""
    budget: int | float = 0
    out: str | None = None
    run_dir: str | None = None
    format: str = "auto"
    split: str | None = None
    seed: int = 0
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    select: SelectConfig = field(default_factory=SelectConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RunConfig:
        return build_dataclass(cls, data, source, _SECTIONS)

    def updated(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with dotted-key overrides applied (``{"embed.embedder": "hashing", "seed": 3}``); None is ignored."""
        return RunConfig.from_dict(apply_overrides(self.to_dict(), overrides), source="arguments")


_SECTIONS = {"embed": EmbedConfig, "cluster": ClusterConfig, "score": ScoreConfig, "select": SelectConfig}


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``"embed.embedder"``) in a nested settings dict, in place; None values are skipped."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return data


def build_dataclass(
    cls: type,
    data: dict[str, Any],
    source: str,
    sections: dict[str, type],
    section_defaults: dict[str, dict[str, Any]] | None = None,
) -> Any:
    """A config dataclass from a nested mapping; unknown keys are errors that list the valid ones.

    ``sections`` maps top-level keys to their dataclass; ``section_defaults`` gives a section other base
    values than its dataclass defaults (e.g. the loop's judge).
    """
    if not isinstance(data, dict):
        raise InvalidParameterError(f"{source}: expected a mapping of settings, got {type(data).__name__}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InvalidParameterError(
            f"{source}: unknown setting(s) {unknown} for {cls.__name__}; valid: {sorted(names)}."
        )
    kwargs = {}
    for key, value in data.items():
        section = sections.get(key)
        if section is None:
            kwargs[key] = value
            continue
        base = (section_defaults or {}).get(key, {})
        kwargs[key] = build_dataclass(section, {**base, **(value or {})}, f"{source}: {key}", {})
    return cls(**kwargs)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (or JSON) settings file; a missing file or bad YAML is an InvalidParameterError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"Config file {path} not found.")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise InvalidParameterError(f"{path}: not valid YAML ({err}).") from err


def dump_yaml(data: dict[str, Any]) -> str:
    """Settings as YAML text, in field order."""
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read a YAML (or JSON) config file into a :class:`RunConfig`."""
    return RunConfig.from_dict(read_yaml(path), source=str(path))


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML text."""
    return dump_yaml(cfg.to_dict())


def resolve_budget(budget: int | float | str, n: int) -> int:
    """An absolute budget from ``N`` (count) or a fraction in (0, 1] written with a decimal point.

    ``5000`` -> 5000 examples; ``0.1`` -> 10% of the pool (rounded, at least 1). Budgets <= 0, above
    the pool size, or non-integral counts above 1 are errors: kmq never returns fewer than asked.
    """
    value: int | float
    if isinstance(budget, str):
        text = budget.strip()
        try:
            value = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise InvalidParameterError(
                f"The 'budget' parameter must be a count (5000) or a fraction (0.1). Got {budget!r} instead."
            ) from None
    elif isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise InvalidParameterError(f"The 'budget' parameter must be an int or a float. Got {budget!r} instead.")
    else:
        value = budget
    if isinstance(value, float):
        if 0 < value <= 1:
            count = max(1, int(round(value * n)))
        elif value > 1 and value.is_integer():
            count = int(value)
        else:
            raise InvalidParameterError(
                f"The 'budget' parameter must be a count >= 1 or a fraction in (0, 1]. Got {budget!r} instead."
            )
    else:
        count = value
    if count <= 0:
        raise InvalidParameterError(f"The 'budget' parameter must be positive. Got {budget!r} instead.")
    if count > n:
        raise InvalidParameterError(
            f"The budget ({count}) is larger than the pool ({n} records). Pass --budget {n} or less, or a fraction."
        )
    return int(count)
