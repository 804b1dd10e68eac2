"""Locating ../shared/datakit and building the mixed pool of its 12 training pools (by path, never copied in)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATAKIT = Path(os.environ.get("KMQ_DATAKIT", REPO.parent / "shared" / "datakit"))
TRAINING_POOLS = (
    "t0_p3_subset", "gpteacher", "alpaca_random9k", "gsm8k_train", "alpagasus_filtered", "dolly_3k",
    "code_alpaca_2k", "lima", "alpaca_gpt4_demo", "instructionwild_v2", "fastchat_dummy", "self_instruct_seed",
)  # fmt: skip


def mixed_pool(folder: Path) -> Path:
    """Concatenate the 12 normalised training pools (60,885 records) into ``folder/mixed.jsonl``."""
    out = folder / "mixed.jsonl"
    if not out.exists():
        with open(out, "wb") as f:
            for name in TRAINING_POOLS:
                data = (DATAKIT / name / f"{name}.jsonl").read_bytes()
                f.write(data if data.endswith(b"\n") else data + b"\n")
    return out
