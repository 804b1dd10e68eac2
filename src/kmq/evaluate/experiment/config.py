"""The typed configuration of ``kmq experiment`` (YAML, validated like the other configs).

A config as small as this works::

    pool: data/pool.jsonl             # or a list of pools
    methods: [kmq, random]            # or {name: qdit, params: {alpha: 0.7}, label: qdit-0.7}
    budgets: [1000]
    seeds: [0, 1, 2]
    embedder: hashing                 # any option of kmq select (embedder, clusters, scorer, dedup, ...)
    model: path/or/hub-name
    trainer: {name: trl, max_steps: 200}   # the fields of kmq iterate's TrainConfig (name = trainer)
    eval: {tasks: [arc_easy, gsm8k], limit: 500}

The grid is pool x methods x budgets x seeds. The method ``iterate`` runs iterative kMQ (:mod:`kmq.loop`)
with its ``params`` (``rounds``, ``judge``, ``generator``, ``reweight``, kMQ's ``allocation``, ``within``,
``temperature``, and dotted settings such as ``generate.max_new_tokens``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Literal

from kmq.config import (
    ClusterConfig,
    EmbedConfig,
    FieldsConfig,
    ScoreConfig,
    Validated,
    build_dataclass,
    dump_yaml,
    opt,
    read_yaml,
)
from kmq.errors import InvalidParameterError
from kmq.loop.config import TrainConfig

#: flat ``kmq select`` options a config may set, and the RunConfig setting each one is
SELECT_OPTIONS = {
    "embedder": "embed.embedder", "embed_on": "embed.embed_on", "clusters": "cluster.clusters",
    "scorer": "score.scorer", "format": "format", "split": "split", "dedup": "dedup",
    "decontaminate": "decontaminate", "stratify": "stratify", "quota": "quota", "tokenizer": "tokenizer",
}  # fmt: skip
#: keys of ``params`` of an ``iterate`` method that are IterateConfig settings under another name
ITERATE_KEYS = {
    "rounds": "rounds", "judge": "judge.scorer", "generator": "generate.generator", "reweight": "reweight.method",
    "reweight_temperature": "reweight.temperature", "allocation": "select.params.allocation",
    "within": "select.params.within", "temperature": "select.params.temperature",
}  # fmt: skip
_METHOD_KEYS = ("name", "params", "label")


@dataclass
class EvalSettings(Validated):
    """What each trained model is evaluated on (the arguments of :func:`kmq.evaluate.harness.evaluate_model`)."""

    tasks: list[str] = opt(help="lm-eval task names or kmq's local tasks (arc_easy, gsm8k, mmlu, ...)", factory=list)
    limit: int | float | None = opt(None, "examples per task at most (a smoke run: flagged in the table)", gt=0)
    num_fewshot: int | None = opt(None, "few-shot examples (None: each task's own setting)", min=0)
    data_dir: str | None = opt(None, "another copy of the datakit for the local tasks")
    batch_size: int | str | None = opt(None, "lm-eval batch size (an int or 'auto'; None: the harness default)")
    max_new_tokens: int | None = opt(None, "generation tasks: longest answer in tokens (None: each task's)", min=1)
    allow_code_execution: bool = opt(False, "run generated code (humaneval, mbpp) in kmq's sandbox")
    judge: str | None = opt(None, "judge:MODEL@URL for alpaca_eval / mt_bench")
    backend: Literal["hf", "vllm"] = opt("hf", "hf | vllm")
    precision: str = opt("auto", "model precision for evaluation (auto, fp32, bf16, fp16)")
    device: str | None = opt(None, "torch device (None: the experiment's device, else cuda when available)")


@dataclass(frozen=True)
class MethodSpec:
    """One method of the grid: its name, parameters and the label the table shows."""

    name: str
    params: dict[str, Any]
    label: str

    def __hash__(self) -> int:
        return hash(self.label)


@dataclass
class ExperimentConfig(Validated):
    """Everything a ``kmq experiment`` grid depends on (see the module docstring)."""

    name: str = opt("experiment", "the experiment's name (the table's title)")
    pool: str | list[str] = opt("", "a pool (any kmq select input) or a list of pools")
    methods: list[Any] = opt(help="method names, or {name, params, label} mappings", factory=lambda: ["kmq", "random"])
    budgets: list[int | float | str] = opt(help="budgets: counts (1000), fractions (0.1) or 2M-tokens", factory=list)
    seeds: list[int] = opt(help="seeds: each cell's selection and training seed", factory=lambda: [0])
    model: str = opt("", "base model fine-tuned in every cell (hub name or local folder)")
    device: str | None = opt(None, "torch device of training and evaluation (None: cuda when available, else cpu)")
    trainer: TrainConfig = opt(factory=TrainConfig)
    eval: EvalSettings = opt(factory=EvalSettings)
    embedder: str | None = opt(None, "kmq select --embedder")
    embed_on: str | None = opt(None, "kmq select --embed-on")
    clusters: int | str | None = opt(None, "kmq select --clusters (an int or auto)")
    scorer: str | None = opt(None, "kmq select --scorer")
    format: str | None = opt(None, "kmq select --format")
    split: str | None = opt(None, "kmq select --split")
    dedup: str | None = opt(None, "kmq select --dedup")
    decontaminate: list[str] | None = opt(None, "kmq select --decontaminate (eval sets)")
    stratify: str | None = opt(None, "kmq select --stratify")
    quota: list[str] | None = opt(None, "kmq select --quota")
    tokenizer: str | None = opt(None, "kmq select --tokenizer (of token budgets)")
    embed: EmbedConfig | None = opt(None, "kmq select's embed section (full settings)")
    cluster: ClusterConfig | None = opt(None, "kmq select's cluster section")
    score: ScoreConfig | None = opt(None, "kmq select's score section")
    fields: FieldsConfig | None = opt(None, "kmq select's field mapping")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ExperimentConfig:
        if not isinstance(data, dict):
            raise InvalidParameterError(f"{source}: expected a mapping of settings, got {type(data).__name__}.")
        data = dict(data)
        trainer = data.get("trainer")
        if isinstance(trainer, dict) and "name" in trainer:  # trainer: {name: trl} means TrainConfig.trainer
            trainer = dict(trainer)
            if "trainer" in trainer:
                raise InvalidParameterError(f"{source}: trainer: give the trainer's name once (name: or trainer:).")
            trainer["trainer"] = trainer.pop("name")
            data["trainer"] = trainer
        return build_dataclass(cls, data, source, _SECTIONS)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise InvalidParameterError(f"The 'seeds' setting must list distinct ints >= 0. Got {self.seeds!r}.")

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self)

    @property
    def pools(self) -> list[str]:
        return [self.pool] if isinstance(self.pool, str) else list(self.pool)

    def method_specs(self) -> list[MethodSpec]:
        """The methods as :class:`MethodSpec` (checked: known name, valid parameters, distinct labels)."""
        specs = [parse_method(m, i) for i, m in enumerate(self.methods)]
        seen: dict[str, int] = {}
        for i, spec in enumerate(specs):
            if spec.label in seen:
                raise InvalidParameterError(
                    f"methods[{seen[spec.label]}] and methods[{i}] are both {spec.label!r}: give one of them "
                    "other params or a label (methods: [{name: kmq, label: kmq-b}])."
                )
            seen[spec.label] = i
        return specs

    def select_overrides(self) -> dict[str, Any]:
        """The dotted RunConfig overrides of the select options and sections (None: not set)."""
        out: dict[str, Any] = {}
        for section in ("embed", "cluster", "score", "fields"):
            value = getattr(self, section)
            if value is not None:
                import dataclasses

                out.update({f"{section}.{k}": v for k, v in dataclasses.asdict(value).items()})
        out.update({dotted: getattr(self, key) for key, dotted in SELECT_OPTIONS.items()})
        return {k: v for k, v in out.items() if v is not None}

    def train_config(self) -> TrainConfig:
        """The trainer's settings with the experiment's device when the trainer names none."""
        t = self.trainer
        if t.device is None and self.device is not None:
            import dataclasses

            t = dataclasses.replace(t, device=self.device)
        return t

    def eval_device(self) -> str | None:
        return self.eval.device or self.device


_SECTIONS: dict[str, type] = {
    "trainer": TrainConfig, "eval": EvalSettings, "embed": EmbedConfig, "cluster": ClusterConfig,
    "score": ScoreConfig, "fields": FieldsConfig,
}  # fmt: skip


def parse_method(item: Any, i: int) -> MethodSpec:
    """``"kmq"`` or ``{name: qdit, params: {alpha: 0.7}}`` -> a checked :class:`MethodSpec`."""
    where = f"methods[{i}]"
    if isinstance(item, str):
        name, params, label = item, {}, None
    elif isinstance(item, dict):
        unknown = sorted(set(item) - set(_METHOD_KEYS))
        if unknown or "name" not in item:
            raise InvalidParameterError(
                f"{where} must be a method name or a mapping with the keys {list(_METHOD_KEYS)} (name required); "
                f"got the keys {sorted(item)}."
            )
        name, params, label = item["name"], item.get("params") or {}, item.get("label")
        if not isinstance(params, dict) or (label is not None and not isinstance(label, str)):
            raise InvalidParameterError(f"{where}: params must be a mapping and label a string. Got {item!r}.")
    else:
        raise InvalidParameterError(f"{where} must be a method name or a {{name, params}} mapping. Got {item!r}.")
    if not isinstance(name, str):
        raise InvalidParameterError(f"{where}: the method name must be a string. Got {name!r}.")
    try:
        if name == "iterate":
            check_iterate_params(params)
        else:
            from kmq.methods import get_method
            from kmq.methods.registry import check_params

            check_params(get_method(name), params)
    except InvalidParameterError as err:
        hint = " (or iterate: iterative kMQ)" if "'method' parameter" in str(err) else ""
        raise InvalidParameterError(f"{where}: {err}{hint}") from None
    return MethodSpec(name, dict(params), label or method_label(name, params))


def method_label(name: str, params: dict[str, Any]) -> str:
    """``qdit`` + ``{alpha: 0.7}`` -> ``qdit(alpha=0.7)``: the table's row name."""
    if not params:
        return name
    return f"{name}({', '.join(f'{k}={params[k]}' for k in sorted(params))})"


def iterate_overrides(params: dict[str, Any]) -> dict[str, Any]:
    """An ``iterate`` method's params as dotted IterateConfig overrides (kMQ's parameters under select.params)."""
    out: dict[str, Any] = {}
    kmq_params: dict[str, Any] = {}
    for key, value in params.items():
        dotted = ITERATE_KEYS.get(key, key)
        if dotted.startswith("select.params."):
            kmq_params[dotted.rsplit(".", 1)[1]] = value
        else:
            out[dotted] = value
    if kmq_params:
        out["select.params"] = kmq_params
    return out


def check_iterate_params(params: dict[str, Any]) -> None:
    """Refuse an ``iterate`` parameter IterateConfig does not know (named with the valid ones)."""
    from kmq.loop.config import IterateConfig

    allowed = {*ITERATE_KEYS, "budget"}
    sections = {"generate", "judge", "reweight", "train", "cluster", "score", "embed"}
    for key in params:
        head = key.split(".", 1)[0]
        grid_key = key in ("pool", "budget", "model", "seed", "out", "run_dir")
        if grid_key or (key not in allowed and head not in sections):
            raise InvalidParameterError(
                f"Unknown parameter {key!r} for method 'iterate'; valid: {sorted(ITERATE_KEYS)} or dotted settings "
                f"of the sections {sorted(sections)} (e.g. generate.max_new_tokens). The grid sets pool, budget, "
                "model and seed."
            )
    cfg = IterateConfig(model="(the experiment's model)").updated(iterate_overrides(params))  # each value's type
    from kmq.loop.config import check_config

    check_config(cfg)  # the generator spec, kMQ's parameter names and choices
    t = cfg.select.params.get("temperature", 1.0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
        raise InvalidParameterError(f"The 'temperature' parameter of method 'iterate' must be a number > 0. Got {t!r}")


_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe piece of a cell id (``qdit(alpha=0.7)`` -> ``qdit-alpha=0.7``)."""
    out = _UNSAFE.sub("-", text).strip("-.") or "x"
    if len(out) > limit:
        from kmq.cache import digest

        out = f"{out[: limit - 9]}-{digest(text)[:8]}"
    return out


def load_experiment_config(path: str | os.PathLike) -> ExperimentConfig:
    """Read a YAML (or JSON) file into an :class:`ExperimentConfig`."""
    return ExperimentConfig.from_dict(read_yaml(path), source=str(path))


def dump_experiment_config(cfg: ExperimentConfig) -> str:
    return dump_yaml(cfg.to_dict())


def check_experiment(cfg: ExperimentConfig) -> list[MethodSpec]:
    """Cross-field checks that need no data; returns the methods. Each error names the setting."""
    if not cfg.pools or any(not p for p in cfg.pools):
        raise InvalidParameterError("The experiment needs pool: a pool file (or a list of them) in the config.")
    if not cfg.model:
        raise InvalidParameterError("The experiment needs model: the base model to fine-tune (hub name or folder).")
    if not cfg.budgets:
        raise InvalidParameterError("The experiment needs budgets: a list such as [1000] (counts or fractions).")
    if not cfg.seeds:
        raise InvalidParameterError("The 'seeds' setting must list at least one seed, e.g. [0, 1, 2].")
    if not cfg.eval.tasks:
        raise InvalidParameterError("The experiment needs eval: {tasks: [...]}: the tasks each model is scored on.")
    if not cfg.methods:
        raise InvalidParameterError("The 'methods' setting must list at least one method, e.g. [kmq, random].")
    t = cfg.trainer
    if t.trainer == "command":
        from kmq.loop.train import check_command

        if not t.command:
            raise InvalidParameterError(
                "trainer: {name: command} needs command: 'CMD {data} {output_dir} {base_model} ...'."
            )
        check_command(t.command, shell=t.shell)
    if len(set(cfg.budgets)) != len(cfg.budgets):
        raise InvalidParameterError(f"The 'budgets' setting lists a budget twice: {cfg.budgets!r}.")
    return cfg.method_specs()
