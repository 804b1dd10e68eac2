"""Shared fixtures of the evaluation tests: a tiny local Llama, and kmq's local lm-eval tasks on the datakit.

No ``__init__.py`` in this folder on purpose: as a package it would be imported as ``evaluate``, the name of
Hugging Face's ``evaluate`` library, which lm-eval imports.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """Folder of a random tiny Llama (ChatML template, BOS/EOS/PAD, 2048 positions) saved with its tokenizer."""
    pytest.importorskip("transformers")
    from tiny_models import build_causal_lm

    return build_causal_lm(tmp_path_factory.mktemp("eval-tiny-llama"), arch="llama", max_positions=2048)


@pytest.fixture(scope="session")
def local_tasks(datakit):
    """lm-eval's TaskManager with only kmq's local tasks (lm-eval's own index skipped), on ../shared/datakit."""
    pytest.importorskip("lm_eval")
    from kmq.evaluate.tasks import LOCAL_TASKS, task_manager

    return task_manager(datakit, tasks=list(LOCAL_TASKS))
