"""One way to load Hugging Face tokenizers and models, for the scorers, the encoders, the trainer and the generators.

Where a model comes from
------------------------
:func:`resolve` decides it once. An existing folder (``~`` expanded) loads from disk; a ``revision`` is
ignored for it, with a warning (a folder has no history). A name that can only be a path (absolute,
``./``, ``../``, ``~``, more than one ``/``) but is no folder is an error. Anything
else is a hub name, loaded at ``revision`` (None: the default branch) from the Hugging Face cache or the
hub. ``trust_remote_code`` is off unless the caller passes it.

Errors
------
What a loader raises becomes one kmq error on one line that names what was being loaded (``purpose``,
e.g. "the perplexity scorer's tokenizer"), what was looked for and where, and what to do:
:class:`~kmq.errors.MissingArtifactError` for files that are not there (``OSError``; when
``HF_HUB_OFFLINE`` is set and the model is not in the local cache, the message says so and how to get
it), :class:`~kmq.errors.InvalidParameterError` for files that are there but cannot be used
(``ValueError``: an unknown architecture, custom code without ``trust_remote_code``). sentence-transformers
models load through ``SentenceTransformer`` inside :func:`loading`, which gives the same errors.

Chat templates
--------------
:func:`chat_tokenizer` is the one place that gives a tokenizer without a chat template kmq's fallback,
:data:`FALLBACK_CHAT_TEMPLATE` (the Tulu format the paper's authors generate with: ``<|user|>\\n...``,
``<|assistant|>\\n...`` + EOS; paper.md §3.4), and records which of the two a tokenizer uses
(:func:`template_source`).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kmq._deps import require
from kmq.errors import InvalidParameterError, KmqError, MissingArtifactError, invalid_parameter
from kmq.redact import redact_url

logger = logging.getLogger(__name__)

#: Tulu chat format (``{{ bos_token }}`` first); used when a tokenizer has no chat template.
FALLBACK_CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{% else %}{{ '<|assistant|>\\n' + message['content'] + (eos_token if eos_token else '') + '\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
#: kmq precision name -> torch dtype name
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
_TEMPLATE_ATTR = "kmq_template_source"  # set on a tokenizer by chat_tokenizer
_TRUE = {"1", "ON", "YES", "TRUE"}  # what huggingface_hub reads as set


@dataclass(frozen=True)
class ModelSource:
    """Where a model loads from, decided once by :func:`resolve`.

    Attributes
    ----------
    name : str
        The model as the user gave it (what identities and messages show).
    location : str
        What the loader gets: the expanded folder path, or the hub name.
    local : bool
        True for a folder on disk.
    revision : str or None
        Hub revision to load (always None for a folder).
    """

    name: str
    location: str
    local: bool
    revision: str | None = None

    def describe(self) -> str:
        """``the folder /x`` or ``the hub model 'org/m' at revision 'v1'`` (for messages)."""
        if self.local:
            return f"the folder {self.location}"
        return f"the hub model {self.name!r}" + (f" at revision {self.revision!r}" if self.revision else "")


def looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be a file system path, never a hub name (``org/model`` or ``model``)."""
    return (
        name.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or name in (".", "..")
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def resolve(
    model: str | ModelSource, *, revision: str | None = None, purpose: str, hint: str | None = None
) -> ModelSource:
    """Decide whether ``model`` is a local folder or a hub name (see the module docstring).

    Raises
    ------
    MissingArtifactError
        ``model`` is a path (or a file) but not a folder.
    """
    if isinstance(model, ModelSource):
        return model
    local = os.path.expanduser(model)
    if os.path.isdir(local):
        if revision is not None:
            logger.warning("%s is a local folder: revision %r is ignored", model, revision)
        return ModelSource(model, local, True)
    if looks_like_path(model):
        found = "is a file, not a model folder" if os.path.exists(local) else "does not exist"
        raise MissingArtifactError(
            f"Cannot load {purpose}: the model folder {local} {found}. "
            + (hint or "Pass the folder of a saved model or a hub name (org/model).")
        )
    return ModelSource(model, model, False, revision)


def fingerprint(path: Path) -> list:
    """Names, sizes and mtimes of a local model folder's files: changes when the weights change."""
    return sorted(
        (str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime))
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


# -- errors -----------------------------------------------------------------------------------------
@contextmanager
def loading(source: ModelSource, *, purpose: str, hint: str | None = None) -> Iterator[None]:
    """Turn what a loader raises in the block (``OSError``, ``ValueError``) into one kmq error on one line."""
    try:
        yield
    except KmqError:
        raise
    except OSError as err:
        raise _missing(source, purpose, err, hint) from err
    except ValueError as err:
        raise _unusable(source, purpose, err, hint) from err


def _detail(err: BaseException, limit: int = 400) -> str:
    """The loader's message on one line, without credentials or a final period, cut after ``limit`` characters."""
    text = redact_url(" ".join(str(err).split())).rstrip(".") or type(err).__name__
    return text if len(text) <= limit else text[:limit].rstrip(" .") + " [...]"


def offline_variable() -> str | None:
    """``HF_HUB_OFFLINE`` (or the older ``TRANSFORMERS_OFFLINE``) when it is set to a true value, else None."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").upper() in _TRUE:
            return name
    return None


def hub_cache_dir() -> str:
    """The Hugging Face hub cache folder this process reads (``HF_HUB_CACHE``, else ``$HF_HOME/hub``)."""
    constants = require("huggingface_hub", purpose="loading Hugging Face models").constants
    return str(constants.HF_HUB_CACHE)


def is_cached(name: str) -> bool:
    """Whether the hub cache holds anything of the model repository ``name``."""
    return (Path(hub_cache_dir()) / f"models--{name.replace('/', '--')}").is_dir()


def _missing(source: ModelSource, purpose: str, err: OSError, hint: str | None) -> MissingArtifactError:
    if source.local:
        return MissingArtifactError(
            f"Cannot load {purpose} from {source.describe()}: {_detail(err)}. "
            + (hint or "Pass the folder of a saved model (config.json, weights and tokenizer files).")
        )
    offline = offline_variable()
    if offline and not is_cached(source.name):
        return MissingArtifactError(
            f"Cannot load {purpose}: {source.name!r} is not a local folder and not in the Hugging Face cache "
            f"({hub_cache_dir()}), and {offline} is set, so nothing is downloaded. Download it first "
            f"(`hf download {source.name}`) or unset {offline}. " + (hint or "Or pass a local folder.")
        )
    note = f" {offline} is set: only files already in the cache load." if offline else ""
    return MissingArtifactError(
        f"Cannot load {purpose} from {source.describe()}: {_detail(err)}.{note} "
        + (hint or "Check the name and revision (a gated model needs HF_TOKEN), or pass a local folder.")
    )


def _unusable(source: ModelSource, purpose: str, err: ValueError, hint: str | None) -> InvalidParameterError:
    head = f"Cannot load {purpose} from {source.describe()}"
    if "trust_remote_code" in str(err):
        return InvalidParameterError(
            f"{head}: the model runs its own code (Python files it names in its config), and trust_remote_code "
            "is off. Pass trust_remote_code only if you trust that code; otherwise use another model."
        )
    todo = hint or (
        "Pass the folder of a model saved with save_pretrained (config.json, weights and tokenizer files)."
        if source.local
        else "Check the name, or pass a local folder."
    )
    return InvalidParameterError(f"{head}: {_detail(err)}. {todo}")


# -- loaders ----------------------------------------------------------------------------------------
def torch_dtype(precision: str, *, owner: str) -> Any:
    """The torch dtype of a precision name (``fp32``, ``bf16``, ``fp16``); ``owner`` names who asked."""
    if precision not in PRECISIONS:
        raise invalid_parameter("precision", owner, f"one of {list(PRECISIONS)}", precision)
    return getattr(require("torch", purpose=owner), PRECISIONS[precision])


def default_device(requested: str | None = None) -> str:
    """``requested``, else ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    if requested:
        return requested
    torch = require("torch", purpose="choosing a device")
    return "cuda" if torch.cuda.is_available() else "cpu"


def _from_pretrained(
    class_name: str,
    source: str | ModelSource,
    *,
    revision: str | None,
    trust_remote_code: bool,
    purpose: str,
    **kwargs: Any,
) -> Any:
    tf = require("transformers", purpose=purpose)
    src = resolve(source, revision=revision, purpose=purpose)
    if src.revision is not None:
        kwargs["revision"] = src.revision
    with loading(src, purpose=purpose):
        return getattr(tf, class_name).from_pretrained(src.location, trust_remote_code=trust_remote_code, **kwargs)


def load_tokenizer(
    source: str | ModelSource, *, revision: str | None = None, trust_remote_code: bool = False, purpose: str
) -> Any:
    """``AutoTokenizer`` of a folder or hub name (``purpose`` names it in errors: "the X scorer's tokenizer")."""
    return _from_pretrained("AutoTokenizer", source, revision=revision, trust_remote_code=trust_remote_code,
                            purpose=purpose)  # fmt: skip


def load_config(
    source: str | ModelSource, *, revision: str | None = None, trust_remote_code: bool = False, purpose: str
) -> Any:
    """``AutoConfig`` of a folder or hub name (cheap: no weights); ``_commit_hash`` is the hub commit loaded."""
    return _from_pretrained("AutoConfig", source, revision=revision, trust_remote_code=trust_remote_code,
                            purpose=purpose)  # fmt: skip


def load_model(
    auto_class_name: str,
    source: str | ModelSource,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device: str | None = None,
    precision: Literal["fp32", "bf16", "fp16"] | str = "fp32",
    purpose: str,
    **kwargs: Any,
) -> Any:
    """Weights of a folder or hub name through ``transformers.<auto_class_name>``, in eval mode.

    Parameters
    ----------
    auto_class_name : str
        ``"AutoModelForCausalLM"``, ``"AutoModelForSequenceClassification"``...
    source : str or ModelSource
        Folder or hub name (a :class:`ModelSource` from :func:`resolve` carries its own revision).
    device : str or None
        Torch device to move the model to; None leaves it where transformers loads it (the CPU).
    precision : {"fp32", "bf16", "fp16"}
        Weights dtype.
    purpose : str
        What the model is for, as errors show it ("the reward scorer's weights").
    **kwargs
        Passed to ``from_pretrained``.
    """
    dtype = torch_dtype(precision, owner=purpose)
    model = _from_pretrained(auto_class_name, source, revision=revision, trust_remote_code=trust_remote_code,
                             purpose=purpose, dtype=dtype, **kwargs)  # fmt: skip
    if device is not None:
        model = model.to(device)
    return model.eval()


# -- chat templates ---------------------------------------------------------------------------------
def chat_tokenizer(tok: Any, *, name: str | None = None) -> Any:
    """``tok`` with a chat template: its own, or :data:`FALLBACK_CHAT_TEMPLATE`, installed here once.

    The choice is recorded on the tokenizer (:func:`template_source`); a second call changes nothing.
    ``name`` is the model, for the log line.
    """
    if getattr(tok, _TEMPLATE_ATTR, None) is None:
        own = bool(getattr(tok, "chat_template", None))
        if not own:
            label = name or getattr(tok, "name_or_path", None) or "the tokenizer"
            logger.info("%s has no chat template: using kmq's Tulu fallback template", label)
            tok.chat_template = FALLBACK_CHAT_TEMPLATE
        setattr(tok, _TEMPLATE_ATTR, "model" if own else "fallback")
    return tok


def template_source(tok: Any) -> Literal["model", "fallback"] | None:
    """``"model"`` (its own chat template) or ``"fallback"`` for a tokenizer passed to :func:`chat_tokenizer`."""
    return getattr(tok, _TEMPLATE_ATTR, None)


# -- checks before a run ----------------------------------------------------------------------------
def check_model(model: str, *, revision: str | None = None, purpose: str, hint: str | None = None) -> ModelSource:
    """Check, without loading it, that ``model`` can load: what a run checks before its first step.

    A folder must hold a ``config.json``. A hub name must be a valid repository id and, when
    ``HF_HUB_OFFLINE`` is set, have its ``config.json`` in the local Hugging Face cache (otherwise it may be
    downloaded when it loads).

    Raises
    ------
    MissingArtifactError
        The folder does not exist or holds no ``config.json``; the hub model is not cached while offline.
    InvalidParameterError
        ``model`` is neither a folder nor a valid hub name.
    """
    src = resolve(model, revision=revision, purpose=purpose, hint=hint)
    if src.local:
        if not os.path.isfile(os.path.join(src.location, "config.json")):
            raise MissingArtifactError(
                f"Cannot load {purpose}: the folder {src.location} has no config.json, so it is not a saved model. "
                + (hint or "Pass the folder of a model saved with save_pretrained, or a hub name (org/model).")
            )
        return src
    here = os.path.abspath(os.path.expanduser(model))
    hub = require("huggingface_hub", purpose=purpose)
    try:
        hub.utils.validate_repo_id(model)
    except hub.errors.HFValidationError as err:
        raise InvalidParameterError(
            f"Cannot load {purpose}: {model!r} is no local folder ({here} does not exist) and no hub name "
            f"({_detail(err)}). " + (hint or "Pass the folder of a saved model or a hub name (org/model).")
        ) from err
    offline = offline_variable()
    if offline and cached_file(model, "config.json", revision=revision) is None:
        raise MissingArtifactError(
            f"Cannot load {purpose}: {model!r} is no local folder ({here} does not exist) and its config.json is not "
            f"in the Hugging Face cache ({hub_cache_dir()}), and {offline} is set, so nothing is downloaded. "
            f"Download it first (`hf download {model}`) or unset {offline}. " + (hint or "Or pass a local folder.")
        )
    return src


def cached_file(name: str, filename: str, *, revision: str | None = None) -> str | None:
    """The path of ``filename`` of the hub model ``name`` in the local cache, or None (nothing is downloaded)."""
    hub = require("huggingface_hub", purpose="reading the Hugging Face cache")
    try:
        found = hub.try_to_load_from_cache(name, filename, revision=revision)
    except (ValueError, OSError):  # an invalid repository id
        return None
    return found if isinstance(found, str) else None


# -- what the libraries print -----------------------------------------------------------------------
#: modules whose Python warnings are hidden while kmq shows no progress (``-q``)
LIBRARY_MODULES = r"(transformers|trl|peft|accelerate|datasets|huggingface_hub|sentence_transformers|torch)(\.|$)"


@contextmanager
def library_output(show_progress: bool | None) -> Iterator[None]:
    """The Hugging Face libraries' progress bars, info logs and warnings follow kmq's ``show_progress``.

    Nothing changes when kmq shows progress: their logs, bars and warnings go to stderr, as kmq's do. When
    it does not (``show_progress=False``, or None with the ``kmq`` logger above INFO, as with ``-q``), inside
    the block Python warnings raised in :data:`LIBRARY_MODULES` are ignored, huggingface_hub's progress bars
    are off (transformers reads that switch when it is imported), and the libraries already imported
    (transformers, datasets) log errors only and show no bars: the code that imports them enters the block
    again once they are. On exit each library gets back the state it had; one first imported inside the
    block gets the defaults (warnings logged, bars as huggingface_hub had them).
    """
    from kmq.cache import progress_enabled

    if progress_enabled(show_progress):
        yield
        return
    require("huggingface_hub", purpose="quieting the Hugging Face libraries")
    saved = {name: _library_state(name) for name in _LIBRARIES if name in sys.modules}
    for name in saved:
        _set_library(name, logging.ERROR, False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=LIBRARY_MODULES)
        try:
            yield
        finally:
            default = (logging.WARNING, saved["huggingface_hub"][1])
            for name in reversed(_LIBRARIES):  # transformers' switch sets huggingface_hub's too: hub last
                if name in sys.modules:
                    _set_library(name, *saved.get(name, default))


#: library -> (its logging module, the module of its bar switches, bars-off test, enable, disable)
_LIBRARIES = {
    "huggingface_hub": ("huggingface_hub.utils.logging", "huggingface_hub.utils", "are_progress_bars_disabled",
                        "enable_progress_bars", "disable_progress_bars"),
    "transformers": ("transformers.utils.logging", "transformers.utils.logging", "!is_progress_bar_enabled",
                     "enable_progress_bar", "disable_progress_bar"),
    "datasets": ("datasets.utils.logging", "datasets.utils", "are_progress_bars_disabled",
                 "enable_progress_bars", "disable_progress_bars"),
}  # fmt: skip


def _library_state(name: str) -> tuple[int, bool]:
    """(verbosity, bars shown) of one of :data:`_LIBRARIES`."""
    log, bars, off, _, _ = _LIBRARIES[name]
    test = getattr(importlib.import_module(bars), off.lstrip("!"))
    shown = bool(test()) if off.startswith("!") else not test()
    return int(importlib.import_module(log).get_verbosity()), shown


def _set_library(name: str, verbosity: int, bars: bool) -> None:
    log, module, _, enable, disable = _LIBRARIES[name]
    importlib.import_module(log).set_verbosity(verbosity)
    getattr(importlib.import_module(module), enable if bars else disable)()
