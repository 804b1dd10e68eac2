"""Generators of iterative kMQ: one greedy answer per prompt from the round's model (paper step (d)).

A generator has one verb, :meth:`Generator.generate`: ``(model, prompts) -> answers``, where a prompt is a
conversation up to (not including) the assistant turn to answer, and ``model`` is the round's checkpoint
folder. Decoding is greedy, so a rerun gives the same answers.

- ``hf``: ``transformers`` ``generate``, batched (similar lengths together) with left padding, prompts
  rendered with the checkpoint's own chat template (the one it was trained with; kmq's Tulu fallback when
  it has none), cut to their last ``max_prompt_length`` tokens; the answer stops at EOS or at the
  template's end-of-turn marker.
- ``vllm``: the same through vLLM (imported only when used; install ``vllm`` for it).
- ``openai:MODEL@URL``: any OpenAI-compatible server (vLLM, TGI, Ollama...). ``MODEL`` may contain
  ``{round}`` and ``{checkpoint}``, filled per round (e.g. a LoRA module your server loads); keeping the
  server on the round's model is up to you. Requests go through :class:`kmq.endpoints.Endpoint` on
  ``concurrency`` threads: the openai SDK retries 429, 408/409, 5xx, timeouts and dropped connections
  with backoff, a dead server (connection refused, unknown host) fails within a second, and the first
  failure cancels the requests not yet sent. The API key comes only from the environment variable
  ``api_key_env`` and is never logged or stored; a ``user:password@`` in the URL never reaches a message.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

from kmq import hf
from kmq._deps import require
from kmq.endpoints import Endpoint
from kmq.errors import GenerationError, InvalidParameterError  # GenerationError: also importable from here
from kmq.loop.config import GenerateConfig
from kmq.redact import redact_url

logger = logging.getLogger(__name__)
Conversation = list[dict[str, str]]


class Generator(Protocol):
    """Answers prompts with a model, greedily."""

    def generate(self, model: str, prompts: list[Conversation], *, round: int = 0) -> list[str]:
        """One answer per prompt, in order."""
        ...


def get_generator(cfg: GenerateConfig, *, show_progress: bool | None = None) -> Generator:
    """The generator a config names (``hf``, ``vllm`` or ``openai:MODEL@URL``)."""
    spec = cfg.generator
    if spec == "hf":
        return HFGenerator(cfg, show_progress=show_progress)
    if spec == "vllm":
        return VLLMGenerator(cfg)
    if spec.startswith("openai:"):
        match = re.fullmatch(r"openai:(.+?)@(https?://\S+)", spec)
        if match is None:
            raise InvalidParameterError(
                "The 'generator' spec openai:MODEL@URL needs a model and an http(s) base URL, e.g. "
                f"openai:my-model@http://localhost:8000/v1. Got {spec!r} instead."
            )
        return OpenAIGenerator(cfg, match[1], match[2])
    raise InvalidParameterError(
        f"The 'generator' parameter must be hf, vllm or openai:MODEL@URL. Got {spec!r} instead."
    )


def end_of_turn(tok: Any) -> str:
    """The text a chat template puts right after an assistant turn's content (stripped), e.g. ``<|im_end|>``."""
    from kmq.scorers._lm import render_with_spans

    probe = "kmq probe answer"
    text, spans = render_with_spans(tok, [{"role": "user", "content": "q"}, {"role": "assistant", "content": probe}])
    start, end = spans[-1]
    tail = text[start:end]
    return tail[tail.find(probe) + len(probe) :].strip() if probe in tail else ""


class HFGenerator:
    """Greedy generation with ``transformers`` (see the module docstring).

    Attributes
    ----------
    stats_ : dict
        What the last :meth:`generate` did: ``context`` (the model's window in tokens, None if unknown) and
        ``capped`` (prompts whose answer got fewer than ``max_new_tokens`` tokens because the window was full).
    """

    def __init__(self, cfg: GenerateConfig, *, show_progress: bool | None = None) -> None:
        self.cfg = cfg
        self.show_progress = show_progress
        self.stats_: dict[str, Any] = {}

    def generate(self, model: str, prompts: list[Conversation], *, round: int = 0) -> list[str]:
        torch = require("torch", purpose="the hf generator")
        require("transformers", purpose="the hf generator")
        with hf.library_output(self.show_progress):
            return self._generate(torch, model, prompts, round)

    def _generate(self, torch: Any, model: str, prompts: list[Conversation], round: int) -> list[str]:
        from tqdm.auto import tqdm

        from kmq.cache import progress_enabled
        from kmq.scorers._blocks import length_batches

        cfg = self.cfg
        device = hf.default_device(cfg.device)
        source = hf.resolve(model, purpose="the hf generator's model")
        tok = hf.chat_tokenizer(hf.load_tokenizer(source, purpose="the hf generator's tokenizer"), name=model)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        lm = hf.load_model("AutoModelForCausalLM", source, device=device, precision=cfg.precision,
                           purpose="the hf generator's model")  # fmt: skip
        marker = end_of_turn(tok)
        stop = [tok.eos_token_id] if tok.eos_token_id is not None else []
        marker_id = tok.convert_tokens_to_ids(marker) if marker else None
        if isinstance(marker_id, int) and marker_id != tok.unk_token_id and marker_id not in stop:
            stop.append(marker_id)
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        context = context_length(lm.config, tok)
        keep = prompt_room(cfg.max_prompt_length, cfg.max_new_tokens, context)
        ids = [tok(t, add_special_tokens=False)["input_ids"][-keep:] for t in texts]
        out: list[str] = [""] * len(prompts)
        capped = 0
        bar = tqdm(total=len(prompts), desc=f"round {round}: generating", unit="answer", leave=False,
                   disable=not progress_enabled(self.show_progress))  # fmt: skip
        with torch.inference_mode(), bar:
            for batch in length_batches([len(x) for x in ids], cfg.batch_size):
                width = max(len(ids[i]) for i in batch)
                new_tokens = answer_room(cfg.max_new_tokens, width, context)
                capped += len(batch) if new_tokens < cfg.max_new_tokens else 0
                input_ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
                attn = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    input_ids[row, width - len(ids[i]) :] = torch.tensor(ids[i], dtype=torch.long)
                    attn[row, width - len(ids[i]) :] = 1
                gen = lm.generate(
                    input_ids=input_ids.to(device), attention_mask=attn.to(device), do_sample=False,
                    max_new_tokens=new_tokens, eos_token_id=stop or None, pad_token_id=tok.pad_token_id,
                )  # fmt: skip
                for row, i in enumerate(batch):
                    text = tok.decode(gen[row, width:], skip_special_tokens=False)
                    out[i] = _clean(text, tok, marker)
                bar.update(len(batch))
        if capped:
            logger.info(
                "round %d: %d of %d prompts left fewer than max_new_tokens=%d tokens of %s's %d-token context: "
                "their answers were capped to fit", round, capped, len(prompts), cfg.max_new_tokens, model, context,
            )  # fmt: skip
        self.stats_ = {"context": context, "capped": capped}
        del lm
        from kmq.loop.train import _free

        _free(torch)
        return out


#: a tokenizer's ``model_max_length`` when it sets none (transformers' VERY_LARGE_INTEGER is 1e30)
_NO_LIMIT = 10**12


def context_length(config: Any, tok: Any) -> int | None:
    """The model's window in tokens: the smaller of ``max_position_embeddings`` and the tokenizer's
    ``model_max_length`` (each where it is set); None when neither says."""
    limits = [getattr(config, "max_position_embeddings", None), getattr(tok, "model_max_length", None)]
    known = [int(x) for x in limits if isinstance(x, int) and 0 < x < _NO_LIMIT]
    return min(known) if known else None


def prompt_room(max_prompt_length: int, max_new_tokens: int, context: int | None) -> int:
    """How many of a prompt's last tokens are kept: ``max_prompt_length``, cut so the window keeps
    ``max_new_tokens`` for the answer, but never below half the window (nor below one token).

    >>> prompt_room(2048, 512, 4096), prompt_room(2048, 512, 1024), prompt_room(2048, 512, 512)
    (2048, 512, 256)
    """
    if context is None:
        return max_prompt_length
    return max(1, min(max_prompt_length, max(context - max_new_tokens, context // 2)))


def answer_room(max_new_tokens: int, prompt_tokens: int, context: int | None) -> int:
    """``max_new_tokens`` capped to what the window leaves after a (padded) prompt of ``prompt_tokens``.

    >>> answer_room(512, 100, None), answer_room(512, 100, 2048), answer_room(512, 300, 512)
    (512, 512, 212)
    """
    if context is None:
        return max_new_tokens
    return max(1, min(max_new_tokens, context - prompt_tokens))


def _clean(text: str, tok: Any, marker: str) -> str:
    """Cut a decoded answer at the end-of-turn marker or EOS and drop special tokens."""
    for stop in (marker, tok.eos_token, tok.pad_token):
        if stop and stop in text:
            text = text[: text.find(stop)]
    for special in tok.all_special_tokens:
        text = text.replace(special, "")
    return text.strip()


class VLLMGenerator:
    """Greedy generation with vLLM (imported on first use)."""

    def __init__(self, cfg: GenerateConfig) -> None:
        self.cfg = cfg

    def generate(self, model: str, prompts: list[Conversation], *, round: int = 0) -> list[str]:
        vllm = require("vllm", purpose="the vllm generator (`pip install vllm`)")
        cfg = self.cfg
        purpose = "the vllm generator's model"
        source = hf.resolve(model, purpose=purpose)
        with hf.loading(source, purpose=purpose, hint="Check the model and the generate config's vllm options."):
            llm = vllm.LLM(model=source.location, seed=0, **cfg.vllm)
        tok = hf.chat_tokenizer(llm.get_tokenizer(), name=model)
        texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        params = vllm.SamplingParams(
            temperature=0.0, max_tokens=cfg.max_new_tokens, truncate_prompt_tokens=cfg.max_prompt_length
        )
        outputs = llm.generate(texts, params)
        answers = [o.outputs[0].text.strip() for o in outputs]
        del llm
        from kmq.loop.train import _free

        _free(require("torch", purpose="the vllm generator"))
        return answers


class OpenAIGenerator:
    """Greedy generation over an OpenAI-compatible chat endpoint (see the module docstring)."""

    def __init__(self, cfg: GenerateConfig, model: str, base_url: str) -> None:
        self.cfg = cfg
        self.model = model
        self.base_url = base_url

    def generate(self, model: str, prompts: list[Conversation], *, round: int = 0) -> list[str]:
        name = self.model.replace("{round}", str(round)).replace("{checkpoint}", str(model))
        cfg = self.cfg
        endpoint = Endpoint(
            self.base_url, label=f"openai generator {name}@{redact_url(self.base_url)}", error=GenerationError,
            api_key_env=cfg.api_key_env, max_retries=cfg.max_retries, timeout=cfg.timeout,
        )  # fmt: skip

        def one(messages: Conversation) -> str:
            answer = endpoint.chat(model=name, messages=messages, temperature=0.0, max_tokens=cfg.max_new_tokens)
            return answer.strip()

        return endpoint.map(one, prompts, concurrency=cfg.concurrency)
