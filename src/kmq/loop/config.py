"""Typed configuration of ``kmq iterate`` (YAML < flags, like :class:`kmq.config.RunConfig`).

It reuses the static pipeline's ``embed``, ``cluster``, ``score`` (quality for the within-cluster draw)
and ``select`` (kMQ's ``allocation``, ``within``, ``temperature``) sections and adds ``train``,
``generate``, ``judge`` (a :class:`~kmq.config.ScoreConfig` whose ``scorer`` is the judge spec) and
``reweight``; ``engine`` (:class:`~kmq.config.EngineConfig`, ``--engine ray``) is where the embedding's and
the quality scorer's cache misses are computed, as for ``kmq select``. A YAML file mirrors the dataclasses::

    pool: pool.jsonl
    budget: 6000
    rounds: 3
    model: meta-llama/Llama-2-7b-hf
    train: {trainer: trl, mode: retrain, finetune: lora, epochs: 3}
    generate: {generator: vllm, max_new_tokens: 512}
    judge: {scorer: reward:sfairXC/FsfairX-LLaMA3-RM-v0.1}
    reweight: {method: multiplicative, temperature: 1.0}
    engine: {engine: ray, actors: 2}
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from kmq.config import (
    ClusterConfig,
    EmbedConfig,
    EngineConfig,
    FieldsConfig,
    OutFormat,
    RunConfig,
    RunSettings,
    ScoreConfig,
    SelectConfig,
    Validated,
    build_dataclass,
    dump_yaml,
    opt,
    parse_token_budget,
    read_yaml,
)
from kmq.errors import InvalidParameterError


@dataclass
class TrainConfig(Validated):
    """How each round's model is fine-tuned (``trl``) or which external command does it (``command``)."""

    trainer: Literal["trl", "command"] = field(default="trl", metadata={"help": "trl | command"})
    mode: Literal["retrain", "continue"] = field(
        default="retrain",
        metadata={"help": "retrain: from the base on all selected so far; continue: last checkpoint, new batch"},
    )
    command: str | None = field(
        default=None,
        metadata={
            "help": "command trainer: placeholders {data} {output_dir} {base_model} {init_model} {round} {seed}"
        },
    )
    shell: bool = field(default=False, metadata={"help": "command trainer: run the command through the shell"})
    finetune: Literal["lora", "full"] = field(default="lora", metadata={"help": "trl: LoRA (peft) or full"})
    epochs: float = opt(3.0, "epochs per round", gt=0)
    lr: float | None = opt(None, "peak learning rate (None: 2e-4 LoRA, 2e-5 full)", gt=0)
    batch_size: int = opt(4, "per-device batch size", min=1)
    grad_accum: int = opt(16, "gradient accumulation steps", min=1)
    max_seq_length: int = opt(2048, "longest training sequence in tokens", min=8)
    warmup_ratio: float = opt(0.03, "warm-up share of the steps", min=0, max=1)
    weight_decay: float = opt(0.0, "AdamW weight decay", min=0)
    lr_scheduler: str = opt("linear", "transformers learning-rate schedule (linear, cosine, constant, ...)")
    max_steps: int = opt(-1, "stop after this many optimizer steps (-1: epochs)", min=-1)
    lora_r: int = opt(16, "LoRA rank", min=1)
    lora_alpha: int = opt(32, "LoRA alpha", min=1)
    lora_dropout: float = opt(0.05, "LoRA dropout", min=0, max=1)
    lora_target_modules: str | list[str] = opt("all-linear", "LoRA target modules: all-linear or q_proj,v_proj,...")
    bf16: bool | None = field(default=None, metadata={"help": "None: on for a bf16-capable GPU, off on CPU"})
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": "None: on for GPU, off on CPU"})
    device: str | None = field(default=None, metadata={"help": "None: cuda when available, else cpu"})
    train_final: bool = field(default=False, metadata={"help": "also train after the last round's draw"})
    extra: dict[str, Any] = field(default_factory=dict, metadata={"help": "further trl.SFTConfig arguments"})

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.finetune == "lora" else 2e-5)


@dataclass
class GenerateConfig(Validated):
    """How each round's model answers the selected prompts (greedy, one answer per prompt)."""

    generator: str = field(default="hf", metadata={"help": "hf | vllm | openai:MODEL@URL"})
    max_new_tokens: int = opt(512, "longest answer in tokens", min=1)
    max_prompt_length: int = opt(2048, "longest prompt in tokens (longer: the start is cut)", min=8)
    batch_size: int = opt(8, "hf: prompts per batch", min=1)
    device: str | None = field(default=None, metadata={"help": "hf: None means cuda when available, else cpu"})
    precision: Literal["fp32", "bf16", "fp16"] = opt("fp32", "hf/vllm: precision of the generating model")
    concurrency: int = opt(8, "openai: requests in flight at most", min=1)
    max_retries: int = opt(5, "openai: retries on 429/5xx/timeouts", min=0)
    timeout: float = opt(300.0, "openai: seconds per request", gt=0)
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "openai: environment variable of the key"})
    vllm: dict[str, Any] = field(default_factory=dict, metadata={"help": "extra vllm.LLM(...) arguments"})


@dataclass
class ReweightConfig(Validated):
    """How cluster weights follow the cluster signals (:mod:`kmq.loop.reweight`)."""

    method: Literal["multiplicative", "softmax"] = opt(
        "multiplicative", "multiplicative w*softmax(s/T) or softmax(s/T)"
    )
    temperature: float = opt(1.0, "T of the weight update", gt=0)


def _judge_default() -> ScoreConfig:
    return ScoreConfig(scorer="perplexity")


@dataclass
class IterateConfig(RunSettings):
    """Everything a ``kmq iterate`` run depends on."""

    pool: str = opt("", "a JSON/JSONL(.gz)/Parquet/CSV/TSV file (or a .zip of one), a save_to_disk folder, a hub name")
    budget: int | float = opt(0, "a count (1000) or a fraction of the pool (0.1)", min=0)
    rounds: int = opt(3, "number of rounds R", min=1, flag="--rounds")
    model: str = opt("", "base model trained each round (hub name or local folder)")
    out: str | None = opt(None, "where to write the subset")
    run_dir: str | None = opt(None, "the resumable run directory (default: OUT.kmq-run)")
    format: str = opt("auto", "auto | messages | sharegpt | alpaca | prompt_completion")
    split: str | None = opt(None, "split of a Hugging Face dataset (None: train)")
    seed: int = opt(0, "one seed for every random choice", min=0, max=2**63 - 1, flag="--seed")
    shuffle: bool = opt(False, "write the subset in a seeded random order (default: the pool's order)")
    dedup: str = opt(
        "exact", "none | exact (identical normalised conversations) | near[:TAU] (also cosine > TAU, 0.95)"
    )
    out_format: OutFormat = opt(
        "same", "the subset's format: same (the input's records) | messages | sharegpt | alpaca | prompt-completion"
    )
    report: bool = opt(False, "also write report.html (kmq report) into the run directory")
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    judge: ScoreConfig = field(default_factory=_judge_default)
    reweight: ReweightConfig = field(default_factory=ReweightConfig)
    fields: FieldsConfig = opt(factory=FieldsConfig)
    engine: EngineConfig = opt(factory=EngineConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> IterateConfig:
        return build_dataclass(cls, data, source, _SECTIONS, {"judge": _judge_default().__dict__})

    def __post_init__(self) -> None:
        if parse_token_budget(self.budget) is not None:
            raise InvalidParameterError(
                f"kmq iterate takes a budget in records (6000) or a fraction (0.1); got the token budget "
                f"{self.budget!r}. Token budgets are for kmq select."
            )
        super().__post_init__()

    def run_config(self) -> RunConfig:
        """The static pipeline's view (pool, embedding, clustering, quality, kMQ parameters)."""
        return RunConfig(
            pool=self.pool, budget=self.budget, format=self.format, split=self.split, seed=self.seed,
            shuffle=self.shuffle, dedup=self.dedup, out_format=self.out_format,
            embed=self.embed, cluster=self.cluster, score=self.score,
            select=SelectConfig(method="kmq", params=dict(self.select.params)),
            fields=self.fields, engine=self.engine,
        )  # fmt: skip


_SECTIONS: dict[str, type] = {
    "embed": EmbedConfig,
    "cluster": ClusterConfig,
    "score": ScoreConfig,
    "select": SelectConfig,
    "train": TrainConfig,
    "generate": GenerateConfig,
    "judge": ScoreConfig,
    "reweight": ReweightConfig,
    "fields": FieldsConfig,
    "engine": EngineConfig,
}


def load_iterate_config(path: str | os.PathLike) -> IterateConfig:
    """Read a YAML (or JSON) file into an :class:`IterateConfig`."""
    return IterateConfig.from_dict(read_yaml(path), source=str(path))


def dump_iterate_config(cfg: IterateConfig) -> str:
    return dump_yaml(cfg.to_dict())


def check_config(cfg: IterateConfig) -> None:
    """Cross-field checks that need no data; each error names the flag."""
    if not cfg.model:
        raise InvalidParameterError("No base model given: pass --model MODEL (a hub name or a local folder).")
    t = cfg.train
    if t.trainer == "command" and not t.command:
        raise InvalidParameterError("--trainer command needs --train-command 'CMD {data} {output_dir} ...'.")
    g = cfg.generate.generator
    if g not in ("hf", "vllm") and not re.fullmatch(r"openai:(.+?)@(https?://\S+)", g):
        raise InvalidParameterError(f"--generator must be hf, vllm or openai:MODEL@URL. Got {g!r} instead.")
    if cfg.select.method not in ("kmq", ""):
        raise InvalidParameterError(f"kmq iterate draws with kmq; select.method={cfg.select.method!r} is not used.")
    from kmq.methods import get_method
    from kmq.methods.registry import check_params

    check_params(get_method("kmq"), cfg.select.params)  # the kmq method's own declaration of its parameters
