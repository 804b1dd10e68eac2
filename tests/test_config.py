import pytest

from kmq.config import RunConfig, dump_config, load_config, resolve_budget
from kmq.errors import InvalidParameterError
from kmq.pipeline import build_config


@pytest.mark.parametrize(
    ("budget", "n", "expected"),
    [(5, 10, 5), ("5", 10, 5), (0.5, 10, 5), ("0.1", 1000, 100), (1.0, 7, 7), ("1e2", 500, 100), (0.001, 10, 1)],
)
def test_budget(budget, n, expected):
    assert resolve_budget(budget, n) == expected


@pytest.mark.parametrize("budget", [0, -3, "0", 2.5, "abc", 11, "0.0", True])
def test_bad_budget(budget):
    with pytest.raises(InvalidParameterError, match="budget"):
        resolve_budget(budget, 10)


def test_yaml_roundtrip_and_precedence(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "budget: 100\nseed: 3\nembed: {embedder: hashing}\nselect: {method: kmq, params: {temperature: 0.5}}\n"
    )
    cfg = load_config(path)
    assert cfg.budget == 100 and cfg.embed.embedder == "hashing" and cfg.select.params == {"temperature": 0.5}
    merged = build_config(path, {"seed": 7, "embed.embed_on": "prompt", "select.params": {"within": "top"}})
    assert merged.seed == 7 and merged.embed.embed_on == "prompt" and merged.embed.embedder == "hashing"
    assert merged.select.params == {"temperature": 0.5, "within": "top"}
    again = tmp_path / "resolved.yaml"
    again.write_text(dump_config(merged))
    assert load_config(again) == merged


def test_unknown_keys_are_errors(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("embed: {embeder: hashing}\n")
    with pytest.raises(InvalidParameterError, match=r"unknown setting\(s\) \['embeder'\]"):
        load_config(path)
    with pytest.raises(InvalidParameterError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    assert RunConfig().embed.embedder == "minilm"
