"""The plan of an iterative run (``kmq iterate --dry-run``): rounds, sizes and work per round."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kmq.errors import InvalidParameterError
from kmq.loop.config import IterateConfig
from kmq.loop.reweight import split_budget


@dataclass
class RoundPlan:
    """What one round does."""

    round: int
    draw: int
    selected: int
    train_examples: int
    trains: bool
    generations: int
    judge_calls: int


@dataclass
class Plan:
    """Rounds and sizes of a run (no data is read beyond the pool size)."""

    pool_size: int
    budget: int
    rounds: list[RoundPlan] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    #: step ids an earlier run of the run directory finished (``prepare``, ``r01-select``...), in run order
    done: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> list[int]:
        return [r.draw for r in self.rounds]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pool_size": self.pool_size, "budget": self.budget, "sizes": self.sizes, "settings": self.settings,
            "rounds": [r.__dict__ for r in self.rounds], "done": list(self.done),
        }  # fmt: skip

    def format(self) -> str:
        """A human-readable table."""
        s = self.settings
        lines = [
            f"pool      {self.pool_size} records; budget {self.budget} over {len(self.rounds)} round(s): "
            + " + ".join(str(x) for x in self.sizes)
            + " (largest remainder: the first budget % rounds rounds draw one more)",
            f"train     {s['trainer']} ({s['mode']}) from {s['model']}"
            + ("; the final model is trained too" if s["train_final"] else "; no training after the last draw"),
            f"generate  {s['generator']}, greedy, max_new_tokens={s['max_new_tokens']}",
            f"judge     {s['judge']}; reweight {s['reweight']} (T={s['temperature']})",
        ]
        if self.done:
            first = "prepare and " if "prepare" in self.done else ""
            steps = sum(sid != "prepare" for sid in self.done)
            lines.append(f"done      {first}{steps} round step(s) finished earlier (column done): reused when their "
                         "settings match; --restart-from STEP redoes a step and every later one")  # fmt: skip
        header = (f"{'round':>5} {'draw':>6} {'selected':>9} {'train_examples':>15} {'generations':>12} "
                  f"{'judge_calls':>12}")  # fmt: skip
        lines += ["", header + ("  done" if self.done else "")]
        for r in self.rounds:
            train = str(r.train_examples) if r.trains else "-"
            row = f"{r.round:>5} {r.draw:>6} {r.selected:>9} {train:>15} {r.generations:>12} {r.judge_calls:>12}"
            lines.append(row + (f"  {self._done_in(r.round)}" if self.done else ""))
        total = [sum(getattr(r, a) for r in self.rounds if a != "train_examples" or r.trains)
                 for a in ("train_examples", "generations", "judge_calls")]  # fmt: skip
        lines.append(f"{'total':>5} {self.budget:>6} {'':>9} {total[0]:>15} {total[1]:>12} {total[2]:>12}")
        lines.append("judge_calls: two scored conversations (gold and generated answer) per generation")
        return "\n".join(lines)

    def _done_in(self, round_: int) -> str:
        """The finished steps of one round, ``select,train`` (``-`` for none)."""
        prefix = f"r{round_:02d}-"
        return ",".join(sid[len(prefix) :] for sid in self.done if sid.startswith(prefix)) or "-"


def make_plan(cfg: IterateConfig, pool_size: int, budget: int) -> Plan:
    """The plan for a resolved budget; an error if a round would draw nothing."""
    if budget < cfg.rounds:
        raise InvalidParameterError(
            f"The budget ({budget}) is smaller than --rounds {cfg.rounds}: every round must draw at least one "
            "example. Pass fewer rounds or a larger budget."
        )
    sizes = split_budget(budget, cfg.rounds).tolist()
    plan = Plan(pool_size=pool_size, budget=budget)
    total = 0
    for r, draw in enumerate(sizes, start=1):
        total += draw
        last = r == len(sizes)
        gens = 0 if last else total
        plan.rounds.append(
            RoundPlan(
                round=r,
                draw=draw,
                selected=total,
                train_examples=total if cfg.train.mode == "retrain" else draw,
                trains=not last or cfg.train.train_final,
                generations=gens,
                judge_calls=2 * gens,
            )  # fmt: skip
        )
    plan.settings = {
        "trainer": cfg.train.trainer, "mode": cfg.train.mode, "model": cfg.model, "train_final": cfg.train.train_final,
        "generator": cfg.generate.generator, "max_new_tokens": cfg.generate.max_new_tokens,
        "judge": cfg.judge.scorer, "reweight": cfg.reweight.method, "temperature": cfg.reweight.temperature,
    }  # fmt: skip
    return plan
