"""The code-execution sandbox: real subprocesses, real files, a real listening socket, real datakit programs."""

from __future__ import annotations

import itertools
import json
import math
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmq.errors import InvalidParameterError
from kmq.evaluate.sandbox import OUTPUT_CAP, _isolation_prefix, pass_at_k, run_program, run_programs


def _leftovers(token: str) -> list[int]:
    """Pids of live processes whose environment carries this sandbox's token (a /proc scan, no psutil)."""
    needle = f"KMQ_SANDBOX={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_correct_solution_passes_and_wrong_one_fails():
    good, bad = run_programs(
        ["def f(x):\n    return x + 1\nassert f(1) == 2\n", "def f(x):\n    return x\nassert f(1) == 2\n"], workers=2
    )
    assert (good.passed, good.status, good.detail) == (True, "passed", "")
    assert (bad.passed, bad.status) == (False, "failed")
    assert "AssertionError" in bad.detail
    assert good.seconds > 0


def test_syntax_errors_and_exit_codes_are_failures():
    assert run_program("def f(:\n").status == "failed"
    assert run_program("import sys\nsys.exit(3)").detail == "exit code 3"
    assert run_program("import sys\nsys.exit(0)").passed


def test_infinite_loop_times_out_and_leaves_no_process():
    out = run_program("import os, sys\nprint(os.environ['KMQ_SANDBOX'], flush=True)\nwhile True:\n    pass\n",
                      timeout_s=1.0)
    assert out.status == "timeout" and not out.passed
    assert 1.0 <= out.seconds < 5.0
    token = out.stdout.strip()
    assert token.startswith("kmq-sandbox-")
    assert _leftovers(token) == []


def test_folder_is_fresh_private_and_removed_even_when_locked():
    out = run_program("import os\nprint(os.getcwd())\nprint(sorted(os.listdir('.')))\n"
                      "os.mkdir('d')\nopen('d/f', 'w').write('x')\nos.chmod('d', 0)\n")
    assert out.passed, out.stderr
    folder, listing = out.stdout.splitlines()
    assert listing == "['program.py']"
    assert Path(folder).name.startswith("kmq-sandbox-")
    assert not Path(folder).exists()


def test_environment_is_scrubbed_and_hash_seed_fixed(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    program = ("import os, sys\nassert 'OPENAI_API_KEY' not in os.environ\nassert 'PYTHONPATH' not in os.environ\n"
               "assert os.environ['HOME'] == os.getcwd()\nassert all('site-packages' not in p for p in sys.path)\n"
               "print(hash('kmq'), sorted({'a', 'b', 'c', 'd'}))\n")
    first, second = run_programs([program, program], workers=2)
    assert first.passed, first.stderr
    assert first.stdout == second.stdout


@pytest.fixture
def sibling_secret():
    """A file in a folder next to the sandbox folders (same parent), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="kmq-sibling-"))
    (folder / "secret.txt").write_text("top secret")
    yield folder / "secret.txt"
    (folder / "secret.txt").unlink()
    folder.rmdir()


@pytest.mark.parametrize("how", ["open('/etc/passwd').read()", "open({abs!r}).read()", "open({rel!r}).read()",
                                 "import os\nos.listdir({dir!r})", "import os\nos.open({abs!r}, os.O_RDONLY)",
                                 "import pathlib\npathlib.Path({abs!r}).read_text()"])
def test_reading_outside_the_folder_is_blocked_even_when_caught(how, sibling_secret):
    code = how.format(abs=str(sibling_secret), rel=f"../{sibling_secret.parent.name}/secret.txt",
                      dir=str(sibling_secret.parent))
    out = run_program("try:\n" + "".join(f"    {line}\n" for line in code.splitlines())
                      + "except BaseException:\n    pass\nprint('read it')\n")
    assert out.status == "blocked", (out, out.stderr)
    assert "read it" not in out.stdout and "top secret" not in out.stdout


@pytest.mark.parametrize("how", ["open({p!r}, 'w').write('x')", "open({p!r}, 'a')",
                                 "import os\nos.open({p!r}, os.O_WRONLY | os.O_CREAT)",
                                 "import shutil\nshutil.copyfile('program.py', {p!r})",
                                 "import os\nos.rename('program.py', {p!r})", "import os\nos.mkdir({p!r})",
                                 "import os\nos.symlink('/etc', 'etc')"])
def test_writing_outside_the_folder_is_blocked(how, tmp_path):
    target = tmp_path / "out.txt"
    out = run_program(how.format(p=str(target)) + "\n")
    assert out.status == "blocked", (out, out.stderr)
    assert not target.exists()


def test_removing_outside_the_folder_is_blocked(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    for code in (f"import os\nos.remove({str(victim)!r})", f"import shutil\nshutil.rmtree({str(tmp_path)!r})"):
        assert run_program(code).status == "blocked"
    assert victim.read_text() == "keep"


def test_patching_python_does_not_loosen_the_guard():
    out = run_program("import builtins, os, posixpath\nbuiltins.isinstance = lambda *a: False\n"
                      "builtins.str = bytes\nos.path.realpath = posixpath.normpath = lambda p: '/tmp/x'\n"
                      "open('/etc/passwd').read()\n")
    assert out.status == "blocked"


class _Listener:
    """A TCP server on 127.0.0.1 that records every connection it accepts."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> int:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.accepted


@pytest.fixture
def listener():
    server = _Listener()
    yield server
    server.close()


def test_network_is_blocked_and_the_server_sees_nothing(listener):
    connect = f"import socket\ns = socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)\n"
    programs = [connect, f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{listener.port}/')\n",
                "import socket\nsocket.getaddrinfo('localhost', 80)\n"]
    for out in run_programs(programs, workers=2):
        assert out.status == "blocked", (out, out.stderr)
    assert listener.close() == 0


def test_the_network_namespace_alone_stops_a_connection(listener):
    """Layer 1 without the audit hook: a plain interpreter in the namespace cannot reach the host's loopback."""
    prefix = _isolation_prefix()
    if not prefix:
        pytest.skip("unshare --user --net is not available here")
    code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {listener.port}), timeout=2)\n"
            "except OSError as e:\n    print('refused', e.errno)\nelse:\n    print('connected')\n")
    done = subprocess.run([*prefix, sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.startswith("refused"), done
    assert listener.close() == 0


@pytest.mark.parametrize("code", ["import subprocess\nsubprocess.run(['echo', 'hi'])",
                                  "import os\nos.system('echo hi')", "import os\nos.popen('echo hi')",
                                  "import os\nos.execv('/bin/echo', ['echo'])",
                                  "import os\nos.posix_spawn('/bin/echo', ['echo'], {})", "import pty\npty.fork()",
                                  "import ctypes", "import _posixsubprocess\n_posixsubprocess.fork_exec()",
                                  "import os\nos.kill(os.getppid(), 0)",
                                  "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))"])
def test_processes_signals_ctypes_and_limits_are_blocked(code):
    out = run_program("try:\n" + "".join(f"    {line}\n" for line in code.splitlines()) + "except BaseException:\n"
                      "    pass\nprint('escaped')\n")
    assert out.status == "blocked", (out, out.stderr)
    assert "hi" not in out.stdout and "escaped" not in out.stdout


def test_fork_bomb_is_stopped():
    out = run_program("import os\nwhile True:\n    os.fork()\n", timeout_s=3.0)
    assert out.status == "blocked" and out.seconds < 3.0
    out = run_program("import multiprocessing as mp\nwhile True:\n    mp.Process(target=print).start()\n",
                      timeout_s=3.0)
    assert out.status == "blocked"


def test_memory_bomb_hits_the_memory_limit():
    out = run_program("x = bytearray(4 << 30)\n", memory_mb=512)
    assert (out.status, out.passed) == ("memory", False)
    assert "512 MiB" in out.detail


def test_huge_output_is_capped():
    out = run_program("import sys\nfor i in range(100):\n    sys.stdout.write('x' * ((1 << 20) - 1) + '\\n')\n"
                      "sys.stdout.write('the end')\n", timeout_s=30.0)
    assert out.passed, out.stderr
    assert len(out.stdout) <= OUTPUT_CAP
    assert out.stdout.endswith("x\nthe end")


def test_run_programs_keeps_the_input_order():
    programs = [f"import time\ntime.sleep({0.3 * (i % 2)})\nassert {i} % 3 != 0\n" for i in range(5)]
    assert [o.passed for o in run_programs(programs, workers=2)] == [False, True, True, False, True]
    assert run_programs([]) == []


@pytest.mark.parametrize(("kwargs", "name"), [({"timeout_s": 0}, "timeout_s"), ({"memory_mb": 10}, "memory_mb"),
                                              ({"timeout_s": "1"}, "timeout_s")])
def test_bad_limits_raise(kwargs, name):
    with pytest.raises(InvalidParameterError, match=name):
        run_program("pass", **kwargs)
    with pytest.raises(InvalidParameterError, match="workers"):
        run_programs(["pass"], workers=0)


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    outcomes = [True] * c + [False] * (n - c)
    draws = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in draw) for draw in draws) / len(draws)


@given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_brute_force(nck):
    n, c, k = nck
    assert math.isclose(pass_at_k(n, c, k), _brute_pass_at_k(n, c, k), rel_tol=1e-12, abs_tol=1e-12)


def test_pass_at_k_edges_and_large_n():
    assert pass_at_k(200, 0, 10) == 0.0
    assert pass_at_k(200, 200, 10) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(1000, 1, 1000) == 1.0
    assert 0.0 < pass_at_k(10**6, 1, 1) < 1e-5
    for n, c, k in ((0, 0, 1), (5, 6, 1), (5, 1, 0), (5, 1, 6), (5, 1.0, 1)):
        with pytest.raises(InvalidParameterError):
            pass_at_k(n, c, k)


def _sample(path: Path, every: int) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[::every][:10]


def test_humaneval_canonical_solutions_pass(datakit):
    rows = _sample(datakit / "humaneval" / "humaneval.jsonl", 16)
    programs = [f"{r['prompt']}{r['canonical_solution']}\n{r['test']}\ncheck({r['entry_point']})\n" for r in rows]
    outcomes = run_programs(programs, workers=2, timeout_s=20.0)
    statuses = [(r["task_id"], o.status, o.detail) for r, o in zip(rows, outcomes, strict=True)]
    assert statuses == [(r["task_id"], "passed", "") for r in rows]
    wrong = programs[0].replace("return True", "return False")
    assert run_program(wrong).status == "failed"


def test_mbpp_reference_code_passes(datakit):
    rows = _sample(datakit / "mbpp_test" / "mbpp_test.jsonl", 50)
    programs = [r["code"] + "\n" + (r.get("test_setup_code") or "") + "\n" + "\n".join(r["test_list"]) + "\n"
                for r in rows]
    outcomes = run_programs(programs, workers=2, timeout_s=20.0)
    statuses = [(r["task_id"], o.status, o.detail) for r, o in zip(rows, outcomes, strict=True)]
    assert statuses == [(r["task_id"], "passed", "") for r in rows]
