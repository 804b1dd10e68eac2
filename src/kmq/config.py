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

import contextlib
import contextvars
import dataclasses
import functools
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kmq.errors import InvalidParameterError

EmbedOn = Literal["conversation", "prompt", "response"]


class Validated:
    """Mixin of the config dataclasses: every field is checked against its type hint when the object is built.

    Types understood: ``int``, ``float`` (an int is accepted and converted), ``bool``, ``str``, ``Literal[...]``,
    ``None`` in unions, ``list[T]``, ``dict[str, Any]`` and nested config dataclasses. A field's metadata may add
    ``min`` / ``max`` (inclusive) or ``gt`` (exclusive) bounds, and names its command-line ``flag``.
    A bad value raises :class:`~kmq.errors.InvalidParameterError` with the one message form, e.g.
    "The 'cluster.niter' setting must be an int >= 1. Got '25' (str) instead."
    """

    def __post_init__(self) -> None:
        check_fields(self)


#: the dotted section of the config being built (``"cluster."``), so errors name ``cluster.niter``
_PREFIX: contextvars.ContextVar[str] = contextvars.ContextVar("kmq_config_prefix", default="")


def check_fields(obj: Any) -> None:
    """Check (and normalise: int -> float for float fields) every field of a config dataclass (:class:`Validated`)."""
    hints = _hints(type(obj))
    prefix = _PREFIX.get()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        try:
            value = _coerce(value, hints[f.name])
            _bounds(value, f.metadata)
        except _Mismatch as bad:
            flag = f.metadata.get("flag")
            where = f"The {name!r} setting" + (f" ({flag})" if flag else "")
            raise InvalidParameterError(
                f"{where} must be {bad.expected}. Got {_show(getattr(obj, f.name))} instead."
            ) from None
        object.__setattr__(obj, f.name, value)


class _Mismatch(Exception):
    def __init__(self, expected: str) -> None:
        self.expected = expected


def _show(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return (
        f"{text} ({type(value).__name__})" if not isinstance(value, (int, float)) or isinstance(value, bool) else text
    )


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def describe(tp: Any) -> str:
    """A type hint in words: ``int | Literal['auto'] | None`` -> "an int, 'auto' or None"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [describe(a) for a in args]
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]
    if origin is Literal:
        return " | ".join(repr(a) for a in args) if len(args) > 1 else repr(args[0])
    if origin is list:
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any value"
    name = getattr(tp, "__name__", str(tp))
    return {"int": "an int", "float": "a number", "bool": "true or false", "str": "a string"}.get(
        name, f"a {name} mapping" if dataclasses.is_dataclass(tp) else f"a {name}"
    )


def _coerce(value: Any, tp: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:  # exact matches first (so 1 stays an int in int | float)
            with contextlib.suppress(_Mismatch):
                if _exact(value, arg):
                    return _coerce(value, arg)
        for arg in args:
            with contextlib.suppress(_Mismatch):
                return _coerce(value, arg)
        raise _Mismatch(describe(tp))
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise _Mismatch(f"one of {list(args)}")
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch("None")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(describe(tp))
        return [_coerce(v, args[0]) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch(describe(tp))
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch("true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            return int(value)
        raise _Mismatch("an int")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _Mismatch("a finite number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch("a string")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        raise _Mismatch(describe(tp))
    raise _Mismatch(describe(tp))  # pragma: no cover - a type the configs do not use


def _exact(value: Any, tp: Any) -> bool:
    base = typing.get_origin(tp) or tp
    if base is Literal:
        return True
    if tp is type(None):
        return value is None
    if base is float:
        return isinstance(value, float)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(base, type) and isinstance(value, base)


def _bounds(value: Any, meta: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    lo, hi, gt = meta.get("min"), meta.get("max"), meta.get("gt")
    if lo is not None and value < lo:
        raise _Mismatch(f"{'an int' if isinstance(value, int) else 'a number'} >= {lo}")
    if hi is not None and value > hi:
        raise _Mismatch(f"{'an int' if isinstance(value, int) else 'a number'} <= {hi}")
    if gt is not None and value <= gt:
        raise _Mismatch(f"a number > {gt}")


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A config field with its help text and constraints (``min``, ``max``, ``gt``, ``flag``) in one place."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


#: the subset's formats (``same`` keeps the input's records; see :mod:`kmq.data.convert`)
OutFormat = Literal["same", "messages", "sharegpt", "alpaca", "prompt-completion"]


@dataclass
class EmbedConfig(Validated):
    """How texts become vectors."""

    embedder: str = opt(
        "minilm", "minilm | st:NAME_OR_PATH | hf:MODEL[:mean|last|cls] | openai:MODEL@URL | hashing[:DIM] | npy:PATH"
    )
    embed_on: EmbedOn = opt("conversation", "text view to embed")
    conversation_vectors: Literal["joint", "pooled"] = opt(
        "pooled",
        "conversation view: pool the prompt and response vectors (pooled: the heuristic's relevance then encodes "
        "nothing more, 2 encoder passes instead of 3) or encode the joined text (joint)",
    )
    batch_size: int = opt(64, "windows per forward pass (openai: texts per request)", min=1)
    precision: Literal["fp32", "bf16", "fp16", "int8", "auto"] = opt(
        "auto",
        "encoder precision; auto: bf16 where the CPU (AVX512-BF16/AMX) or GPU computes it natively, else fp32; "
        "int8: sentence-transformers encoders on the CPU only (ONNX Runtime, cosine to fp32 about 0.96)",
    )
    encoder_backend: Literal["auto", "torch", "onnx"] = opt(
        "auto",
        "what runs a sentence-transformers encoder: torch, or onnx (ONNX Runtime, BERT encoders such as minilm; "
        "pip install 'kmq[onnx]'); auto: torch, onnx for int8",
    )
    store_dtype: Literal["float32", "float16"] = opt(
        "float32",
        "dtype of the cached vector shards; float16 halves their disk and page cache (rows come back as float32, "
        "cosine >= 0.9999 to the float32 ones; a separate cache folder, so a float32 run never reads them)",
    )
    device: str = opt("cpu", "torch device for model encoders")
    trust_remote_code: bool = opt(False, "allow model repos to run their own code")
    max_length: int | None = opt(None, "hf: tokens per text at most (None: the model's window)", min=2)
    api_key_env: str = opt("OPENAI_API_KEY", "openai: environment variable holding the API key")
    concurrency: int = opt(4, "openai: requests in flight at most", min=1)
    max_retries: int = opt(5, "openai: retries on 429/5xx/timeouts", min=0)
    timeout: float = opt(120.0, "openai: seconds per request", gt=0)
    dimensions: int | None = opt(None, "openai: vector size to ask for (None: the model's)", min=1)

    def encoder_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`kmq.embed.get_embedder` these settings give (one place for all callers)."""
        return {
            "device": self.device, "precision": self.precision, "backend": self.encoder_backend,
            "batch_size": self.batch_size,
            "trust_remote_code": self.trust_remote_code, "max_length": self.max_length,
            "concurrency": self.concurrency, "max_retries": self.max_retries, "timeout": self.timeout,
            "api_key_env": self.api_key_env, "dimensions": self.dimensions,
        }  # fmt: skip


@dataclass
class EngineConfig(Validated):
    """Where the expensive batches (encoding the cache's misses) run: here, or on Ray Data actors.

    Part of the run's config and manifest, never of a cache key: both engines write the same vectors.
    """

    engine: Literal["local", "ray"] = opt("local", "local (this process) | ray (Ray Data actors, one model each)")
    ray_address: str | None = opt(None, "ray: an existing cluster's address (None: start a local Ray and stop it)")
    gpus: float = opt(0.0, "ray: GPUs per actor (0: CPU actors; pass --device cuda with GPUs)", min=0)
    actors: int = opt(1, "ray: actors (model copies) at once", min=1)
    cpus: float = opt(0.5, "ray: CPUs reserved per actor (0.5 lets two actors share one core without deadlock)", gt=0)
    block_size: int | None = opt(
        None, "ray: texts per task and per cached shard (None: the encoder's, which keeps the local vectors)", min=1
    )
    window: int | None = opt(
        None, "ray: blocks per Ray dataset, so the object store holds one window of texts (None: 256)", min=1
    )


@dataclass
class ClusterConfig(Validated):
    """k-means settings; ``clusters`` is an int, ``"auto"`` (silhouette) or None (the default rule)."""

    clusters: int | Literal["auto"] | None = opt(
        None, "k, or 'auto' to pick k by silhouette (None: sqrt(n/2) rule)", min=1
    )
    candidates: list[int] | None = opt(None, "candidate k for clusters: auto, e.g. [16, 32, 64, 128]")
    niter: int = opt(25, "k-means iterations", min=1)
    nredo: int = opt(1, "k-means restarts (the best objective is kept)", min=1)
    max_points_per_centroid: int = opt(256, "training sample: at most this many points per centroid", min=1)
    kmeans_backend: Literal["auto", "numpy", "faiss"] = opt(
        "auto", "k-means: auto (faiss trains, numpy BLAS assigns), numpy (both), faiss (both: kmq before issue 15)"
    )
    silhouette_sample: int = opt(20000, "points for the silhouette of clusters: auto", min=2)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.candidates is not None and (not self.candidates or min(self.candidates) < 2):
            raise InvalidParameterError(
                "The 'cluster.candidates' setting must be a non-empty list of ints >= 2. "
                f"Got {self.candidates!r} instead."
            )


@dataclass
class ScoreConfig(Validated):
    """Quality scoring: ``heuristic`` (offline default), ``column:FIELD`` or a model scorer.

    Model scorers: ``perplexity:MODEL``, ``ifd:MODEL``, ``reward:MODEL``, ``deita:COMPLEXITY,QUALITY``,
    ``judge:MODEL@URL`` (see :mod:`kmq.scorers.scorers`). The API key of ``judge:`` is read from the
    environment variable named by ``judge_api_key_env``; it is never stored in a config.
    """

    scorer: str = opt(
        "heuristic", "heuristic | column:FIELD | relevance | perplexity:M | ifd:M | reward:M | deita:C,Q | judge:M@URL"
    )
    allow_empty_responses: bool = opt(
        False, "score a pool whose responses are all empty (quality is then constant: kMQ becomes kmeans-random)"
    )
    relevance_embedder: str | None = opt(
        None, "encoder of the prompt-response cosine (heuristic, relevance) when embedder is npy:"
    )
    device: str | None = opt(None, "torch device of model scorers (None: embed.device)")
    precision: Literal["fp32", "bf16", "fp16"] = opt("fp32", "model scorer precision")
    batch_size: int = opt(8, "sequences per forward pass of model scorers", min=1)
    max_length: int = opt(2048, "longest model-scorer input in tokens (longer: cut)", min=8)
    trust_remote_code: bool = opt(False, "allow scorer model repos to run their code")
    revision: str | None = opt(None, "hub revision (branch, tag or commit) of model scorers (None: default branch)")
    judge_concurrency: int = opt(8, "judge: requests in flight at most", min=1)
    judge_max_retries: int = opt(5, "judge: retries on 429/5xx/timeouts", min=0)
    judge_timeout: float = opt(120.0, "judge: seconds per request", gt=0)
    judge_api_key_env: str = opt("OPENAI_API_KEY", "judge: environment variable holding the API key")
    judge_unparsable: Literal["error", "nan", "min"] = opt(
        "nan",
        "judge: answers without [[rating]]: nan (left unscored: written as missing by kmq score, skipped by "
        "kmq iterate, refused by kmq select) | error (stop and name them) | min (score them 1.0)",
    )


@dataclass
class SelectConfig(Validated):
    """Which method and its parameters (validated against the method's declared parameters)."""

    method: str = opt("kmq", "selection method (kmq methods lists them)")
    params: dict[str, Any] = opt(help="method parameters, e.g. {temperature: 0.5}", factory=dict)


@dataclass
class FieldsConfig(Validated):
    """Which record fields hold the turns, for records no format fits (see :mod:`kmq.data.fields`).

    Mapping a field replaces format detection (``format`` stays ``auto``); ``prompt`` or ``messages`` is
    needed, not both. The records are kept and written unchanged.
    """

    prompt: str | None = opt(None, "field with the user's turn, e.g. Question (replaces format detection)")
    response: str | None = opt(None, "field with the answer, e.g. 'Best Answer' (null or absent: no answer)")
    system: str | None = opt(None, "field with a system prompt")
    messages: str | None = opt(
        None, "field with the turns: [{role, content}], [{from, value}] or strings (user turns, e.g. turns)"
    )


class RunSettings(Validated):
    """What :class:`RunConfig` and :class:`~kmq.loop.config.IterateConfig` share besides their fields.

    The budget is parsed (``"300"`` -> 300) before the fields are checked, and ``dedup`` is parsed once.
    Subclasses define ``from_dict`` (their sections).
    """

    def __post_init__(self) -> None:
        object.__setattr__(self, "budget", parse_budget(self.budget))
        super().__post_init__()
        parse_dedup(self.dedup)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, overrides: dict[str, Any]) -> Any:
        """A copy with dotted-key overrides applied (``{"embed.embedder": "hashing", "seed": 3}``); None is ignored."""
        return type(self).from_dict(apply_overrides(self.to_dict(), overrides), source="arguments")


@dataclass
class RunConfig(RunSettings):
    """Everything a ``kmq select`` run depends on."""

    pool: str = opt("", "a JSON/JSONL(.gz)/Parquet/CSV/TSV file (or a .zip of one), a save_to_disk folder, a hub name")
    budget: int | float | str = opt(
        0, "a count (1000), a fraction of the pool (0.1) or training tokens (2M-tokens, 40k-tokens)", min=0
    )
    out: str | None = opt(None, "where to write the subset")
    run_dir: str | None = opt(None, "run directory (config.yaml, manifest.json, selection.parquet)")
    format: str = opt("auto", "auto | messages | sharegpt | alpaca | prompt_completion")
    split: str | None = opt(None, "split of a Hugging Face dataset (None: train)")
    seed: int = opt(0, "one seed for every random choice", min=0, max=2**63 - 1, flag="--seed")
    shuffle: bool = opt(False, "write the subset in a seeded random order (default: the pool's order)")
    dedup: str = opt(
        "exact", "none | exact (identical normalised conversations) | near[:TAU] (also cosine > TAU, 0.95)"
    )
    tokenizer: str | None = opt(
        None, "tokenizer that counts a token budget's tokens: your model's (hub name or folder); default the encoder's"
    )
    stratify: str | None = opt(None, "record field whose values keep their pool share of the budget, e.g. source")
    quota: list[str] = opt(
        help="fixed shares of strata: FIELD=VALUE:N or FIELD=VALUE:FRACTION (e.g. source=lima:500)", factory=list
    )
    decontaminate: list[str] = opt(
        help="eval sets whose prompts must not be in the subset: files or datakit folders, PATH:FIELD to name "
        "the prompt field",
        factory=list,
    )
    decontaminate_ngram: int = opt(13, "decontaminate: words per n-gram that counts as overlap", min=1)
    out_format: OutFormat = opt(
        "same", "the subset's format: same (the input's records) | messages | sharegpt | alpaca | prompt-completion"
    )
    report: bool = opt(False, "also write report.html (kmq report) into the run directory")
    embed: EmbedConfig = opt(factory=EmbedConfig)
    cluster: ClusterConfig = opt(factory=ClusterConfig)
    score: ScoreConfig = opt(factory=ScoreConfig)
    select: SelectConfig = opt(factory=SelectConfig)
    fields: FieldsConfig = opt(factory=FieldsConfig)
    engine: EngineConfig = opt(factory=EngineConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_quotas(self.stratify, self.quota)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RunConfig:
        return build_dataclass(cls, data, source, _SECTIONS)


#: near-duplicate cosine threshold of ``dedup: near`` without a TAU
DEDUP_TAU = 0.95
_DEDUP = re.compile(r"(none|exact|near)(?::([0-9]*\.?[0-9]+))?")


def parse_dedup(spec: str) -> tuple[str, float | None]:
    """``"near:0.9"`` -> ``("near", 0.9)``, ``"near"`` -> ``("near", 0.95)``, ``"exact"`` -> ``("exact", None)``.

    The one parser of the ``dedup`` setting (see :mod:`kmq.shape.dedup`); a bad spec names the valid ones.
    """
    m = _DEDUP.fullmatch(str(spec).strip())
    tau = float(m.group(2)) if m and m.group(2) else DEDUP_TAU
    if m is None or (m.group(2) and m.group(1) != "near") or not 0 < tau < 1:
        raise InvalidParameterError(
            "The 'dedup' setting (--dedup) must be none, exact or near[:TAU] with 0 < TAU < 1 (e.g. near:0.95). "
            f"Got {spec!r} instead."
        )
    return m.group(1), tau if m.group(1) == "near" else None


_TOKEN_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmbg]?)\s*-?\s*tokens?\s*$", re.IGNORECASE)
_TOKEN_SCALE = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}


def parse_token_budget(text: Any) -> int | None:
    """The token count of a budget such as ``2M-tokens``, ``40k-tokens`` or ``1500000-tokens``.

    Suffixes ``k`` (10^3), ``M`` (10^6), ``B``/``G`` (10^9), any case; decimals are allowed when the
    result is a whole number (``1.5M-tokens``). Text that does not end in ``tokens`` returns None (a
    record budget); text that does but is not such a number raises InvalidParameterError.

    Examples
    --------
    >>> parse_token_budget("2M-tokens"), parse_token_budget("40k-tokens"), parse_token_budget("1500000-tokens")
    (2000000, 40000, 1500000)
    >>> parse_token_budget("300") is None
    True
    """
    from decimal import Decimal, InvalidOperation

    if not isinstance(text, str) or not text.strip().lower().endswith(("token", "tokens")):
        return None
    match = _TOKEN_BUDGET.match(text)
    try:
        value = Decimal(match.group(1)) * _TOKEN_SCALE[match.group(2).lower()] if match else None
    except InvalidOperation:
        value = None
    if value is None or value != value.to_integral_value() or value <= 0:
        raise InvalidParameterError(
            "The token budget must be a positive whole number of tokens such as 2M-tokens, 40k-tokens or "
            f"1500000-tokens. Got {text!r} instead."
        )
    return int(value)


def parse_quotas(stratify: str | None, quotas: list[str]) -> tuple[str | None, dict[str, int | float]]:
    """``stratify`` and ``["source=lima:500", "source=gsm8k:0.1"]`` -> ``("source", {"lima": 500, "gsm8k": 0.1})``.

    A quota without ``stratify`` stratifies by its field; every quota must name the same field. A count is an
    int, a fraction has a decimal point (``0.1``, ``1.0``).
    """
    field = stratify or None
    fixed: dict[str, int | float] = {}
    for item in quotas:
        name, eq, rest = str(item).partition("=")
        value, colon, share = rest.rpartition(":")
        name, share = name.strip(), share.strip()
        try:
            amount: int | float = float(share) if any(c in share for c in ".eE") else int(share)
        except ValueError:
            amount = -1
        if not eq or not colon or not name or not value or amount < 0:
            raise InvalidParameterError(
                "A quota (--quota) must be FIELD=VALUE:N (a count) or FIELD=VALUE:FRACTION (e.g. source=lima:500, "
                f"source=gsm8k:0.1). Got {item!r} instead."
            )
        if field is not None and name != field:
            raise InvalidParameterError(
                f"The quota {item!r} is for the field {name!r}, but the strata are by {field!r}"
                f"{' (--stratify)' if stratify else ' (the first quota)'}; quotas must name that field."
            )
        field = name
        if value in fixed:
            raise InvalidParameterError(f"Two quotas for {name}={value}; give one.")
        fixed[value] = amount
    return field, fixed


def parse_budget(budget: Any) -> Any:
    """``"300"`` -> 300, ``"0.1"`` -> 0.1, ``"2M-tokens"`` -> ``"2000000-tokens"`` (what a flag or YAML string
    means); other values are returned as they are."""
    if not isinstance(budget, str):
        return budget
    tokens = parse_token_budget(budget)
    if tokens is not None:
        return f"{tokens}-tokens"
    text = budget.strip()
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise InvalidParameterError(
            f"The 'budget' parameter must be a count (5000) or a fraction (0.1). Got {budget!r} instead."
        ) from None


_SECTIONS = {
    "embed": EmbedConfig,
    "cluster": ClusterConfig,
    "score": ScoreConfig,
    "select": SelectConfig,
    "fields": FieldsConfig,
    "engine": EngineConfig,
}


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
    values than its dataclass defaults (e.g. the loop's judge). Every value is validated
    (:class:`Validated`); errors name the file (``source``) and the dotted setting.
    """
    try:
        return _build(cls, data, source, sections, section_defaults)
    except InvalidParameterError as err:
        if source == "arguments" or str(err).startswith(source):
            raise
        raise InvalidParameterError(f"{source}: {err}") from None


def _build(cls: type, data: Any, source: str, sections: dict[str, type], section_defaults: Any) -> Any:
    if not isinstance(data, dict):
        raise InvalidParameterError(f"{source}: expected a mapping of settings, got {type(data).__name__}.")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InvalidParameterError(
            f"{source}: unknown setting(s) {unknown} for {cls.__name__}; valid: {sorted(names)}."
        )
    kwargs = {}
    prefix = _PREFIX.get()
    for key, value in data.items():
        section = sections.get(key)
        if section is None:
            kwargs[key] = value
            continue
        if value is not None and not isinstance(value, dict):
            raise InvalidParameterError(
                f"The {prefix + key!r} setting must be a mapping of {section.__name__} settings "
                f"(e.g. {key}: {{...}}). Got {_show(value)} instead."
            )
        base = (section_defaults or {}).get(key, {})
        token = _PREFIX.set(f"{prefix}{key}.")
        try:
            kwargs[key] = _build(section, {**base, **(value or {})}, f"{source}: {key}", {}, None)
        finally:
            _PREFIX.reset(token)
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


def build(cls: type, config: Any = None, overrides: dict[str, Any] | None = None) -> Any:
    """A config of class ``cls``: its defaults < a config file (path) or object < dotted-key overrides.

    None overrides are ignored; ``select.params`` is merged into the file's method parameters, not replaced.
    This is the one builder of :class:`RunConfig` and :class:`~kmq.loop.config.IterateConfig`.
    """
    if config is None:
        cfg = cls()
    elif isinstance(config, cls):
        cfg = config
    else:
        cfg = cls.from_dict(read_yaml(config), source=str(config))
    clean = {k: v for k, v in (overrides or {}).items() if v is not None}
    params = clean.pop("select.params", None)
    cfg = cfg.updated(clean)
    if params:
        cfg = cfg.updated({"select.params": {**cfg.select.params, **params}})
    return cfg


_PATH_FIELDS = ("pool", "out", "run_dir")
_SPEC_PREFIXES = ("npy:", "st:", "hf:", "perplexity:", "ifd:", "reward:")
_POOLING = re.compile(r":(mean|last|cls)$")


def absolute_paths(cfg: Any) -> Any:
    """A copy of a config with every local path absolute (pool, out, run_dir, ``npy:``/model paths that exist).

    What config.yaml and the manifest record, so a rerun from another working directory reads the same files.
    Hub names (``owner/name`` that is not a local path) and URLs are left as they are.
    """

    def fix(key: str, value: Any) -> Any:
        if not isinstance(value, str) or not value or "://" in value:
            return value
        if key.rsplit(".", 1)[-1] in _PATH_FIELDS and key.count(".") == 0:
            return value if key == "pool" and not Path(value).expanduser().exists() else _abs(value)
        for prefix in _SPEC_PREFIXES:
            body = value[len(prefix) :]
            pooling = _POOLING.search(body) if prefix == "hf:" else None  # hf:PATH:last
            if pooling is not None and not Path(body).expanduser().exists():
                body = body[: pooling.start()]
            if value.startswith(prefix) and Path(body).expanduser().exists():
                return prefix + _abs(body) + (pooling.group(0) if pooling is not None else "")
        if key in ("model", "score.relevance_embedder") and Path(value).expanduser().exists():
            return _abs(value)
        return value

    data = cfg.to_dict()
    overrides = {}
    for section, value in data.items():
        if isinstance(value, dict):
            for k, v in value.items():
                if fix(f"{section}.{k}", v) != v:
                    overrides[f"{section}.{k}"] = fix(f"{section}.{k}", v)
        elif fix(section, value) != value:
            overrides[section] = fix(section, value)
    return cfg.updated(overrides) if overrides else cfg


def _abs(path: str) -> str:
    full = os.path.abspath(os.path.expanduser(path))
    return full + os.sep if path.endswith(("/", os.sep)) and not full.endswith(os.sep) else full  # "dir/": a folder


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
    if parse_token_budget(budget) is not None:
        raise InvalidParameterError(
            f"The budget {budget!r} is in tokens, and this command takes a count of records (1000) or a fraction "
            "(0.1); token budgets are for kmq select."
        )
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
