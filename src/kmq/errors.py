"""Exceptions and warnings raised by kmq.

Every exception subclasses :class:`KmqError` and a builtin, so ``except ValueError`` keeps working for
callers that do not know kmq. Messages name the parameter, file, line or record, show the value and say
what to do. The command line turns any :class:`KmqError` into one line on stderr and exit code 2.
"""

from __future__ import annotations


class KmqError(Exception):
    """Base class of every error kmq raises on purpose."""


class InvalidParameterError(KmqError, ValueError, TypeError):
    """A parameter has a wrong type or value: "The 'x' parameter of Y must be ... Got ... instead."."""


class DataFormatError(KmqError, ValueError):
    """The input data is malformed or in a format kmq cannot read (names file, line or record, and field)."""


class EmptyPoolError(DataFormatError):
    """The pool has no records."""


class MissingDependencyError(KmqError, ImportError):
    """An optional dependency is not installed; the message carries the pip command."""


class MissingArtifactError(KmqError, FileNotFoundError):
    """A file, model or artifact that kmq needs does not exist."""


class NotFittedError(KmqError, ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class KmqWarning(UserWarning):
    """Base class of kmq's warnings."""


class EmptyClusterWarning(KmqWarning):
    """A cluster ended up with no member."""


def invalid_parameter(name: str, owner: str, expected: str, got: object) -> InvalidParameterError:
    """Build the one message form for a bad parameter value."""
    return InvalidParameterError(f"The {name!r} parameter of {owner} must be {expected}. Got {got!r} instead.")


class SelectionShortfallError(KmqError, ValueError):
    """A selection method ran out of eligible rows before reaching the budget (the message says how to relax it)."""


class JudgeError(KmqError, RuntimeError):
    """An LLM-judge endpoint failed (after retries) or gave ratings that could not be parsed."""


class OutputConflictError(KmqError, FileExistsError):
    """An output would overwrite an input or a path kmq does not own (the message says which and what to pass)."""


class OutputWriteError(KmqError, OSError):
    """The environment refused a write (disk full, read-only folder, no permission): names the path and the cause.

    The command line reports it on one line with exit code 1; nothing was half-written.
    """


class SettingsChangedError(KmqError, ValueError):
    """A finished step of ``kmq iterate`` was computed with other settings than the current run asks for.

    The message names the step, the setting, its old and new value, and the ``--restart-from`` fix.
    """


class RunDirBusyError(KmqError, RuntimeError):
    """Another live ``kmq iterate`` process holds the run directory (the message gives its pid)."""


class TrainingError(KmqError, RuntimeError):
    """A training run of ``kmq iterate`` failed (the message names the round and, for ``command``, the command)."""


class GenerationError(KmqError, RuntimeError):
    """Generation failed (a server error after retries, or a model that cannot be loaded)."""


class EmbeddingEndpointError(KmqError, RuntimeError):
    """An embeddings endpoint (``openai:MODEL@URL``) failed or answered something that is not one finite vector per
    input."""
