"""The command trainer never runs what the user did not write (issue 9, item 7).

A real :class:`CommandTrainer` runs a tiny Python script that records its argv, with hostile run
directories, model names and values holding placeholders, quotes, ``$()``, backticks, ``;`` and newlines.
Two things must hold in argv mode and in shell mode: no injected command ran (a sentinel file stays
absent) and the script received exactly the intended argument strings.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from kmq.errors import InvalidParameterError
from kmq.loop.config import TrainConfig
from kmq.loop.train import CommandTrainer, check_command

RECORD_ARGV = """
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True)
(out / "argv.json").write_text(json.dumps(sys.argv[1:]))
"""


def hostile_values(sentinel):
    """Strings that break out of naive quoting; each one ``touch``es ``sentinel`` if it is ever run."""
    s = str(sentinel)
    return [
        f"q{{output_dir}}$(touch {s})",
        f"q{{data}}'; touch {s}; '",
        f'q"$(touch {s})"{{init_model}}',
        f"q`touch {s}`{{base_model}}",
        f"q\ntouch {s}\n{{output_dir}}",
        f"q{{{{data}}}}\\'$(touch {s});{{seed}}",
        f"q{{round}} {{unknown}} {{ }} {{ }}}} ; touch {s} #",
    ]


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "record_argv.py"
    path.write_text(RECORD_ARGV)
    return path


def template(script):
    return (f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {{output_dir}} {{data}} {{base_model}} "
            f"{{init_model}} {{round}} {{seed}} --out={{output_dir}} 'lit {{{{x}}}} {{{{data}}}}'")  # fmt: skip


@pytest.mark.parametrize("shell", [False, True], ids=["argv", "shell"])
@pytest.mark.parametrize("case", range(7))
def test_hostile_values_reach_the_command_verbatim_and_run_nothing(tmp_path, script, shell, case, caplog):
    sentinel = tmp_path / "PWNED"
    bad = hostile_values(sentinel)[case]
    run = tmp_path / "runs" / bad
    data = run / "rounds" / "train.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text('{"id": "a", "messages": []}\n')
    out = run / "rounds" / "model"
    base, init = "m" + bad, "i" + bad[::-1]
    trainer = CommandTrainer(TrainConfig(trainer="command", command=template(script), shell=shell))
    caplog.set_level("INFO", logger="kmq")
    try:
        stats = trainer.train(data=data, output_dir=out, base_model=base, init_model=init, round=1, seed=0)
    finally:
        assert not sentinel.exists(), "an injected command ran"
    got = json.loads((out / "argv.json").read_text())
    assert got == [str(out), str(data), base, init, "1", "0", f"--out={out}", "lit {x} {data}"]
    assert stats["trainer"] == "command"
    assert [r.getMessage().count("\n") for r in caplog.records if "running" in r.getMessage()] == [0]  # one line


def test_one_pass_over_the_template_only():
    values = {"data": "{output_dir}", "output_dir": "{data}{base_model}", "base_model": "b", "init_model": "i",
              "round": "1", "seed": "0"}  # fmt: skip
    argv = CommandTrainer(TrainConfig(trainer="command", command="t {data} {output_dir} {{base_model}}"))
    assert argv.argv(values) == ["t", "{output_dir}", "{data}{base_model}", "{base_model}"]
    shell = CommandTrainer(TrainConfig(trainer="command", command="t {data} {output_dir}x {{}}", shell=True))
    assert shell.argv(values) == "t '{output_dir}' '{data}{base_model}'x {}"


def test_a_value_never_becomes_two_arguments():
    values = {"data": "a b", "output_dir": "c\td", "base_model": "--flag x", "init_model": "", "round": "1",
              "seed": "0"}  # fmt: skip
    trainer = CommandTrainer(TrainConfig(trainer="command", command="t {data} {output_dir} {base_model} {init_model}"))
    assert trainer.argv(values) == ["t", "a b", "c\td", "--flag x", ""]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            "train {data} {out}",
            r"unknown placeholder \{out\} .*Valid placeholders: \{data\}, \{output_dir\}, "
            r"\{base_model\}, \{init_model\}, \{round\}, \{seed\}.*\{\{ and \}\}",
        ),
        ("echo ${HOME} {data}", r"unknown placeholder \{HOME\}"),
        ("awk '{print $1}' {data}", r"unknown placeholder \{print \$1\}"),
        ("train {data} }", r"a single '\}' at column 14"),
        ("train {data", r"a single '\{' at column 7"),
        ("train {}", r"unknown placeholder \{\}"),
        ("train '{data}", "cannot be split into arguments"),
        ("   ", "is empty"),
    ],
)
def test_bad_templates_are_refused_before_anything_runs(command, message):
    with pytest.raises(InvalidParameterError, match=message):
        check_command(command)


@pytest.mark.parametrize(
    ("command", "where"),
    [
        ("train '{data}'", "single quotes"),
        ('train --out="{output_dir}"', "double quotes"),
        ("train `cat {data}`", "backticks"),
        ("train $'x' {base_model}", r"\$'"),
        ("cat <<EOF\n{data}\nEOF", "<<"),
        ("echo $(( {data} ))", r"\(\( \)\)"),
        ("echo $(( 1 + ')' )) {data}", r"\(\( \)\)"),
        ('echo "$(date)" {data}', "double quotes"),
    ],
)
def test_shell_mode_refuses_placeholders_the_shell_would_not_read_as_one_word(command, where):
    with pytest.raises(InvalidParameterError, match=rf"--train-shell.*\{{\w+\}} .*{where}.*write it bare"):
        check_command(command, shell=True)
    check_command(command.replace("'", "").replace('"', "").replace("`", "").replace("<<", "<"), shell=False)


@pytest.mark.parametrize(
    "command",
    [
        "train {data} && echo {seed} > {output_dir}/log",
        "echo $(( {seed} + {round} )) {{x}}; train {data}",  # integers may stand anywhere
        "train {data} # it's {output_dir}\necho {init_model}",  # a comment does not open a quote
        "train $(dirname {data}) '{{literal}}' \"{{x}}\"",
        "${{CONDA_PREFIX}}/bin/train {data}",
    ],
)
def test_shell_mode_accepts_bare_placeholders(command):
    check_command(command, shell=True)


def test_cli_iterate_with_a_hostile_run_dir_runs_no_injected_command(pool_file, script, tmp_path):
    sentinel = tmp_path / "PWNED"
    run = tmp_path / f"q{{output_dir}}$(touch {sentinel})"
    model = f"m{{data}}'$(touch {sentinel})'"
    cmd = [sys.executable, "-m", "kmq.cli.main", "iterate", str(pool_file), "--budget", "4", "--rounds", "1",
           "--train-final", "--clusters", "2", "--embedder", "hashing", "--judge", "relevance", "--model", model,
           "--out", str(tmp_path / "s.jsonl"), "--run-dir", str(run), "--trainer", "command", "--train-shell",
           "--train-command", template(script), "-q"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert not sentinel.exists(), "an injected command ran"
    assert done.returncode == 0, done.stderr[-3000:]
    argv = json.loads((run / "rounds/r01/train/model/argv.json").read_text())
    out, data = argv[:2]
    assert out.startswith(f"{run}/rounds/r01/") and out.endswith("/model")
    assert data == out[: -len("model")] + "train.jsonl"
    assert argv[2:] == [model, model, "1", "0", f"--out={out}", "lit {x} {data}"]
