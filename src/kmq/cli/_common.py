"""Options shared by several commands; each setting's flag is made from its config field (:mod:`kmq.cli._flags`)."""

from __future__ import annotations

import argparse
import dataclasses

from kmq.cli._flags import setting


def add_pool_options(p: argparse.ArgumentParser, config: type) -> None:
    p.add_argument(
        "pool", metavar="POOL", nargs="?", default=None,
        help="a JSON/JSONL(.gz)/Parquet/CSV/TSV file (or a .zip of one), a save_to_disk folder or a hub dataset "
        "(or pool: in --config)",
    )  # fmt: skip
    setting(p, config, "format", "--format")
    setting(p, config, "split", "--split")
    g = p.add_argument_group("field mapping (for records no --format fits; the subset keeps the input's fields)")
    for role in ("prompt", "response", "system", "messages"):
        setting(g, config, f"fields.{role}", f"--{role}-field", metavar="FIELD")


def add_embed_options(p: argparse.ArgumentParser, config: type, *, scorer_sections: tuple[str, ...] = ()) -> None:
    """Embedding flags; ``--device`` and ``--trust-remote-code`` also reach the scorers of ``scorer_sections``."""
    g = p.add_argument_group("embedding")
    setting(g, config, "embed.embedder", "--embedder")
    setting(g, config, "embed.embed_on", "--embed-on")
    setting(g, config, "embed.conversation_vectors", "--conversation-vectors")
    setting(g, config, "embed.batch_size", "--embed-batch-size")
    setting(g, config, "embed.precision", "--precision")
    setting(g, config, "embed.encoder_backend", "--encoder-backend")
    setting(g, config, "embed.store_dtype", "--store-dtype")
    setting(g, config, "embed.device", "--device", also=tuple(f"{s}.device" for s in scorer_sections),
            help="torch device of model encoders (and of model scorers without their own device flag)")  # fmt: skip
    setting(g, config, "embed.trust_remote_code", "--trust-remote-code",
            also=tuple(f"{s}.trust_remote_code" for s in scorer_sections),
            help="let model repositories (encoder, scorers) run their own code (off unless given)")  # fmt: skip
    setting(g, config, "embed.max_length", "--embed-max-length")
    setting(g, config, "embed.api_key_env", "--embed-api-key-env", metavar="VAR")
    setting(g, config, "embed.concurrency", "--embed-concurrency")
    setting(g, config, "embed.max_retries", "--embed-max-retries")
    setting(g, config, "embed.timeout", "--embed-timeout")
    setting(g, config, "embed.dimensions", "--embed-dimensions")
    if "engine" in {f.name for f in dataclasses.fields(config)}:
        e = p.add_argument_group("engine (where the cache misses of the encoder and the model scorers are computed)")
        setting(e, config, "engine.engine", "--engine")
        setting(e, config, "engine.ray_address", "--ray-address", metavar="ADDRESS")
        setting(e, config, "engine.gpus", "--engine-gpus", metavar="GPUS")
        setting(e, config, "engine.actors", "--engine-actors", metavar="N")


def add_common_options(p: argparse.ArgumentParser, config: type) -> None:
    setting(p, config, "seed", "--seed")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="settings file; flags override it")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr, no progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")


def add_overwrite_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output kmq did not write, or a run directory that is not this command's "
        "(inputs are never overwritten)",
    )


def config_inputs(args: argparse.Namespace) -> list[str]:
    """Files the command reads besides the pool and embeddings (they may not be outputs): the --config file."""
    return [args.config] if getattr(args, "config", None) else []


def run_outputs(args: argparse.Namespace) -> dict:
    """``out`` and ``run_dir`` overrides: a new ``--out`` without ``--run-dir`` gets its own default run directory;
    with neither, the config's (a rerun from ``RUN/config.yaml`` writes where that run wrote)."""
    from kmq.publish import default_run_dir

    run_dir = args.run_dir or (str(default_run_dir(args.out)) if args.out else None)
    return {"out": args.out, "run_dir": run_dir}


def require(cfg, command: str, *names: str) -> None:
    """Settings a command cannot run without, from a flag or the --config file; the error says where to give them."""
    from kmq.errors import InvalidParameterError

    flags = {"pool": "POOL", "budget": "--budget N", "out": "--out SUBSET", "model": "--model MODEL"}
    missing = [n for n in names if getattr(cfg, n) in (None, "", 0)]
    if missing:
        what = ", ".join(flags.get(n, n) for n in missing)
        raise InvalidParameterError(
            f"kmq {command} needs {what}: pass {'it' if len(missing) == 1 else 'them'} on the command line, or set "
            f"{', '.join(f'{n}:' for n in missing)} in the --config file."
        )


def show_progress(args: argparse.Namespace) -> bool | None:
    return False if args.quiet else None


SCORER_HELP = (
    "heuristic | column:FIELD | relevance | perplexity:MODEL | ifd:MODEL | reward:MODEL "
    "| deita:COMPLEXITY_MODEL,QUALITY_MODEL | judge:MODEL@URL "
    "(MODEL: hub name or local folder; higher = better for every scorer)"
)


def add_score_options(g: argparse._ArgumentGroup, config: type, section: str = "score") -> None:
    """Flags of the model-based scorers of ``section`` (``score``; the loop's ``judge`` has flags of its own)."""
    s = section
    setting(g, config, f"{s}.allow_empty_responses", "--allow-empty-responses")
    setting(g, config, f"{s}.device", "--score-device")
    setting(g, config, f"{s}.precision", "--score-precision")
    setting(g, config, f"{s}.batch_size", "--score-batch-size")
    setting(g, config, f"{s}.revision", "--score-revision", metavar="REV")
    setting(g, config, f"{s}.max_length", "--max-length")
    setting(g, config, f"{s}.judge_concurrency", "--judge-concurrency")
    setting(g, config, f"{s}.judge_max_retries", "--judge-max-retries")
    setting(g, config, f"{s}.judge_timeout", "--judge-timeout")
    setting(g, config, f"{s}.judge_api_key_env", "--judge-api-key-env", metavar="VAR")
    setting(g, config, f"{s}.judge_unparsable", "--judge-unparsable")
