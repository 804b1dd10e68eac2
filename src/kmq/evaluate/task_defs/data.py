"""Where the datakit eval files are: the data dir resolution and the files each local task reads."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from kmq.errors import DataFormatError, InvalidParameterError, MissingArtifactError

DATA_DIR_ENV = "KMQ_DATA_DIR"
#: where the datakit is looked for, relative to the current directory, after --data-dir and $KMQ_DATA_DIR
DATA_DIR_CANDIDATES = ("../shared/datakit", "datakit")
#: the files (and folders) behind the local tasks, relative to the data dir
FILES = {
    "mmlu": "mmlu/mmlu.jsonl",
    "arc": "arc/arc.jsonl",
    "gsm8k": "gsm8k_test/gsm8k_test.jsonl",
    "gsm8k_train": "gsm8k_train/gsm8k_train.jsonl",
    "truthfulqa": "truthfulqa/truthfulqa.jsonl",
    "bbh": "bbh/bbh.jsonl",
    "bbh_prompts": "bbh/orig/cot-prompts",
    "humaneval": "humaneval/humaneval.jsonl",
    "mbpp": "mbpp_test/mbpp_test.jsonl",
}


def resolve_data_dir(data_dir: str | os.PathLike | None, *, required: bool = True) -> Path | None:
    """The datakit folder: ``data_dir``, else ``$KMQ_DATA_DIR``, else ``../shared/datakit`` or ``./datakit``.

    An explicit folder (argument or variable) that does not exist is an error. When nothing is found,
    InvalidParameterError naming what was looked for, or None with ``required=False``.
    """
    for value, what in ((data_dir, "The 'data_dir' parameter (--data-dir)"), (os.environ.get(DATA_DIR_ENV), None)):
        if value is None or (what is None and not value):
            continue
        path = Path(value).expanduser()
        if not str(value).strip() or not path.is_dir():
            source = what or f"${DATA_DIR_ENV}"
            raise InvalidParameterError(f"{source} must be a folder holding the datakit eval sets (mmlu/, arc/, "
                                        f"gsm8k_test/, ...). Got {str(value)!r}, which is not a folder.")  # fmt: skip
        return path.resolve()
    for rel in DATA_DIR_CANDIDATES:
        if (Path.cwd() / rel).is_dir():
            return (Path.cwd() / rel).resolve()
    if not required:
        return None
    looked = ", ".join(str(Path.cwd() / rel) for rel in DATA_DIR_CANDIDATES)
    raise InvalidParameterError(
        f"No datakit folder found for kmq's local eval tasks: looked for --data-dir, ${DATA_DIR_ENV}, then {looked}. "
        "Pass --data-dir DIR (a folder with mmlu/, arc/, gsm8k_test/, ...)."
    )


def data_file(key: str, data_dir: str | Path | None) -> Path:
    """The datakit file (or folder) behind ``key`` of :data:`FILES`; MissingArtifactError naming it if absent."""
    path = resolve_data_dir(data_dir) / FILES[key]
    if not path.exists():
        raise MissingArtifactError(
            f"The eval data file {path} does not exist (kmq's local {key.split('_')[0]} task reads it). Pass "
            "--data-dir (or set $KMQ_DATA_DIR) to a datakit copy that has it."
        )
    return path


def read_jsonl(path: Path) -> tuple[tuple[int, dict], ...]:
    """(line number, record) pairs of a JSON-lines file, parsed once per (path, size, mtime); do not mutate."""
    st = path.stat()
    return _read_jsonl(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_jsonl(path: str, size: int, mtime_ns: int) -> tuple[tuple[int, dict], ...]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path} line {n}: not valid JSON ({err.msg}).") from err
            if not isinstance(row, dict):
                raise DataFormatError(f"{path} line {n}: expected a JSON object, got {type(row).__name__}.")
            rows.append((n, row))
    return tuple(rows)
