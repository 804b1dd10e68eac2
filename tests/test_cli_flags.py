"""The command line's setting flags are made from the config declarations, so the two cannot drift."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from kmq.cli._flags import PREFIX, _field, setting_overrides
from kmq.cli.main import build_parser
from kmq.config import RunConfig
from kmq.loop.config import IterateConfig

COMMANDS = {"select": RunConfig, "score": RunConfig, "choose-k": RunConfig, "iterate": IterateConfig}


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_setting_flag_matches_its_field(command):
    config = COMMANDS[command]
    flags = [a for a in _subparsers()[command]._actions if a.dest.startswith(PREFIX)]
    assert len(flags) >= 5
    for action in flags:
        for key in action.dest[len(PREFIX) :].split("|"):
            f, tp, default = _field(config, key)  # raises if the flag names no setting
            literal = [a for a in _literals(tp)]
            if action.choices is not None:
                assert list(action.choices) == literal, (action.option_strings, key)
            elif literal:
                pytest.fail(f"{action.option_strings} sets {key}, declared as {tp}, but has no choices")
            shown = f"(default {default})"
            if default not in (None, "", [], {}, False, True) and key == action.dest[len(PREFIX) :].split("|")[0]:
                assert shown in action.help.replace("%%", "%"), (action.option_strings, action.help)


def _literals(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return list(typing.get_args(tp))
    if origin in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _literals(args[0])
    return []


def test_flags_become_dotted_overrides_with_their_types():
    sub = _subparsers()
    args = sub["iterate"].parse_args(["pool.jsonl", "--budget", "10", "--out", "s.jsonl", "--device", "cuda:1",
                                      "--judge-device", "cuda:0", "--clusters", "auto", "--epochs", "2",
                                      "--train-final", "--judge-unparsable", "min"])  # fmt: skip
    got = {k: v for k, v in setting_overrides(args).items() if v is not None}
    assert got["embed.device"] == "cuda:1" and got["score.device"] == "cuda:1"
    assert got["judge.device"] == "cuda:0"  # its own flag beats the shared --device
    assert got["cluster.clusters"] == "auto" and got["train.epochs"] == 2.0 and got["train.train_final"] is True
    assert got["judge.judge_unparsable"] == "min"
    args = sub["select"].parse_args(["p.jsonl", "--budget", "3", "--out", "o.jsonl", "--clusters", "7",
                                     "--candidates", "4,8"])  # fmt: skip
    got = setting_overrides(args)
    assert got["cluster.clusters"] == 7 and got["cluster.candidates"] == [4, 8] and got["seed"] is None


def test_every_config_field_has_help():
    for cls in (RunConfig, IterateConfig):
        stack = [cls]
        while stack:
            c = stack.pop()
            for f in dataclasses.fields(c):
                sub = typing.get_type_hints(c)[f.name]
                if dataclasses.is_dataclass(sub):
                    stack.append(sub)
                    continue
                assert f.metadata.get("help"), f"{c.__name__}.{f.name} has no help text"
