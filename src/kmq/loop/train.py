"""Trainers of iterative kMQ: fine-tune a model on a round's data and save it as a plain model folder.

A trainer has one verb, :meth:`Trainer.train`, and works on files: the round's data is a JSON Lines file
of ``{"id": ..., "messages": [...]}`` (only conversations with a non-empty assistant turn: there is
nothing to learn from the others) and the result is a folder that ``transformers`` (and vLLM) can load.

- ``trl``: TRL's ``SFTTrainer`` with the loss on assistant tokens only. The conversations are rendered
  with the model's chat template (kmq's Tulu fallback when it has none; the template is saved with the
  checkpoint, so generation uses the same one) and the assistant spans are located by rendering prefixes
  (:func:`kmq.scorers._lm.render_with_spans`), so any template works, without ``{% generation %}`` marks.
  LoRA (peft, merged into the weights before saving) or full fine-tuning. bf16 and gradient checkpointing
  are off on CPU (TRL turns both on by default, which is 2-3x slower there).
- ``command``: any external command (LLaMA-Factory, axolotl, your script) with the placeholders
  ``{data}``, ``{output_dir}``, ``{base_model}``, ``{init_model}``, ``{round}``, ``{seed}``; ``{{`` and
  ``}}`` are a literal brace, any other ``{...}`` is an error (:func:`check_command`). It runs without a
  shell unless ``shell=True``; its output streams to stderr; a nonzero exit is an error that names the
  round and the command.

How a value reaches the command: the placeholders are filled in one pass over the template, and a value
is never scanned again, so a run directory or model name holding ``{output_dir}``, quotes or ``$(...)``
arrives as exactly that text. Without a shell the template is split into arguments first and each
argument is filled, so one value is always (part of) one argument. With ``shell=True`` each value is
``shlex.quote``-d once, which holds only where the shell reads a bare word: a string placeholder inside
quotes, backticks, ``$'...'``, a here-document or ``((...))`` is refused (write it bare, kmq quotes it).
A command that re-parses its arguments (``eval``, ``sh -c``, ``ssh``) evaluates them again: avoid that.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from kmq import hf
from kmq._deps import require
from kmq.cache import progress_enabled
from kmq.errors import InvalidParameterError, TrainingError
from kmq.loop.config import TrainConfig
from kmq.redact import redact_url

logger = logging.getLogger(__name__)


class Trainer(Protocol):
    """Fine-tunes ``init_model`` (or ``base_model``) on ``data`` and writes a loadable model to ``output_dir``."""

    def train(
        self, *, data: Path, output_dir: Path, base_model: str, init_model: str | None, round: int, seed: int
    ) -> dict[str, Any]:
        """Train and save; returns JSON-serialisable stats (examples, steps, loss...)."""
        ...


def write_training_data(path: Path, ids: list[str], conversations: list[list[dict[str, str]]]) -> dict[str, int]:
    """Write the round's training set as JSON Lines ``{"id", "messages"}``; skips conversations with no answer.

    Returns
    -------
    stats : dict
        ``examples`` written and ``skipped`` (no non-empty assistant turn).
    """
    written = skipped = 0
    with open(path, "w", encoding="utf-8") as fh:
        for rid, conv in zip(ids, conversations, strict=True):
            if not any(t["role"] == "assistant" and t["content"].strip() for t in conv):
                skipped += 1
                continue
            fh.write(json.dumps({"id": rid, "messages": conv}, ensure_ascii=False) + "\n")
            written += 1
    return {"examples": written, "skipped": skipped}


def read_training_data(path: Path) -> list[list[dict[str, str]]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line)["messages"] for line in fh if line.strip()]


def get_trainer(cfg: TrainConfig, *, show_progress: bool | None = None) -> Trainer:
    """The trainer a config names."""
    if cfg.trainer == "command":
        return CommandTrainer(cfg)
    return TRLTrainer(cfg, show_progress=show_progress)


class TRLTrainer:
    """Supervised fine-tuning with TRL (see the module docstring).

    Parameters
    ----------
    cfg : TrainConfig
        Hyperparameters: epochs, lr, batch size, gradient accumulation, max_seq_length, warmup_ratio, LoRA.
    """

    def __init__(self, cfg: TrainConfig, *, show_progress: bool | None = None) -> None:
        self.cfg = cfg
        self.show_progress = show_progress

    def train(
        self, *, data: Path, output_dir: Path, base_model: str, init_model: str | None, round: int, seed: int
    ) -> dict[str, Any]:
        start = time.perf_counter()
        libs = [require(name, purpose="the trl trainer") for name in ("torch", "transformers", "trl", "datasets")]
        with hf.library_output(self.show_progress):
            stats = self._train(libs, data=data, output_dir=output_dir, src=init_model or base_model, round=round,
                                seed=seed)  # fmt: skip
        return {**stats, "seconds": round_(time.perf_counter() - start)}

    def _train(self, libs: list[Any], *, data: Path, output_dir: Path, src: str, round: int, seed: int) -> dict:
        torch, tf, trl, datasets = libs
        cfg = self.cfg
        device = hf.default_device(cfg.device)
        on_gpu = device.startswith("cuda")
        bf16 = cfg.bf16 if cfg.bf16 is not None else (on_gpu and torch.cuda.is_bf16_supported())
        tf.set_seed(seed)
        source = hf.resolve(src, purpose="the trl trainer's model")
        tok = hf.chat_tokenizer(hf.load_tokenizer(source, purpose="the trl trainer's tokenizer"), name=src)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        rows = _tokenize(tok, read_training_data(data))
        if not rows:
            raise TrainingError(f"round {round}: no training example has an assistant turn to learn from ({data}).")
        model = hf.load_model("AutoModelForCausalLM", source, precision="bf16" if bf16 else "fp32",
                              purpose="the trl trainer's model")  # fmt: skip
        peft_config = None
        if cfg.finetune == "lora":
            peft = require("peft", purpose="LoRA training")
            peft_config = peft.LoraConfig(
                r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM",
            )  # fmt: skip
        checkpointing = cfg.gradient_checkpointing
        work = output_dir.parent / f".{output_dir.name}-work"
        args = trl.SFTConfig(
            output_dir=str(work),
            num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.resolved_lr(),
            per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
            warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay, lr_scheduler_type=cfg.lr_scheduler,
            max_length=cfg.max_seq_length, seed=seed, data_seed=seed, bf16=bf16, fp16=False,
            **_checkpointing(trl.SFTConfig, on_gpu if checkpointing is None else checkpointing),
            use_cpu=not on_gpu, assistant_only_loss=False, completion_only_loss=False, packing=False,
            report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, dataset_num_proc=None,
            **cfg.extra,
        )  # fmt: skip
        trainer = trl.SFTTrainer(
            model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=tok,
            peft_config=peft_config,
        )  # fmt: skip
        # transformers' PrinterCallback print()s every log dict to stdout, which carries kmq's results only:
        # kmq's own callback logs the loss and shows a progress bar on stderr instead
        trainer.remove_callback(tf.PrinterCallback)
        trainer.remove_callback(tf.ProgressCallback)
        trainer.add_callback(_log_callback(tf, round, progress_enabled(self.show_progress)))
        result = trainer.train()
        shutil.rmtree(work, ignore_errors=True)
        trained = trainer.model
        if peft_config is not None:
            trained = trained.merge_and_unload()
        trained.save_pretrained(output_dir)
        tok.save_pretrained(output_dir)
        del trainer, trained, model
        _free(torch)
        return {
            "trainer": "trl",
            "init": src,
            "examples": len(rows),
            "steps": int(result.global_step),
            "train_loss": float(result.training_loss),
            "device": device,
            "bf16": bool(bf16),
        }


def _free(torch: Any) -> None:
    """Give the GPU memory of a finished step back before the next one loads its model."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _log_callback(tf: Any, round_: int, bar: bool) -> Any:
    """A TrainerCallback that logs the loss through kmq's logger and, with ``bar``, shows a step bar (stderr)."""
    from tqdm.auto import tqdm

    class _Log(tf.TrainerCallback):
        progress: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if bar and state.is_world_process_zero:
                self.progress = tqdm(total=state.max_steps, desc=f"round {round_}: training", unit="step",
                                     leave=False, file=sys.stderr)  # fmt: skip

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.progress is not None:
                self.progress.update(state.global_step - self.progress.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if not logs or "loss" not in logs:
                return
            if self.progress is not None:
                self.progress.set_postfix(loss=f"{logs['loss']:.4g}", refresh=False)
            log = logger.debug if self.progress is not None else logger.info  # the bar shows it already
            log("round %d: step %d/%d loss %.4g", round_, state.global_step, state.max_steps, logs["loss"])

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.progress is not None:
                self.progress.close()
                self.progress = None

    return _Log()


def _checkpointing(config_cls: Any, on: bool) -> dict[str, bool]:
    """Activation (gradient) checkpointing under the name this transformers version uses, without warnings."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    keys = [k for k in ("activation_checkpointing", "gradient_checkpointing") if k in names]
    return {k: on for k in keys}


def _tokenize(tok: Any, conversations: list[list[dict[str, str]]]) -> list[dict[str, list[int]]]:
    """``input_ids`` and ``assistant_masks`` (1 on the assistant turns and their end-of-turn marker)."""
    from kmq.scorers._lm import render_with_spans
    from kmq.scorers.perplexity import tokenize_masked

    rows = []
    for conv in conversations:
        text, spans = render_with_spans(tok, conv)
        ids, mask = tokenize_masked(tok, text, spans)
        if mask.any():
            rows.append({"input_ids": list(ids), "assistant_masks": mask.astype(int).tolist()})
    return rows


PLACEHOLDERS = ("data", "output_dir", "base_model", "init_model", "round", "seed")
_INTEGER_PLACEHOLDERS = frozenset({"round", "seed"})  # digits only: safe in any shell context
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")  # literal {{ or }}, a {placeholder}, or a lone brace


def check_command(template: str, *, shell: bool = False) -> None:
    """Refuse a ``--train-command`` template that kmq cannot fill safely; nothing is run.

    Checks that every ``{name}`` is one of :data:`PLACEHOLDERS` (``{{`` and ``}}`` are literal braces),
    that without a shell the template splits into arguments, and that with one every string placeholder
    stands where the shell reads a bare word (see the module docstring).

    Raises
    ------
    InvalidParameterError
        Naming the template, the placeholder or brace and its column, and what to write instead.
    """
    head = f"--train-command {template!r}"
    if not template.strip():
        raise InvalidParameterError(
            f"{head} is empty: pass the training command, e.g. 'train {{data}} {{output_dir}}'."
        )
    for m in _TOKEN.finditer(template):
        col = m.start() + 1
        if m.group(0) in ("{", "}"):
            raise InvalidParameterError(f"{head}: a single {m.group(0)!r} at column {col}. {_VALID}")
        name = m.group(1)
        if name is not None and name not in PLACEHOLDERS:
            raise InvalidParameterError(f"{head}: unknown placeholder {{{name}}} at column {col}. {_VALID}")
        if shell and name is not None and name not in _INTEGER_PLACEHOLDERS:
            where = _shell_context(template, m.start())
            if where is not None:
                raise InvalidParameterError(
                    f"{head} (with --train-shell): {{{name}}} at column {col} stands {where}, where the shell "
                    f"would not read the quoted value as one word. kmq quotes each value itself: write it bare "
                    f"(train {{{name}}}, not train '{{{name}}}')."
                )
    if not shell:
        try:
            shlex.split(template)
        except ValueError as err:
            raise InvalidParameterError(
                f"{head} cannot be split into arguments: {err}. Close the quote, or pass --train-shell."
            ) from err


_VALID = ("Valid placeholders: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
          + "; write {{ and }} for a literal brace (e.g. ${{HOME}}).")  # fmt: skip


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` with each ``{name}`` replaced by ``values[name]`` and ``{{``/``}}`` by a brace, in one pass.

    The substituted text is never scanned again, so a value holding ``{output_dir}`` stays as it is.

    >>> fill("{a}-{b} {{a}}", {"a": "{b}", "b": "x"})
    '{b}-x {a}'
    """

    def one(m: re.Match[str]) -> str:
        token, name = m.group(0), m.group(1)
        if token in ("{{", "}}"):
            return token[0]
        if name is None or name not in values:
            raise InvalidParameterError(
                f"{text!r}: {token!r} at column {m.start() + 1} is not a placeholder. {_VALID}"
            )
        return values[name]

    return _TOKEN.sub(one, text)


def _shell_context(template: str, pos: int) -> str | None:
    """Where a placeholder at ``pos`` stands, if not where sh reads a bare word (None: a bare word or a comment).

    A conservative scan of the template text only (the values are never scanned): it tracks quotes,
    backslashes and comments, and gives up (refuses) after constructs whose quoting differs between
    shells or where quotes do not protect: ``$'``, ``<<`` and expansions nested in double quotes;
    a placeholder inside ``((...))`` is refused.
    """
    state, i = "", 0
    while i < pos:
        c = template[i]
        if state == "'":
            state = "" if c == "'" else state
        elif c == "\\":
            i += 1  # the next character is escaped (outside single quotes)
        elif state == "`":
            state = "" if c == "`" else state
        elif state == '"':
            if c == '"':
                state = ""
            elif c == "`" or template.startswith(("$(", "${"), i):
                return "after an expansion nested in double quotes"
        elif c == "#" and (i == 0 or template[i - 1] in " \t\n;&|()"):
            end = template.find("\n", i)
            if end < 0 or end > pos:
                return None  # in a comment: never run
            i = end
        elif template.startswith("((", i):
            end = _arithmetic_end(template, i)
            if end is None or end > pos:
                return "inside (( )) (arithmetic, where quotes do not protect)"
            i = end
            continue
        elif template.startswith(("$'", "<<"), i):
            what = {"$'": "ANSI-C quoting", "<<": "a here-document"}[template[i : i + 2]]
            return f"after {template[i : i + 2]} ({what})"
        elif c in "'\"`":
            state = c
        i += 1
    return {"": None, "'": "inside single quotes", '"': "inside double quotes", "`": "inside backticks"}[state]


def _arithmetic_end(template: str, start: int) -> int | None:
    """The index after the ``))`` closing the ``((`` at ``start``; None if it does not close or holds quotes."""
    depth = 0
    for j in range(start, len(template)):
        c = template[j]
        if c in "'\"`\\":
            return None  # quoting inside arithmetic differs between shells: do not guess where it ends
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth == 0:
            return j + 1
    return None


def _one_line(text: str) -> str:
    """``text`` for a log line or an error: control characters (newlines of a hostile path) escaped."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group(0))[1:-1], text)


class CommandTrainer:
    """Runs an external training command per round (see the module docstring).

    ``{init_model}`` is the previous round's checkpoint in ``continue`` mode and the base model otherwise.
    The command must write a model folder to ``{output_dir}``.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def argv(self, values: dict[str, str]) -> list[str] | str:
        """The command with its placeholders filled (a list without shell; one quoted string with it)."""
        template = self.cfg.command or ""
        check_command(template, shell=self.cfg.shell)
        if self.cfg.shell:
            return fill(template, {k: shlex.quote(v) for k, v in values.items()})
        return [fill(part, values) for part in shlex.split(template)]

    def train(
        self, *, data: Path, output_dir: Path, base_model: str, init_model: str | None, round: int, seed: int
    ) -> dict[str, Any]:
        start = time.perf_counter()
        values = {
            "data": str(data), "output_dir": str(output_dir), "base_model": base_model,
            "init_model": init_model or base_model, "round": str(round), "seed": str(seed),
        }  # fmt: skip
        cmd = self.argv(values)
        shown = redact_url(cmd if isinstance(cmd, str) else shlex.join(cmd))
        line = _one_line(shown)
        logger.info("round %d: running %s", round, line)
        try:
            proc = subprocess.Popen(
                cmd, shell=self.cfg.shell, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )  # fmt: skip
        except OSError as err:
            raise TrainingError(f"round {round}: cannot start the training command {line}: {err}") from err
        assert proc.stdout is not None
        for out in iter(proc.stdout.readline, b""):
            sys.stderr.write(out.decode("utf-8", "replace"))
            sys.stderr.flush()
        code = proc.wait()
        if code != 0:
            raise TrainingError(f"round {round}: the training command exited with status {code}: {line}")
        if not output_dir.is_dir() or not any(output_dir.iterdir()):
            raise TrainingError(f"round {round}: the training command finished but wrote nothing to "
                                f"{_one_line(str(output_dir))}: {line}")  # fmt: skip
        return {"trainer": "command", "command": shown, "seconds": round_(time.perf_counter() - start)}


def round_(x: float) -> float:
    return round(x, 3)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the training command gets SIGKILL when kmq dies, so a killed run leaves no orphan trainer."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
