"""The model under evaluation: lm-eval's model over the weights kmq loads, an adapter merged for the generators,
and lm-eval kept quiet.

:func:`build_lm` loads the model with :mod:`kmq.hf` (a folder or a hub name, one-line errors when it is missing
or offline, no remote code unless asked), applies a peft adapter on top (not merged, as lm-eval's own ``peft=``
does) and wraps both in lm-eval's ``HFLM``; ``backend="vllm"`` gives lm-eval's ``VLLM`` model, the adapter as a
vLLM LoRA. :func:`merged_model` gives the judged tasks' generators one folder to load.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from typing import Any

from kmq import hf
from kmq._deps import require
from kmq.errors import MissingDependencyError

#: batch size when none is given (lm-eval's own default is 1: slow for log-likelihood tasks)
DEFAULT_BATCH_SIZE = 8


def build_lm(
    model: str,
    adapter: str | None,
    backend: str,
    *,
    device: str,
    precision: str,
    batch_size: int | str | None,
    seed: int,
    revision: str | None,
    trust_remote_code: bool,
) -> Any:
    """lm-eval's ``HFLM`` over the model (and adapter) kmq loads, or its ``VLLM`` model (see the module docstring).

    ``precision`` is resolved (``fp32``, ``bf16``, ``fp16``); ``batch_size`` None is :data:`DEFAULT_BATCH_SIZE`.
    """
    batch = batch_size or DEFAULT_BATCH_SIZE
    if backend == "vllm":
        return _build_vllm(model, adapter, precision=precision, batch_size=batch, seed=seed, revision=revision,
                           trust_remote_code=trust_remote_code)  # fmt: skip
    from lm_eval.models.huggingface import HFLM

    source = hf.resolve(model, revision=revision, purpose="the evaluated model")
    tok = hf.load_tokenizer(source, trust_remote_code=trust_remote_code, purpose="the evaluated model's tokenizer")
    lm = hf.load_model("AutoModelForCausalLM", source, device=device, precision=precision,
                       trust_remote_code=trust_remote_code, purpose="the evaluated model")  # fmt: skip
    if adapter:
        lm = _with_adapter(lm, adapter)
    return HFLM(pretrained=lm, tokenizer=tok, batch_size=batch, trust_remote_code=trust_remote_code)


def _with_adapter(lm: Any, adapter: str) -> Any:
    peft = require("peft", purpose="a LoRA adapter in kmq eval")
    src = hf.resolve(adapter, purpose="the evaluated model's adapter")
    hint = "Pass the folder of an adapter saved with save_pretrained (adapter_config.json)."
    with hf.loading(src, purpose="the evaluated model's adapter", hint=hint):
        return peft.PeftModel.from_pretrained(lm, src.location).eval()


def _build_vllm(model, adapter, *, precision, batch_size, seed, revision, trust_remote_code) -> Any:
    try:
        require("vllm", purpose="--backend vllm")
        from lm_eval.models.vllm_causallms import VLLM
    except ImportError as err:
        raise MissingDependencyError(
            "--backend vllm needs the `vllm` package (`pip install kmq[vllm]`, on a machine with a GPU); "
            "or use --backend hf."
        ) from err
    source = hf.check_model(model, revision=revision, purpose="the evaluated model")
    lora = str(hf.resolve(adapter, purpose="the evaluated model's adapter").location) if adapter else None
    return VLLM(pretrained=source.location, dtype=hf.PRECISIONS[precision], revision=source.revision,
                trust_remote_code=trust_remote_code, batch_size=batch_size, seed=seed,
                lora_local_path=lora)  # fmt: skip


@contextlib.contextmanager
def merged_model(model: str, adapter: str | None) -> Iterator[str]:
    """``model`` itself, or a temporary folder holding it with ``adapter`` merged in (what a generator loads)."""
    if not adapter:
        yield model
        return
    with tempfile.TemporaryDirectory(prefix="kmq-eval-merged-") as tmp:
        lm = hf.load_model("AutoModelForCausalLM", model, purpose="the evaluated model")
        merged = _with_adapter(lm, adapter).merge_and_unload()
        merged.save_pretrained(tmp)
        hf.load_tokenizer(model, purpose="the evaluated model's tokenizer").save_pretrained(tmp)
        del lm, merged
        yield tmp


# -- what lm-eval prints --------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_libraries(show_progress: bool | None) -> Iterator[None]:
    """The Hugging Face libraries' and lm-eval's logs and bars follow ``show_progress`` (see ``hf.library_output``).

    lm-eval's bars (the ``tqdm`` its modules import) are swapped for disabled ones inside the block, and its
    logger logs errors only; both are restored on exit. lm-eval (and the ``datasets`` it imports) is imported
    first, so ``hf.library_output`` quiets ``datasets`` too.
    """
    from kmq.cache import progress_enabled

    quiet = not progress_enabled(show_progress)
    modules = _lm_eval_modules() if quiet else ()
    with hf.library_output(show_progress):
        if not modules:
            yield
            return
        from tqdm import tqdm

        class _Silent(tqdm):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs["disable"] = True
                super().__init__(*args, **kwargs)

        saved = [m.tqdm for m in modules]
        log = logging.getLogger("lm_eval")
        level = log.level
        log.setLevel(logging.ERROR)
        for m in modules:
            m.tqdm = _Silent
        try:
            yield
        finally:
            for m, bar in zip(modules, saved, strict=True):
                m.tqdm = bar
            log.setLevel(level)


def _lm_eval_modules() -> tuple:
    """lm-eval's modules that show bars (empty when lm-eval is not installed: the judged tasks need none)."""
    try:
        import lm_eval.api.model
        import lm_eval.api.task
        import lm_eval.models.huggingface
    except ImportError:
        return ()
    return lm_eval.api.model, lm_eval.api.task, lm_eval.models.huggingface
