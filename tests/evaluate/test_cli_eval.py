"""``kmq eval`` on the command line: the table on stdout, --out (the same results as the library call, apart from
timings), lm-eval kept quiet, and bad input as exit 2 with one line on stderr."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from eval_runs import FLAGS, TASKS, shared_run  # noqa: E402

from kmq.cli.main import main  # noqa: E402
from kmq.evaluate.results import is_results_file, results_table  # noqa: E402


def _without_timings(results: dict) -> dict:
    return {k: v for k, v in results.items() if k != "timings"}


def test_table_and_out_match_the_library_run(tiny_llama, datakit, tmp_path, tmp_path_factory, capsys):
    library, _ = shared_run(tiny_llama, datakit, tmp_path_factory.mktemp("eval-run"))
    capsys.readouterr()
    out = tmp_path / "results.json"
    argv = ["eval", str(tiny_llama), "--tasks", TASKS, "--data-dir", str(datakit), *FLAGS, "--out", str(out), "-q"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out == results_table(library)
    lines = captured.out.splitlines()
    assert lines[0] == "| task | metric | value | n | flag |" and len(lines) == 4
    assert lines[2].startswith("| arc_easy | acc_norm | ") and lines[2].endswith(" | 4 | limit 4 |")
    assert lines[3].startswith("| gsm8k | exact_match,strict-match | ")
    written = json.loads(out.read_text(encoding="utf-8"))
    assert _without_timings(written) == _without_timings(library)  # a second run: the same results
    assert is_results_file(out)
    for noise in ("Running loglikelihood", "Running generate_until", "[Task:", "Loading weights", "%|"):
        assert noise not in captured.err, captured.err


def _one_line_exit_2(argv, capsys, match):
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("kmq eval: error: ") and match in err, err


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--tasks", "alpaca_eval,arc_easy"], "--judge judge:MODEL@URL"),
        (["--tasks", "humaneval"], "--allow-code-execution"),
        (["--tasks", "arc_easy", "--adapter", "."], "adapter_config.json"),
        (["--tasks", " , "], "--tasks is empty"),
        (["--tasks", "arc_easy", "--judge", "judge:m@ftp://x"], "judge:MODEL@URL"),
    ],
)
def test_bad_input_is_one_line_exit_2(tiny_llama, datakit, capsys, extra, match):
    _one_line_exit_2(["eval", str(tiny_llama), "--data-dir", str(datakit), *extra], capsys, match)


def test_missing_model_folder(datakit, tmp_path, capsys):
    _one_line_exit_2(["eval", str(tmp_path / "no-model"), "--tasks", "arc_easy", "--data-dir", str(datakit)], capsys,
                     "does not exist")  # fmt: skip


def test_out_is_never_a_file_kmq_did_not_write(tiny_llama, datakit, tmp_path, capsys):
    mine = tmp_path / "mine.json"
    mine.write_text("{}\n")
    _one_line_exit_2(["eval", str(tiny_llama), "--tasks", "arc_easy", "--data-dir", str(datakit), "--out", str(mine)],
                     capsys, "--overwrite")  # fmt: skip
    assert mine.read_text() == "{}\n"


def test_bad_flag_values_exit_2(tiny_llama, capsys):
    for flag, value in (("--limit", "many"), ("--batch-size", "big"), ("--precision", "int4")):
        with pytest.raises(SystemExit) as exit_info:
            main(["eval", str(tiny_llama), "--tasks", "arc_easy", flag, value])
        assert exit_info.value.code == 2


def test_unknown_task_name(tiny_llama, datakit, capsys):
    """Known from a scan of lm-eval's task YAMLs (kmq.evaluate.task_names), not from lm-eval's index."""
    _one_line_exit_2(["eval", str(tiny_llama), "--tasks", "arc_easy,no_such_task", "--data-dir", str(datakit)],
                     capsys, "'no_such_task'")  # fmt: skip
    _one_line_exit_2(["eval", str(tiny_llama), "--tasks", "hellaswagg", "--data-dir", str(datakit)], capsys,
                     "Close: hellaswag")  # fmt: skip
