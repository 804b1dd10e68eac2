"""Trainers, generators and judges of the loop, one at a time (the command trainer runs a whole loop)."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import kmq
from kmq.config import EmbedConfig, ScoreConfig
from kmq.errors import InvalidParameterError, MissingDependencyError
from kmq.loop.config import GenerateConfig, TrainConfig
from kmq.loop.generate import GenerationError, OpenAIGenerator, get_generator
from kmq.loop.judge import Judge, split_prompt
from kmq.loop.train import CommandTrainer, TrainingError

FAKE_TRAINER = """
import json, shutil, sys
base, out, data, init, rnd = sys.argv[1:6]
n = sum(1 for _ in open(data))
shutil.copytree(base, out)
json.dump({"round": int(rnd), "examples": n, "init": init}, open(out + "/kmq_round.json", "w"))
print(f"fake trainer round {rnd}: {n} examples")
"""


@pytest.fixture
def fake_trainer(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAINER)
    return f"{sys.executable} {script} {{base_model}} {{output_dir}} {{data}} {{init_model}} {{round}}"


def run_loop(pool_file, model, run_dir, command, **settings):
    return kmq.iterate(
        str(pool_file), budget=18, rounds=3, seed=1, model=str(model), run_dir=run_dir, embedder="hashing",
        clusters=5, judge="relevance", trainer="command", show_progress=False,
        settings={"train.command": command, "generate.max_new_tokens": 4, **settings},
    )  # fmt: skip


def test_command_trainer_drives_three_rounds(pool_file, tiny_llama, fake_trainer, tmp_path):
    run = tmp_path / "run"
    sel = run_loop(pool_file, tiny_llama, run, fake_trainer)
    assert len(sel) == 18 and sel.rounds.tolist() == [1] * 6 + [2] * 6 + [3] * 6
    for r, n in ((1, 6), (2, 12)):  # retrain: everything selected so far, from the base model
        info = json.loads((run / f"rounds/r0{r}/train/model/kmq_round.json").read_text())
        assert info == {"round": r, "examples": n, "init": str(tiny_llama)}
        assert len((run / f"rounds/r0{r}/train/train.jsonl").read_text().splitlines()) == n
    assert not (run / "rounds/r03/train").exists()
    assert len(sel.manifest["rounds"]) == 3 and sel.manifest["rounds"][1]["weights"] != [0.2] * 5


def test_continue_mode_starts_from_the_last_checkpoint_and_train_final(pool_file, tiny_llama, fake_trainer, tmp_path):
    run = tmp_path / "run"
    run_loop(pool_file, tiny_llama, run, fake_trainer, **{"train.mode": "continue", "train.train_final": True})
    infos = [json.loads((run / f"rounds/r0{r}/train/model/kmq_round.json").read_text()) for r in (1, 2, 3)]
    assert [i["examples"] for i in infos] == [6, 6, 6]  # the new batch only
    assert infos[0]["init"] == str(tiny_llama)
    assert infos[1]["init"] == str(run / "rounds/r01/train/model")
    assert infos[2]["init"] == str(run / "rounds/r02/train/model")


def test_failing_command_names_round_and_command_and_marks_nothing(pool_file, tiny_llama, tmp_path):
    cmd = f"{sys.executable} -c 'import sys; sys.exit(3)' {{data}}"
    with pytest.raises(TrainingError, match=r"round 1: the training command exited with status 3: .*sys.exit\(3\)"):
        run_loop(pool_file, tiny_llama, tmp_path / "run", cmd)
    assert not (tmp_path / "run/rounds/r01/DONE-train").exists()
    assert (tmp_path / "run/rounds/r01/DONE-select").exists()


def test_command_placeholders_without_and_with_shell():
    values = {"data": "/d/my data.jsonl", "output_dir": "/o", "base_model": "b", "init_model": "b", "round": "2",
              "seed": "0"}  # fmt: skip
    plain = CommandTrainer(TrainConfig(trainer="command", command="train --data {data} --out={output_dir} {round}"))
    assert plain.argv(values) == ["train", "--data", "/d/my data.jsonl", "--out=/o", "2"]
    shell = CommandTrainer(TrainConfig(trainer="command", command="train {data} && echo {seed}", shell=True))
    assert shell.argv(values) == "train '/d/my data.jsonl' && echo 0"


def test_hf_generator_is_greedy_and_deterministic(tiny_llama):
    gen = get_generator(GenerateConfig(generator="hf", max_new_tokens=6, batch_size=2), show_progress=False)
    prompts = [[{"role": "user", "content": "What is the capital of France?"}],
               [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3."}],
               [{"role": "user", "content": "Write a short poem about the sea, please."}]]  # fmt: skip
    first = gen.generate(str(tiny_llama), prompts)
    assert len(first) == 3 and all(isinstance(a, str) for a in first)
    assert gen.generate(str(tiny_llama), prompts[::-1]) == first[::-1]  # batching and order do not matter


def test_vllm_generator_needs_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError:
        gen = get_generator(GenerateConfig(generator="vllm"))
        with pytest.raises(MissingDependencyError, match="pip install vllm"):
            gen.generate("model", [[{"role": "user", "content": "hi"}]])
    else:  # pragma: no cover
        pytest.skip("vllm is installed")


def test_generator_spec_errors():
    with pytest.raises(InvalidParameterError, match="openai:MODEL@URL"):
        get_generator(GenerateConfig(generator="openai:no-url"))
    with pytest.raises(InvalidParameterError, match="hf, vllm or openai"):
        get_generator(GenerateConfig(generator="sglang"))


class _Server:
    """An OpenAI-compatible chat endpoint on localhost: fails the first ``fail`` requests with ``status``.

    Failures ask for a 10 ms wait (``retry-after-ms``, which the openai SDK honours) to keep the tests fast.
    """

    def __init__(self, fail: int, status: int) -> None:
        self.fail, self.status, self.calls, self.models = fail, status, 0, []
        lock, outer = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    outer.calls += 1
                    failing = outer.calls <= outer.fail
                outer.models.append(body["model"])
                if failing:
                    payload = {"error": {"message": f"busy; you sent {self.headers.get('Authorization')}"}}
                    code = outer.status
                else:
                    answer = "echo: " + body["messages"][-1]["content"]
                    payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": answer}}]}  # fmt: skip
                    code = 200
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if failing:
                    self.send_header("retry-after-ms", "10")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_openai_generator_retries_keeps_order_and_fills_round(monkeypatch):
    pytest.importorskip("openai")
    monkeypatch.setenv("KMQ_TEST_KEY", "sk-test-secret-42")
    server = _Server(fail=3, status=429)
    try:
        cfg = GenerateConfig(generator=f"openai:m-{{round}}@{server.url}", concurrency=3, api_key_env="KMQ_TEST_KEY")
        gen = OpenAIGenerator(cfg, "m-{round}", server.url)
        prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
        assert gen.generate("/ckpt", prompts, round=2) == [f"echo: q{i}" for i in range(6)]
        assert server.calls == 9 and set(server.models) == {"m-2"}
    finally:
        server.close()


def test_openai_generator_gives_up_without_leaking_the_key(monkeypatch):
    pytest.importorskip("openai")
    monkeypatch.setenv("KMQ_TEST_KEY", "sk-test-secret-42")
    server = _Server(fail=100, status=503)
    try:
        cfg = GenerateConfig(max_retries=2, api_key_env="KMQ_TEST_KEY")
        gen = OpenAIGenerator(cfg, "m", server.url)
        with pytest.raises(GenerationError, match=r"after 3 attempts \(HTTP 503\)") as err:
            gen.generate("/ckpt", [[{"role": "user", "content": "q"}]])
        assert "sk-test-secret-42" not in str(err.value) and server.calls == 3
    finally:
        server.close()


def test_openai_generator_fails_fast_on_a_dead_server():
    pytest.importorskip("openai")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://me:sk-in-url-5@127.0.0.1:{port}/v1"
    gen = get_generator(GenerateConfig(generator=f"openai:m@{url}", concurrency=4, max_retries=5))
    start = time.perf_counter()
    with pytest.raises(GenerationError, match="connection refused") as err:
        gen.generate("/ckpt", [[{"role": "user", "content": f"q{i}"}] for i in range(16)])
    assert time.perf_counter() - start < 5.0
    assert "\n" not in str(err.value) and f"http://***@127.0.0.1:{port}/v1" in str(err.value)
    assert "sk-in-url" not in str(err.value)


def test_relevance_judge_and_prompt_split():
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name three fruits."},
            {"role": "assistant", "content": "Apples, pears and plums."}, {"role": "user", "content": "More?"},
            {"role": "assistant", "content": "Figs."}]  # fmt: skip
    prompt, gold = split_prompt(conv)
    assert [t["role"] for t in prompt] == ["system", "user"] and gold == "Apples, pears and plums."
    assert split_prompt([{"role": "user", "content": "Hi"}]) == ([{"role": "user", "content": "Hi"}], "")
    judge = Judge("relevance", ScoreConfig(), EmbedConfig(embedder="hashing"))
    on_topic = [*prompt, {"role": "assistant", "content": "Three fruits: apples, pears, plums."}]
    off_topic = [*prompt, {"role": "assistant", "content": "The stock market closed lower on Tuesday."}]
    empty = [*prompt, {"role": "assistant", "content": ""}]
    g, h, stats = judge.score_pairs([on_topic, on_topic], [off_topic, empty])
    assert np.all(g > h) and h[1] == 0.0 and judge.direction == 1.0 and stats["judge"] == "relevance"
    assert Judge("perplexity", ScoreConfig(), EmbedConfig()).direction == -1.0
    with pytest.raises(InvalidParameterError, match="'judge' parameter must be one of"):
        Judge("heuristic", ScoreConfig(), EmbedConfig()).scorer(None)


def test_judge_revision_pins_hub_judges_not_the_round_model():
    cfg = ScoreConfig(revision="r1")
    assert Judge("reward:org/rm", cfg, EmbedConfig()).scorer(None).revision == "r1"
    assert Judge("perplexity:org/lm", cfg, EmbedConfig()).scorer(None).revision == "r1"
    assert Judge("perplexity", cfg, EmbedConfig()).scorer("/run/r01/model").revision is None  # a local folder


def test_relevance_scorer_on_a_pool():
    from kmq.data import Pool
    from kmq.scorers.relevance import RelevanceScorer

    pool = Pool.from_records([{"instruction": "Name a fruit.", "output": "An apple is a fruit."},
                              {"instruction": "Name a fruit.", "output": ""}])  # fmt: skip
    scorer = RelevanceScorer("hashing")
    rel = scorer.score(pool)
    assert rel.shape == (2,) and rel[0] > 0.2 and rel[1] == 0.0 and scorer.stats_["empty_responses"] == 1
    assert scorer.identity()["encoder"] == scorer.embedder.key
    assert os.environ.get("KMQ_CACHE_DIR")  # scores' vectors went to the per-test cache


def test_trl_loss_mask_covers_exactly_the_assistant_turns(tiny_llama):
    from transformers import AutoTokenizer

    from kmq.loop.train import _tokenize

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3."},
            {"role": "assistant", "content": "5"}, {"role": "user", "content": "Times 4?"},
            {"role": "assistant", "content": "20"}]  # fmt: skip
    (row,) = _tokenize(tok, [conv, [{"role": "user", "content": "no answer"}]])  # answerless: dropped
    ids, mask = row["input_ids"], row["assistant_masks"]
    learned = tok.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert learned == "5<|im_end|>\n20<|im_end|>\n"
