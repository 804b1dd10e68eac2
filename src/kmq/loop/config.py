"""Typed configuration of ``kmq iterate`` (YAML < flags, like :class:`kmq.config.RunConfig`).

It reuses the static pipeline's ``embed``, ``cluster``, ``score`` (quality for the within-cluster draw)
and ``select`` (kMQ's ``allocation``, ``within``, ``temperature``) sections and adds ``train``,
``generate``, ``judge`` (a :class:`~kmq.config.ScoreConfig` whose ``scorer`` is the judge spec) and
``reweight``. A YAML file mirrors the dataclasses::

    pool: pool.jsonl
    budget: 6000
    rounds: 3
    model: meta-llama/Llama-2-7b-hf
    train: {trainer: trl, mode: retrain, finetune: lora, epochs: 3}
    generate: {generator: vllm, max_new_tokens: 512}
    judge: {scorer: reward:sfairXC/FsfairX-LLaMA3-RM-v0.1}
    reweight: {method: multiplicative, temperature: 1.0}
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from kmq.config import (
    ClusterConfig,
    EmbedConfig,
    RunConfig,
    ScoreConfig,
    SelectConfig,
    apply_overrides,
    build_dataclass,
    dump_yaml,
    read_yaml,
)
from kmq.errors import InvalidParameterError


@dataclass
class TrainConfig:
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
    epochs: float = 3.0
    lr: float | None = field(default=None, metadata={"help": "peak learning rate (None: 2e-4 LoRA, 2e-5 full)"})
    batch_size: int = 4
    grad_accum: int = 16
    max_seq_length: int = 2048
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimizer steps (-1: epochs)"})
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    bf16: bool | None = field(default=None, metadata={"help": "None: on for a bf16-capable GPU, off on CPU"})
    gradient_checkpointing: bool | None = field(default=None, metadata={"help": "None: on for GPU, off on CPU"})
    device: str | None = field(default=None, metadata={"help": "None: cuda when available, else cpu"})
    train_final: bool = field(default=False, metadata={"help": "also train after the last round's draw"})
    extra: dict[str, Any] = field(default_factory=dict, metadata={"help": "further trl.SFTConfig arguments"})

    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.finetune == "lora" else 2e-5)


@dataclass
class GenerateConfig:
    """How each round's model answers the selected prompts (greedy, one answer per prompt)."""

    generator: str = field(default="hf", metadata={"help": "hf | vllm | openai:MODEL@URL"})
    max_new_tokens: int = 512
    max_prompt_length: int = 2048
    batch_size: int = 8
    device: str | None = field(default=None, metadata={"help": "hf: None means cuda when available, else cpu"})
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    concurrency: int = field(default=8, metadata={"help": "openai: requests in flight at most"})
    max_retries: int = field(default=5, metadata={"help": "openai: retries on 429/5xx/timeouts"})
    timeout: float = 300.0
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "openai: environment variable of the key"})
    vllm: dict[str, Any] = field(default_factory=dict, metadata={"help": "extra vllm.LLM(...) arguments"})


@dataclass
class ReweightConfig:
    """How cluster weights follow the cluster signals (:mod:`kmq.loop.reweight`)."""

    method: Literal["multiplicative", "softmax"] = "multiplicative"
    temperature: float = 1.0


def _judge_default() -> ScoreConfig:
    return ScoreConfig(scorer="perplexity", judge_unparsable="nan")


@dataclass
class IterateConfig:
    """Everything a ``kmq iterate`` run depends on."""

    pool: str = ""
    budget: int | float = 0
    rounds: int = 3
    model: str = ""
    out: str | None = None
    run_dir: str | None = None
    format: str = "auto"
    split: str | None = None
    seed: int = 0
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    judge: ScoreConfig = field(default_factory=_judge_default)
    reweight: ReweightConfig = field(default_factory=ReweightConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> IterateConfig:
        return build_dataclass(cls, data, source, _SECTIONS, {"judge": _judge_default().__dict__})

    def updated(self, overrides: dict[str, Any]) -> IterateConfig:
        """A copy with dotted-key overrides applied; None values are ignored."""
        return IterateConfig.from_dict(apply_overrides(self.to_dict(), overrides), source="arguments")

    def run_config(self) -> RunConfig:
        """The static pipeline's view (pool, embedding, clustering, quality, kMQ parameters)."""
        return RunConfig(
            pool=self.pool, budget=self.budget, format=self.format, split=self.split, seed=self.seed,
            embed=self.embed, cluster=self.cluster, score=self.score,
            select=SelectConfig(method="kmq", params=dict(self.select.params)),
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
    if isinstance(cfg.rounds, bool) or not isinstance(cfg.rounds, int) or cfg.rounds < 1:
        raise InvalidParameterError(f"--rounds must be an int >= 1. Got {cfg.rounds!r} instead.")
    t = cfg.train
    if t.trainer not in ("trl", "command"):
        raise InvalidParameterError(f"--trainer must be trl or command. Got {t.trainer!r} instead.")
    if t.trainer == "command" and not t.command:
        raise InvalidParameterError("--trainer command needs --train-command 'CMD {data} {output_dir} ...'.")
    if t.mode not in ("retrain", "continue"):
        raise InvalidParameterError(f"--train-mode must be retrain or continue. Got {t.mode!r} instead.")
    if t.finetune not in ("lora", "full"):
        raise InvalidParameterError(f"--finetune must be lora or full. Got {t.finetune!r} instead.")
    if cfg.reweight.method not in ("multiplicative", "softmax"):
        raise InvalidParameterError(
            f"--reweight must be multiplicative or softmax. Got {cfg.reweight.method!r} instead."
        )
    if not cfg.reweight.temperature > 0:
        raise InvalidParameterError(f"--reweight-temperature must be > 0. Got {cfg.reweight.temperature!r} instead.")
    g = cfg.generate.generator
    if g not in ("hf", "vllm") and not re.fullmatch(r"openai:(.+?)@(https?://\S+)", g):
        raise InvalidParameterError(f"--generator must be hf, vllm or openai:MODEL@URL. Got {g!r} instead.")
    if cfg.select.method not in ("kmq", ""):
        raise InvalidParameterError(f"kmq iterate draws with kmq; select.method={cfg.select.method!r} is not used.")
    params = cfg.select.params
    if params.get("within", "softmax") not in ("softmax", "proportional", "uniform", "top"):
        raise InvalidParameterError(
            f"--within must be softmax, proportional, uniform or top. Got {params['within']!r} instead."
        )
    if params.get("allocation", "equal") not in ("equal", "proportional"):
        raise InvalidParameterError(
            f"--allocation must be equal or proportional. Got {params['allocation']!r} instead."
        )
    unknown = set(params) - {"allocation", "within", "temperature"}
    if unknown:
        raise InvalidParameterError(
            f"Unknown kmq parameter(s) {sorted(unknown)}; valid: ['allocation', 'temperature', 'within']."
        )
