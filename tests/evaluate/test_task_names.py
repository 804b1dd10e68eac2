"""kmq's scan of lm-eval's task YAMLs names what lm-eval's own ``TaskIndex`` names: on generated task trees
(quoted keys, flow and block lists, comments, includes, duplicates, cycles, files lm-eval skips), on a sample of
lm-eval's real task folders, and (``KMQ_TEST_FULL_TASK_INDEX=1``, 13 s idle) on its whole tree; the names are
cached per lm-eval version; an unknown task name fails fast with the closest names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("lm_eval")

from kmq.errors import InvalidParameterError  # noqa: E402
from kmq.evaluate import task_names  # noqa: E402
from kmq.evaluate.task_names import scan_task_names  # noqa: E402


def _lm_eval_names(roots: list[Path]) -> frozenset[str]:
    from lm_eval.tasks._index import TaskIndex

    return frozenset(n for n in TaskIndex.build(roots) if isinstance(n, str))  # "123" and "yes" are no names


def _tasks_folder() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).resolve().parent / "tasks"


# -- generated task trees -------------------------------------------------------------------------------------
NAMES = st.sampled_from(["arc", "arc_x", "mmlu", "mmlu_art", "gsm", "tag_a", "tag_b", "grp", "123", "yes", "a b"])


def _quoted(name: str, style: int) -> str:
    return [name, f'"{name}"', f"'{name}'"][style]


@st.composite
def _value(draw, key: str) -> str:
    """A YAML value for ``key`` in one of the ways lm-eval's task files write it."""
    if key in ("tag", "include") or draw(st.booleans()) and key == "task":
        names = draw(st.lists(NAMES if key != "include" else st.sampled_from(["b.yaml", "c.yaml", "_t"]),
                              min_size=1, max_size=3))  # fmt: skip
        form = draw(st.integers(0, 3))
        if form == 0:
            return " " + _quoted(names[0], draw(st.integers(0, 2)))
        if form == 1:
            return " [" + ", ".join(_quoted(n, draw(st.integers(0, 2))) for n in names) + "]"
        if form == 2:  # a block list, indented or not, with a comment line
            pad = draw(st.sampled_from(["", "  "]))
            return "\n" + "\n".join(f"{pad}- {_quoted(n, draw(st.integers(0, 2)))}" for n in names) + "\n  # note"
        return "\n" + "\n".join(f"  - task: {n}\n    num_fewshot: 1" for n in names)  # a group's task list
    name = draw(NAMES)
    return draw(st.sampled_from([f" {name}", f' "{name}"', f" {name}  # comment", " !function utils.Task", "",
                                 f" >-\n  {name}", " null"]))  # fmt: skip


@st.composite
def _yaml(draw) -> str:
    keys = draw(st.lists(st.sampled_from(["task", "group", "tag", "include", "class"]), max_size=4, unique=True))
    lines = [f"{_quoted(k, draw(st.integers(0, 1)))}:{draw(_value(k))}" for k in keys]
    lines.insert(draw(st.integers(0, len(lines))), "dataset_path: x\ndoc_to_text: \"Q: {{q}}\\nA:\"")
    text = "\n".join(lines) + "\n"
    return draw(st.sampled_from([text, text, text, "---\n" + text, text + "---\nx: 1\n", "- a\n", ""]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=st.dictionaries(st.sampled_from(["a.yaml", "b.yaml", "c.yaml", "sub/d.yaml", "_t", "sub/_t"]), _yaml(),
                             min_size=1, max_size=5))  # fmt: skip
def test_scan_names_what_lm_eval_indexes_on_generated_trees(tmp_path_factory, files):
    root = tmp_path_factory.mktemp("tasks")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    assert scan_task_names([root]) == _lm_eval_names([root])


SAMPLE = ["aclue", "afrobench/afrisenti", "arc", "bbh/cot_fewshot", "hellaswag", "hendrycks_ethics", "mmlu/default",
          "mmlu/flan_cot_fewshot", "tinyBenchmarks", "truthfulqa", "glue", "cruxeval", "inverse_scaling"]  # fmt: skip


def test_scan_names_what_lm_eval_indexes_on_its_task_folders(datakit):
    from kmq.evaluate.task_defs import DEFS_DIR

    folder = _tasks_folder()
    roots = [folder / s for s in SAMPLE if (folder / s).is_dir()] + [DEFS_DIR]
    assert len(roots) >= 10
    for root in roots:
        found = scan_task_names([root])
        assert found == _lm_eval_names([root]) and found, root
    assert scan_task_names(roots) == _lm_eval_names(roots)  # later roots shadow earlier ones by name


@pytest.mark.skipif(not os.environ.get("KMQ_TEST_FULL_TASK_INDEX"), reason="~15-30 s: set KMQ_TEST_FULL_TASK_INDEX=1")
def test_scan_names_every_task_of_lm_evals_index():
    from lm_eval.tasks import TaskManager

    assert task_names.lm_eval_task_names() == frozenset(TaskManager(include_defaults=True).all_tasks)


def test_names_are_cached_per_version_and_published_whole(tmp_path, monkeypatch):
    root = tmp_path / "tasks"
    root.mkdir()
    (root / "t.yaml").write_text("task: kmq_cached_t\ntag: [kmq_cached_tag]\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("KMQ_CACHE_DIR", str(cache))
    task_names._cached_names.cache_clear()
    assert task_names._cached_names(str(root), "9.9", 1) == {"kmq_cached_t", "kmq_cached_tag"}
    [path] = (cache / "lm_eval_tasks").iterdir()  # no temporary file left beside it
    assert path.name.startswith("9.9-") and json.loads(path.read_text())["names"] == ["kmq_cached_t", "kmq_cached_tag"]
    (root / "t.yaml").write_text("task: renamed\n")
    task_names._cached_names.cache_clear()
    assert task_names._cached_names(str(root), "9.9", 1) == {"kmq_cached_t", "kmq_cached_tag"}  # read, not scanned
    assert task_names._cached_names(str(root), "9.10", 1) == {"renamed"}  # another version: scanned again
    path.write_text("{not json")
    task_names._cached_names.cache_clear()
    assert task_names._cached_names(str(root), "9.9", 1) == {"renamed"}  # a damaged entry is a miss
    task_names._cached_names.cache_clear()


def test_unknown_name_fails_before_lm_evals_index_with_close_names(datakit):
    from kmq.evaluate.tasks import _manager, check_task_names

    _manager.cache_clear()
    with pytest.raises(InvalidParameterError, match=r"'arc_easyy'.*Close: arc_easy") as err:
        check_task_names(["arc_easyy", "gsm8k"], datakit)
    assert "\n" not in str(err.value)
    with pytest.raises(InvalidParameterError, match="'no_such_task'"):
        check_task_names(["no_such_task"], None)
    check_task_names(["arc_easy", "mmlu_anatomy", "hellaswag", "ai2_arc", "mmlu_stem"], datakit)  # local and lm-eval's
    assert _manager.cache_info().currsize == 0  # no TaskManager was built
