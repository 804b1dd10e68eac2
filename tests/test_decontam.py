"""Decontamination (kmq.shape.decontam) on real datakit eval sets and pools, against a naive reference."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kmq.shape
import kmq.shape.evalsets
from kmq.data import read_pool, read_records
from kmq.errors import DataFormatError, InvalidParameterError, KmqError, MissingArtifactError
from kmq.shape.decontam import EvalSet, decontaminate, load_eval_set, words

EVAL_SETS = {  # name -> (records, field detected in the normalised file)
    "mmlu": (14327, "question"),
    "arc": (3548, "question"),
    "gsm8k_test": (1319, "prompt"),
    "truthfulqa": (817, "prompt"),
    "bbh": (6511, "prompt"),
    "humaneval": (164, "prompt"),
    "mbpp_test": (500, "prompt"),
    "alpaca_eval": (805, "prompt"),
    "mt_bench": (80, "turns"),
    "vicuna_bench": (80, "turns"),
    "wizardlm_testset": (218, "prompt"),
    "lima_test": (300, "prompt"),
}
ORIGINALS = {  # a datakit eval set's original file -> (records, field detected)
    "truthfulqa/orig/TruthfulQA.csv": (817, "Question"),
    "wizardlm_testset/orig/WizardLM_testset.jsonl": (218, "Instruction"),
    "mt_bench/orig/question.jsonl": (80, "turns"),
    "mbpp_test/orig/mbpp.test.zip": (500, "text"),
    "humaneval/orig/HumanEval.jsonl.gz": (164, "prompt"),
    "lima_test/orig/test.jsonl": (300, "conversations"),
    "gsm8k_test/orig/test.jsonl": (1319, "question"),
    "alpaca_eval/orig/text_davinci_003/model_outputs.json": (805, "instruction"),
    "mmlu/orig/test/anatomy_test.csv": (135, "question"),
}


def _user_prompts(datakit, name: str) -> tuple[list[str], list[str]]:
    pool = read_pool(datakit / name / f"{name}.jsonl")
    return pool.ids, pool.texts("prompt")


@pytest.fixture(scope="module")
def gsm8k_test(datakit) -> EvalSet:
    return load_eval_set(datakit / "gsm8k_test")


@pytest.fixture(scope="module")
def alpaca_eval(datakit) -> EvalSet:
    return load_eval_set(datakit / "alpaca_eval")


# ----------------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", sorted(EVAL_SETS))
def test_every_datakit_eval_set_loads_without_a_field(datakit, name):
    records, field = EVAL_SETS[name]
    for spec in (datakit / name, datakit / name / f"{name}.jsonl"):
        ev = load_eval_set(spec)
        assert (ev.name, len(ev), len(ev.prompts), ev.field) == (name, records, records, field)
        assert all(isinstance(p, str) for p in ev.prompts) and sum(bool(p.strip()) for p in ev.prompts) == records
        assert len(set(ev.ids)) == records  # the datakit's own ids


@pytest.mark.parametrize("rel", sorted(ORIGINALS))
def test_original_files_load_with_their_own_field_names(datakit, rel):
    records, field = ORIGINALS[rel]
    ev = load_eval_set(datakit / rel)
    assert (len(ev), ev.field) == (records, field)
    assert all(p.strip() for p in ev.prompts)


def test_multiple_choice_sets_give_the_question_without_choices(datakit):
    arc = load_eval_set(datakit / "arc")
    first = json.loads((datakit / "arc" / "arc.jsonl").open().readline())
    assert arc.prompts[0] == first["question"] and first["choices"][0] not in arc.prompts[0]


def test_turns_are_all_user_turns_and_lima_conversations_alternate(datakit):
    mt = load_eval_set(datakit / "mt_bench")
    first = json.loads((datakit / "mt_bench" / "mt_bench.jsonl").open().readline())
    assert mt.prompts[0] == "\n".join(first["turns"]) and len(first["turns"]) == 2
    lima = load_eval_set(datakit / "lima_test" / "orig" / "test.jsonl")
    assert lima.prompts == load_eval_set(datakit / "lima_test").prompts


def test_path_field_names_the_prompt_field(datakit):
    path = datakit / "truthfulqa" / "orig" / "TruthfulQA.csv"
    ev = load_eval_set(f"{path}:Best Answer")
    assert ev.field == "Best Answer" and ev.prompts[0] == "The watermelon seeds pass through your digestive system"


def test_alpaca_instruction_and_input_are_joined(tmp_path):
    path = tmp_path / "ui.jsonl"
    rows = [{"instruction": "Fix the grammar.", "input": " me and him goes "}, {"instruction": "Say hi.", "input": ""}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = load_eval_set(path)
    assert ev.field == "instruction+input" and ev.prompts == ["Fix the grammar.\n\nme and him goes", "Say hi."]


def test_missing_eval_file_is_a_kmq_error_naming_it(tmp_path):
    with pytest.raises(MissingArtifactError, match="nope.jsonl"):
        load_eval_set(tmp_path / "nope.jsonl")
    with pytest.raises(MissingArtifactError, match=r"nope.jsonl:prompt"):
        load_eval_set(f"{tmp_path / 'nope.jsonl'}:prompt")


def test_no_prompt_field_lists_the_fields_and_the_path_field_fix(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text('{"model": "a", "score": 1}\n{"model": "b", "score": 2}\n')
    with pytest.raises(DataFormatError, match=r"\['model', 'score'\].*scores.jsonl:FIELD") as err:
        load_eval_set(path)
    assert isinstance(err.value, KmqError)


def test_unknown_field_lists_the_fields(datakit):
    path = datakit / "truthfulqa" / "orig" / "TruthfulQA.csv"
    with pytest.raises(DataFormatError, match=r"'question'.*'Question'"):
        load_eval_set(f"{path}:question")


def test_prompt_that_is_not_text_names_the_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "prompt": "ok"}\n{"id": "b", "prompt": 7}\n')
    with pytest.raises(DataFormatError, match=r"record 1 \(id 'b'\): field 'prompt' is int"):
        load_eval_set(path)


def test_unreadable_file_and_ambiguous_folder_are_errors(tmp_path):
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(DataFormatError, match="broken.jsonl line 2"):
        load_eval_set(bad)
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a.jsonl", "b.csv"):
        (folder / name).write_text('{"prompt": "x"}\n' if name.endswith("jsonl") else "prompt\nx\n")
    (folder / "SOURCE.json").write_text("{}")
    with pytest.raises(DataFormatError, match=r"2 data files \(\['a.jsonl', 'b.csv'\]\)"):
        load_eval_set(folder)
    (folder / "b.csv").unlink()
    assert load_eval_set(folder).name == "two"


def test_read_records_keeps_raw_records_that_no_pool_format_fits(datakit, tmp_path):
    path = datakit / "truthfulqa" / "orig" / "TruthfulQA.csv"  # Question / Best Answer: read_pool refuses it
    with pytest.raises(DataFormatError):
        read_pool(path)
    pool = read_records(path)
    assert len(pool) == 817 and pool.ids[:2] == ["0", "1"] and "Question" in pool.columns()
    assert pool.column("Question")[0].startswith("What happens to you if you eat watermelon seeds")
    assert pool.messages[0] == []
    with pytest.raises(MissingArtifactError, match="nope.jsonl"):
        read_records(tmp_path / "nope.jsonl")
    with pytest.raises(MissingArtifactError, match="File not found"):
        read_records(datakit / "truthfulqa")  # a folder is not a file
    arrays = tmp_path / "arrays.jsonl"
    arrays.write_text('{"id": "a", "x": 1}\n[1, 2]\n')
    with pytest.raises(DataFormatError, match=r"arrays.jsonl line 2: the record is list; expected a JSON object"):
        read_records(arrays)


def test_eval_set_names_are_one_object_from_every_module():
    assert EvalSet is kmq.shape.EvalSet is kmq.shape.evalsets.EvalSet
    assert load_eval_set is kmq.shape.load_eval_set is kmq.shape.evalsets.load_eval_set


# ----------------------------------------------------------------------------------------------- words


def test_words_fold_case_and_split_at_punctuation():
    got = words(["Janet’s ducks: 16 EGGS-per-day!", "  ", "has_close_elements(x)", "cafe\u0301 \u4f60\u597d\u3002ok"])
    assert got == [
        ["janet", "s", "ducks", "16", "eggs", "per", "day"],
        [],
        ["has", "close", "elements", "x"],
        ["cafe\u0301", "\u4f60\u597d", "ok"],  # a combining mark stays in its word; CJK runs are one word
    ]


def test_upper_cased_copies_match_caselessly():
    # mmlu's "How much work is required to charge a 10 µF capacitor ...": upper() turns the micro sign into a
    # Greek capital mu, whose lower case is not the micro sign; case folding maps both to one letter
    text = "How much work is required to charge a 10 µF capacitor to a potential difference of 100 V ?"
    assert words([text.upper()]) == words([text]) and words(["STRASSE"]) == words(["Straße"])
    ev = EvalSet("mmlu", ["q"], [text], "<inline>")
    assert decontaminate(["p"], [f"Answer this question. {text.upper()} Answer:"], [ev]).mask.tolist() == [True]


# ----------------------------------------------------------------------------------------------- matching


def test_gsm8k_test_prompts_mixed_into_dolly_are_found(datakit, gsm8k_test):
    ids, prompts = _user_prompts(datakit, "dolly_3k")
    rng = random.Random(0)
    planted = rng.sample(range(len(gsm8k_test)), 25)
    at = sorted(rng.sample(range(len(prompts)), 25))
    for k, (i, j) in enumerate(zip(at, planted, strict=True)):
        text = gsm8k_test.prompts[j]
        prompts[i] = text if k % 2 else f"Solve this step by step.\n\n{text}\n\nShow your work."
    found = decontaminate(ids, prompts, [gsm8k_test])
    assert np.flatnonzero(found.mask).tolist() == at
    assert found.per_set == {"gsm8k_test": 25}
    table = found.matches.to_pylist()
    assert sorted((r["id"], r["eval_id"]) for r in table) == sorted(
        (ids[i], gsm8k_test.ids[j]) for i, j in zip(at, planted, strict=True)
    )
    assert {r["kind"] for r in table[1::2]} == {"exact"} and {r["kind"] for r in table[0::2]} == {"ngram"}
    stats = found.stats()
    assert stats["contaminated"] == 25 and stats["eval_sets"]["gsm8k_test"]["records"] == 1319
    assert stats["pairs"] == {"exact": 12, "ngram": 13} and stats["ngram"] == 13


def test_gsm8k_train_against_test_finds_only_templated_near_copies(datakit, gsm8k_test):
    ids, prompts = _user_prompts(datakit, "gsm8k_train")
    found = decontaminate(ids, prompts, [gsm8k_test])
    assert found.per_set["gsm8k_test"] == found.n_contaminated == 4  # the splits share no question
    assert set(found.matches.column("kind").to_pylist()) == {"ngram"}


def test_alpaca_eval_prompts_with_changed_case_and_whitespace_are_exact_matches(datakit, alpaca_eval):
    ids, prompts = _user_prompts(datakit, "dolly_3k")
    base = decontaminate(ids, prompts, [alpaca_eval]).mask
    picked = list(range(0, 800, 40))
    changed = ["  " + "\n\t ".join(alpaca_eval.prompts[j].upper().split()) + " \n" for j in picked]
    found = decontaminate(ids + [f"copy{j}" for j in picked], prompts + changed, [alpaca_eval])
    assert found.mask[len(ids) :].all() and (found.mask[: len(ids)] == base).all()
    copies = [r for r in found.matches.to_pylist() if r["id"].startswith("copy")]
    assert {(r["id"], r["kind"]) for r in copies} >= {(f"copy{j}", "exact") for j in picked}


def test_twelve_shared_words_match_at_8_and_12_but_not_at_13(gsm8k_test):
    text = next(p for p in gsm8k_test.prompts if len(words([p])[0]) >= 40)
    shared = " ".join(text.split()[5:17])
    assert len(words([shared])[0]) == 12
    prompt = f"Here is a riddle about zebras, {shared}, said the quiet librarian"
    for n, hit in ((13, False), (12, True), (8, True)):
        assert decontaminate(["p"], [prompt], [gsm8k_test], ngram=n).mask.tolist() == [hit], n


def test_short_eval_prompts_match_only_exactly(datakit):
    bbh = load_eval_set(datakit / "bbh")
    short = bbh.prompts[0]  # "not ( True ) and ( True ) is": 5 words
    found = decontaminate(["a", "b", "c"], [short, "NOT (TRUE) and (true) IS", f"{short} or not False"], [bbh])
    assert found.mask.tolist() == [True, True, False]


def test_deterministic_and_independent_of_batch_size(datakit, gsm8k_test, alpaca_eval):
    ids, prompts = _user_prompts(datakit, "lima")
    ids, prompts = ids + [f"c{j}" for j in range(40)], prompts + [f"{p} Thanks!" for p in alpaca_eval.prompts[:40]]
    sets = [gsm8k_test, alpaca_eval, load_eval_set(datakit / "lima_test")]
    runs = [decontaminate(ids, prompts, sets, ngram=8, batch_size=b) for b in (65536, 65536, 97)]
    for other in runs[1:]:
        assert (other.mask == runs[0].mask).all() and other.per_set == runs[0].per_set
        assert other.matches.equals(runs[0].matches)
    assert runs[0].n_contaminated >= 25  # the appended copies of >= 8 words, and a lima record


def test_same_name_sets_get_suffixes_and_per_set_counts_each(gsm8k_test):
    found = decontaminate(["p"], [gsm8k_test.prompts[3]], [gsm8k_test, gsm8k_test])
    assert found.per_set == {"gsm8k_test": 1, "gsm8k_test-2": 1}
    assert found.matches.column("eval_set").to_pylist() == ["gsm8k_test", "gsm8k_test-2"]


def test_eval_specs_are_loaded_and_empty_pools_work(datakit):
    found = decontaminate([], [], [str(datakit / "vicuna_bench")])
    assert found.mask.shape == (0,) and found.per_set == {"vicuna_bench": 0} and found.matches.num_rows == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"ngram": 0}, "'ngram'"), ({"ngram": 2.5}, "'ngram'"), ({"batch_size": 0}, "'batch_size'")],
)
def test_bad_parameters_are_refused(gsm8k_test, kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        decontaminate(["a"], ["b"], [gsm8k_test], **kwargs)


def test_ids_and_prompts_must_align(gsm8k_test):
    with pytest.raises(InvalidParameterError, match="pool_ids has 2 entries but pool_prompts has 1"):
        decontaminate(["a", "b"], ["x"], [gsm8k_test])


def test_lone_surrogates_in_pool_prompts_do_not_break_matching(gsm8k_test):
    prompts = ["bad \ud800 text", gsm8k_test.prompts[0]]
    assert decontaminate(["a", "b"], prompts, [gsm8k_test]).mask.tolist() == [False, True]


# ----------------------------------------------------------------------------------------------- reference


def _naive(prompts: list[str], sets: list[EvalSet], n: int) -> set[tuple[int, str, str, str]]:
    """Every (pool row, set, eval id, kind) by Python sets of word tuples: the rule, written plainly."""
    exact, grams = {}, {}
    for s in sets:
        for eid, toks in zip(s.ids, words(s.prompts), strict=True):
            if toks:
                exact.setdefault(" ".join(toks), set()).add((s.name, eid))
            for k in range(len(toks) - n + 1):
                grams.setdefault(tuple(toks[k : k + n]), set()).add((s.name, eid))
    out = {}
    for row, toks in enumerate(words(prompts)):
        for k in range(len(toks) - n + 1):
            for name, eid in grams.get(tuple(toks[k : k + n]), ()):
                out.setdefault((row, name, eid), "ngram")
        for name, eid in exact.get(" ".join(toks), ()) if toks else ():
            out[(row, name, eid)] = "exact"
    return {(*key, kind) for key, kind in out.items()}


@pytest.mark.parametrize("n", [5, 13])
def test_matches_equal_the_naive_reference_on_real_pools(datakit, gsm8k_test, alpaca_eval, n):
    ids, prompts = [], []
    for name in ("lima", "gsm8k_train", "fastchat_dummy"):
        i, p = _user_prompts(datakit, name)
        ids, prompts = ids + i[:2500], prompts + p[:2500]
    sets = [gsm8k_test, alpaca_eval, load_eval_set(datakit / "lima_test"), load_eval_set(datakit / "truthfulqa")]
    found = decontaminate(ids, prompts, sets, ngram=n, batch_size=1000)
    row = {rid: i for i, rid in enumerate(ids)}
    got = {(row[r["id"]], r["eval_set"], r["eval_id"], r["kind"]) for r in found.matches.to_pylist()}
    assert got == _naive(prompts, sets, n) and len(got) == found.matches.num_rows
    assert found.mask.sum() == len({g[0] for g in got}) > 0


# ----------------------------------------------------------------------------------------------- property

_WORD = st.text(alphabet="abcXYZé1", min_size=1, max_size=4)
_GAP = st.sampled_from([" ", "  ", "\n", ", ", " - ", "\t", "! "])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 13),
    body=st.lists(_WORD, min_size=13, max_size=30),
    before=st.lists(_WORD, max_size=6),
    after=st.lists(_WORD, max_size=6),
    gap=_GAP,
    upper=st.booleans(),
)
def test_a_prompt_containing_an_eval_prompt_of_n_words_is_always_flagged(n, body, before, after, gap, upper):
    eval_prompt = gap.join(body)
    inner = eval_prompt.upper() if upper else eval_prompt
    prompt = " ".join([*before, inner, *after])
    ev = EvalSet("e", ["e0", "e1"], ["an unrelated eval prompt", eval_prompt], "<hypothesis>")
    found = decontaminate(["p", "q"], [prompt, "qqqq"], [ev], ngram=n)
    assert found.mask.tolist() == [True, False]
    assert found.matches.column("eval_id").to_pylist() == ["e1"]
