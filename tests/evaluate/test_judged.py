"""The judge-based tasks alpaca_eval and mt_bench on the datakit, against a judge served on 127.0.0.1.

The judge is a real OpenAI-compatible server (``tests/chat_server.py``) whose answers follow a rule read
from the prompt it gets (prefer the longer answer; rate by answer length), so every number below is
computed independently from that rule. The model under test is a plain function of the conversation.
"""

from __future__ import annotations

import json
import re
import socket
import statistics
import threading
import time

import pytest

pytest.importorskip("openai")

from chat_server import ChatServer, LoopbackServer, _Handler  # noqa: E402
from kmq.errors import (  # noqa: E402
    DataFormatError,
    GenerationError,
    InvalidParameterError,
    JudgeError,
    MissingArtifactError,
)
from kmq.evaluate.judge_prompts import parse_verdict  # noqa: E402
from kmq.evaluate.judged import run_judged  # noqa: E402

ANSWER = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]", re.S)


def longer_wins(messages: list[dict]) -> str:
    """Pairwise judge: the longer answer wins, equal lengths tie; 'UNPARSABLE' in an answer gets no verdict."""
    answers = dict(ANSWER.findall(messages[-1]["content"]))
    if "UNPARSABLE" in answers["A"] + answers["B"]:
        return "I cannot decide."
    if len(answers["A"]) == len(answers["B"]):
        return "Both are alike. [[C]]"
    return "Comparing... [[A]]" if len(answers["A"]) > len(answers["B"]) else "Comparing... [[B]]"


def judged_answer(messages: list[dict]) -> str:
    """The answer a single-answer prompt asks to rate (turn 1: the assistant's answer; turn 2: its last turn)."""
    text = messages[-1]["content"]
    found = re.search(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", text, re.S)
    return found[1] if found else text.rsplit("### Assistant:\n", 1)[1].split("\n\n<|The End", 1)[0]


def rate_words(messages: list[dict]) -> str:
    """Single-answer judge: rating = number of words of the judged answer, capped to 1-10 ('garble': none)."""
    answer = judged_answer(messages)
    if "garble" in answer:
        return "Rating: 7"
    return f"Fine. Rating: [[{min(10, max(1, len(answer.split())))}]]"


def _records(datakit, task):
    return [json.loads(line) for line in open(datakit / task / f"{task}.jsonl", encoding="utf-8")]


@pytest.fixture(scope="module")
def _server():
    with ChatServer(longer_wins) as server:
        yield server


@pytest.fixture
def pair_judge(_server):
    """The judge server, answering by :func:`longer_wins` (a test may set another ``reply``)."""
    _server.reply = longer_wins
    return _server


@pytest.fixture
def rating_judge(_server):
    """The judge server, answering by :func:`rate_words`."""
    _server.reply = rate_words
    return _server


def _spec(server) -> str:
    return f"judge:test-judge@{server.url}"


def test_verdicts_are_read_from_the_last_marker():
    assert parse_verdict("A is wrong, B is right: [[B]]") == "B"
    assert parse_verdict("[[A]] at first, but then [[ C ]]") == "C"
    assert parse_verdict("Verdict: A") is None and parse_verdict("") is None


def test_alpaca_win_rate_is_judged_in_both_orders(datakit, pair_judge):
    refs = {r["prompt"]: r["reference_gpt4_1106_preview"] for r in _records(datakit, "alpaca_eval")[:6]}
    # the model wins items 0-2 (longer than the reference), ties item 3 (same length), loses items 4-5
    lengths = [len(r) + 5 for r in refs.values()][:3] + [len(list(refs.values())[3]), 1, 2]

    def model(convs):
        return ["y" * lengths[list(refs).index(c[-1]["content"])] for c in convs]

    seen = []
    pair_judge.reply = lambda m: (seen.append(m), longer_wins(m))[1]
    res = run_judged("alpaca_eval", generate=model, judge=_spec(pair_judge), data_dir=datakit, limit=6)
    items = [1, 1, 1, 0.5, 0, 0]
    assert res["primary"] == "win_rate" and res["value"] == res["metrics"]["win_rate"] == pytest.approx(3.5 / 6)
    assert res["stderr"]["win_rate"] == pytest.approx(statistics.stdev(items) / 6**0.5)
    m = res["metrics"]
    assert (m["n"], m["judgements"], m["ties"], m["unparsed"], m["consistent"]) == (6, 12, 2, 0, 1.0)
    assert (m["model_preferred"], m["reference_preferred"]) == (6, 4)
    assert m["length_model"] == pytest.approx(sum(lengths) / 6)
    assert m["length_reference"] == pytest.approx(sum(map(len, refs.values())) / 6)
    assert [s["preference"] for s in res["samples"]] == items
    # every item was asked twice, once with the model's answer as A and once as B
    sides = {}
    for msg in seen:
        content = msg[-1]["content"]
        prompt = next(p for p in refs if f"[User Instruction]\n{p}\n" in content)
        shown = dict(ANSWER.findall(content))
        sides.setdefault(prompt, []).append("B" if shown["A"] == refs[prompt] else "A")
    assert len(sides) == 6 and all(sorted(v) == ["A", "B"] for v in sides.values())
    assert res["settings"]["reference"] == "reference_gpt4_1106_preview" and res["settings"]["both_orders"]


def test_a_judge_that_always_says_a_gives_one_half(datakit, pair_judge):
    pair_judge.reply = lambda m: "[[A]]"
    res = run_judged("alpaca_eval", generate=lambda c: ["hi"] * len(c), judge=_spec(pair_judge), data_dir=datakit,
                     limit=5)  # fmt: skip
    assert res["value"] == 0.5 and res["metrics"]["consistent"] == 0.0 and res["stderr"]["win_rate"] == 0.0


def test_ties_and_unparsable_verdicts_count_one_half_and_are_counted(datakit, pair_judge, caplog):
    refs = [r["reference_text_davinci_003"] for r in _records(datakit, "alpaca_eval")[:4]]
    answers = ["UNPARSABLE", None, "x" * (len(refs[2]) + 1), "UNPARSABLE"]

    def model(convs):
        return [refs[i] if a is None else a for i, a in enumerate(answers)][: len(convs)]

    res = run_judged("alpaca_eval", generate=model, judge=_spec(pair_judge), data_dir=datakit, limit=4,
                     reference="reference_text_davinci_003")  # fmt: skip
    m = res["metrics"]
    assert (m["unparsed"], m["ties"], m["judgements"]) == (4, 2, 8)
    assert res["value"] == pytest.approx((0.5 + 0.5 + 1 + 0.5) / 4)
    assert [j["verdict"] for j in res["samples"][0]["judgements"]] == [None, None]
    assert "4 of 8 judge answers have no [[A]], [[B]] or [[C]] verdict" in caplog.text
    pair_judge.reply = lambda m: "no idea"
    with pytest.raises(JudgeError, match="8 of 8 judge answers"):
        run_judged("alpaca_eval", generate=model, judge=_spec(pair_judge), data_dir=datakit, limit=4)


def _chat_model(log):
    """The model under test: answers 'ok' plus the first words of the last user turn; logs what it saw."""

    def generate(convs):
        log.append(convs)
        return [f"ok {' '.join(c[-1]['content'].split()[: 2 + len(c)])}" for c in convs]

    return generate


def test_mt_bench_turns_references_and_scores(datakit, rating_judge):
    records = _records(datakit, "mt_bench")
    log, seen = [], []
    rating_judge.reply = lambda m: (seen.append(m), rate_words(m))[1]
    res = run_judged("mt_bench", generate=_chat_model(log), judge=_spec(rating_judge), data_dir=datakit)
    first, second = log
    assert len(first) == len(second) == 80 and len(seen) == 160
    for conv, rec, sample in zip(second, records, res["samples"], strict=True):
        # turn 2 is asked with the model's own turn-1 answer in the conversation
        assert [t["role"] for t in conv] == ["user", "assistant", "user"]
        assert conv[1]["content"] == sample["outputs"][0] and conv[2]["content"] == rec["turns"][1]
    by_question = {}
    for m in seen:
        q = next(r for r in records if r["turns"][0] in m[-1]["content"])
        by_question.setdefault(q["id"], []).append(m[-1]["content"])
    for rec in records:
        prompts = by_question[rec["id"]]
        assert len(prompts) == 2
        ref = rec["reference_gpt4"]
        if rec["category"] in ("math", "reasoning", "coding"):
            assert all(ref[0] in p for p in prompts) and any(ref[1] in p for p in prompts)
            assert any(rec["turns"][1] in p and "Reference" in p for p in prompts)
        else:
            assert ref is None and not any("Reference Answer" in p for p in prompts)
    # the scores follow the judge's rule, turn by turn
    rules = [[min(10, max(1, len(a.split()))) for a in s["outputs"]] for s in res["samples"]]
    assert [s["ratings"] for s in res["samples"]] == rules
    flat = [r for pair in rules for r in pair]
    m = res["metrics"]
    assert res["primary"] == "score" and res["value"] == m["score"] == pytest.approx(statistics.mean(flat))
    assert m["score_turn1"] == pytest.approx(statistics.mean(r[0] for r in rules))
    assert m["score_turn2"] == pytest.approx(statistics.mean(r[1] for r in rules))
    assert res["stderr"]["score"] == pytest.approx(statistics.stdev(flat) / len(flat) ** 0.5)
    math_ratings = [x for rec, r in zip(records, rules, strict=True) if rec["category"] == "math" for x in r]
    assert m["score_math"] == pytest.approx(statistics.mean(math_ratings))
    assert sorted(k for k in m if k.startswith("score_") and "turn" not in k) == sorted(
        f"score_{c}" for c in {r["category"] for r in records}
    )
    assert (m["n"], m["judgements"], m["unparsed"], m["judged_without_reference"]) == (80, 160, 0, 0)


def test_mt_bench_unparsable_ratings_are_left_out_and_counted(datakit, rating_judge):
    def model(convs):
        return ["garble" if len(c) == 3 else "one two three" for c in convs]

    res = run_judged("mt_bench", generate=model, judge=_spec(rating_judge), data_dir=datakit, limit=3)
    m = res["metrics"]
    assert (m["unparsed"], m["score"], m["score_turn1"], m["score_turn2"]) == (3, 3.0, 3.0, None)
    assert res["stderr"]["score_turn2"] is None and res["samples"][0]["ratings"] == [3.0, None]


def test_limit_takes_a_prefix_and_runs_are_deterministic(datakit, rating_judge):
    spec = _spec(rating_judge)
    small = run_judged("mt_bench", generate=_chat_model([]), judge=spec, data_dir=datakit, limit=3)
    big = run_judged("mt_bench", generate=_chat_model([]), judge=spec, data_dir=datakit, limit=5, concurrency=1)
    again = run_judged("mt_bench", generate=_chat_model([]), judge=spec, data_dir=datakit, limit=5, concurrency=4)
    ids = [r["id"] for r in _records(datakit, "mt_bench")]
    assert [s["id"] for s in small["samples"]] == ids[:3] and small["n"] == 3
    assert small["samples"] == big["samples"][:3]
    assert (small["settings"]["limit"], small["settings"]["available"]) == (3, 80)
    big["settings"].pop("judge_concurrency"), again["settings"].pop("judge_concurrency")
    assert json.dumps(big, sort_keys=True) == json.dumps(again, sort_keys=True)


def test_no_key_or_url_credentials_in_the_result(datakit, pair_judge, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-very-secret-123")
    url = pair_judge.url.replace("http://", "http://alice:pa55word@")
    res = run_judged("alpaca_eval", generate=lambda c: ["fine"] * len(c), judge=f"judge:test-judge@{url}",
                     data_dir=datakit, limit=2, judge_options={"api_key_env": "MY_JUDGE_KEY"})  # fmt: skip
    text = json.dumps(res)
    assert "sk-very-secret" not in text and "pa55word" not in text and "alice" not in text
    s = res["settings"]
    assert s["judge"] == f"judge:test-judge@{pair_judge.url.replace('http://', 'http://***@')}"
    assert s["judge_model"] == "test-judge" and len(s["prompt_digest"]) == 32 and s["judge_temperature"] == 0.0


class _FlakyHandler(_Handler):
    def do_POST(self):
        srv = self.server
        with srv.lock:
            fail = srv.failures > 0
            srv.failures -= fail
            srv.attempts += 1
        if not fail:
            return super().do_POST()
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"error": {"message": "overloaded"}}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FlakyServer(LoopbackServer):
    """Answers 500 to its first ``failures`` requests, then like :class:`ChatServer`."""

    def __init__(self, reply, failures):
        super().__init__(_FlakyHandler)
        self.reply, self.failures, self.calls, self.attempts = reply, failures, 0, 0
        self.lock = threading.Lock()


def test_a_500_is_retried_by_the_sdk(datakit, pair_judge):
    model = _chat_model([])
    want = run_judged("alpaca_eval", generate=model, judge=_spec(pair_judge), data_dir=datakit, limit=2)
    with FlakyServer(longer_wins, failures=2) as flaky:
        got = run_judged("alpaca_eval", generate=model, judge=_spec(flaky), data_dir=datakit, limit=2,
                         concurrency=1)  # fmt: skip
        assert (flaky.attempts, flaky.calls) == (6, 4)
    assert got["metrics"] == want["metrics"] and got["samples"] == want["samples"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_judge_is_one_clear_error(datakit):
    start, log = time.perf_counter(), []
    with pytest.raises(JudgeError) as err:
        run_judged("mt_bench", generate=_chat_model(log), judge=f"judge:m@http://127.0.0.1:{_closed_port()}/v1",
                   data_dir=datakit, limit=2)  # fmt: skip
    assert log == []  # found before the model generates anything
    msg = str(err.value)
    assert "\n" not in msg and "cannot connect" in msg and "connection refused" in msg and "Start the server" in msg
    assert time.perf_counter() - start < 10


def test_bad_parameters_and_data_are_named(datakit, tmp_path, pair_judge):
    spec, gen = _spec(pair_judge), lambda c: ["x"] * len(c)
    with pytest.raises(InvalidParameterError, match="'task' parameter .* Got 'alpaca'"):
        run_judged("alpaca", generate=gen, judge=spec, data_dir=datakit)
    with pytest.raises(InvalidParameterError, match="judge:MODEL@URL spec .* Got 'heuristic'"):
        run_judged("mt_bench", generate=gen, judge="heuristic", data_dir=datakit)
    with pytest.raises(InvalidParameterError, match="judge:MODEL@URL needs a model"):
        run_judged("mt_bench", generate=gen, judge="judge:nourl", data_dir=datakit)
    with pytest.raises(InvalidParameterError, match="'limit' parameter .* Got 0"):
        run_judged("mt_bench", generate=gen, judge=spec, data_dir=datakit, limit=0)
    with pytest.raises(InvalidParameterError, match="'reference' parameter of mt_bench must be one of"):
        run_judged("mt_bench", generate=gen, judge=spec, data_dir=datakit, reference="reference_gpt4_1106_preview")
    with pytest.raises(MissingArtifactError, match="mt_bench/mt_bench.jsonl"):
        run_judged("mt_bench", generate=gen, judge=spec, data_dir=tmp_path)
    (tmp_path / "mt_bench.jsonl").write_text('{"turns": ["a", "b"], "category": "math"}\n{"turns": ["a"]}\n')
    with pytest.raises(DataFormatError, match=r"mt_bench.jsonl:2: the field 'turns' must be a list of 2"):
        run_judged("mt_bench", generate=gen, judge=spec, data_dir=tmp_path)
    (tmp_path / "mt_bench.jsonl").write_text("{oops\n")
    with pytest.raises(DataFormatError, match=r"mt_bench.jsonl:1: not valid JSON"):
        run_judged("mt_bench", generate=gen, judge=spec, data_dir=tmp_path)
    with pytest.raises(GenerationError, match="returned 1 answers for 3 conversations"):
        run_judged("alpaca_eval", generate=lambda c: ["x"], judge=spec, data_dir=datakit, limit=3)


@pytest.mark.slow  # about 10 s on an idle 2-core machine (with building the tiny model)
def test_a_model_folder_through_the_hf_generator(datakit, tiny_llama, rating_judge):
    pytest.importorskip("torch")
    from kmq.loop.config import GenerateConfig
    from kmq.loop.generate import HFGenerator

    model = tiny_llama  # tests/evaluate/conftest.py: built once per session
    generator = HFGenerator(GenerateConfig(max_new_tokens=8, max_prompt_length=256, device="cpu"))
    log = []

    def generate(convs):
        log.append(convs)
        return generator.generate(str(model), convs)

    res = run_judged("mt_bench", generate=generate, judge=_spec(rating_judge), data_dir=datakit, limit=2)
    assert res["n"] == 2 and 1.0 <= res["value"] <= 10.0 and res["metrics"]["judgements"] == 4
    first = [s["outputs"][0] for s in res["samples"]]
    assert all(isinstance(a, str) for s in res["samples"] for a in s["outputs"])
    assert [c[1]["content"] for c in log[1]] == first  # turn 2 saw the real model's own turn-1 answers
