"""MiniLM forward paths on this CPU: torch fp32 against int8, compile, attention, threads, batch size, ONNX Runtime.

The batches are kmq's own: blocks of dolly_3k's prompts and responses (the two views the main job encodes),
taken along kmq's length order (:func:`sample_blocks`), go through
:meth:`kmq.embed.SentenceTransformerEmbedder.embed_batch` with the model's ``forward`` recorded, so every path
runs the very padded windows kmq runs (tokenised once, cut into windows, sorted by length, ``batch_size``
windows a batch). Each path's forward then runs on those batches, paths
alternated in one process (round r runs every path once, in a rotated order), and the script prints, per path,
the best and median CPU time of the process (all threads: ``time.process_time``) and wall time, the ratio of
CPU time to torch fp32's, and the cosine of each window's vector to torch fp32's (min, 5th percentile, mean).
CPU time is the comparison because other jobs share the cores; the 1-minute load average is printed per round.

Paths (``--paths``, comma-separated; default all but ``compile``):

- ``fp32``: the sentence-transformers forward kmq runs (SDPA attention), the baseline.
- ``bf16``: the model cast to bfloat16 (kmq's ``precision="bf16"``, what ``auto`` runs on a CPU with
  AVX512-BF16 or AMX).
- ``eager``: the same weights with eager attention.
- ``int8-x86`` / ``int8-fbgemm``: ``torch.ao.quantization.quantize_dynamic`` of the ``nn.Linear`` layers
  (weights int8 per tensor, activations quantised per batch), on that quantised engine.
- ``int8-x86-ffn``: the same on the feed-forward Linears only (intermediate and output dense), attention fp32.
- ``compile``: ``torch.compile`` (inductor, ``dynamic=True``) of the fp32 model; its compile time is printed.
- ``t1``: fp32 with one intra-op thread (CPU time of a 1-thread forward: 2 processes x 1 thread would cost that).
- ``ort-fp32``: ONNX Runtime, kmq's fused graph (:mod:`kmq.embed.onnx_backend`).
- ``ort-int8``: kmq's ``precision="int8"`` graph (dynamic quantisation of every MatMul, per tensor).
- ``ort-int8-pc``: per-channel dynamic quantisation of the weight MatMuls only (QOperator), attention
  score and context MatMuls (two activations) left fp32.
- ``ort-int8-pc-ffn``: the same on the feed-forward MatMuls only.

``--batch-sizes 16,32,64,128`` adds a sweep of the fp32 path over the same windows batched at each size
(each size is its own path ``fp32-bN``; its cosine is to the ``--batch-size`` fp32 vectors of the same windows).

    .venv/bin/python benchmarks/bench_encoder_paths.py [--slices 4] [--slice-size 128] [--rounds 3]
        [--paths fp32,int8-x86] [--batch-sizes 16,32,64,128] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _datakit import DATAKIT  # noqa: E402

POOL = DATAKIT / "dolly_3k" / "dolly_3k.jsonl"
DEFAULT_PATHS = ("fp32", "bf16", "eager", "int8-x86", "int8-fbgemm", "int8-x86-ffn", "t1", "ort-fp32", "ort-int8",
                 "ort-int8-pc", "ort-int8-pc-ffn")  # fmt: skip


def sample_blocks(slices: int, size: int) -> list[list[str]]:
    """``slices`` blocks of ``size`` texts from dolly_3k's prompts and responses, as kmq's encoder gets them.

    kmq sorts the texts to encode by character length and hands them to ``embed_batch`` in consecutive blocks
    (:func:`kmq.cache.cached_map`), so a block holds texts of similar length and its batches pad little. The
    blocks here are the ``size`` texts around the middles of ``slices`` equal shares of that order (a
    stratified sample).
    """
    from kmq.data.io import read_pool

    pool = read_pool(str(POOL))
    texts = [t for t in [*pool.texts("prompt"), *pool.texts("response")] if t.strip()]
    texts = [texts[i] for i in np.argsort([len(t) for t in texts], kind="stable")]
    centres = (np.arange(slices) + 0.5) * len(texts) / slices  # the middles of `slices` equal shares
    starts = np.clip(centres - size / 2, 0, len(texts) - size).astype(int)
    return [texts[lo : lo + size] for lo in starts]


def kmq_batches(embedder: Any, blocks: list[list[str]], batch_size: int) -> tuple[list[dict], np.ndarray]:
    """The padded batches kmq's ``embed_batch`` runs on each block at ``batch_size``, and its window vectors."""
    model = embedder.model
    embedder.batch_size = batch_size
    forward, seen, out = model.forward, [], []

    def record(batch: dict) -> dict:
        seen.append({k: v.clone() for k, v in batch.items()})
        result = forward(batch)
        out.append(result["sentence_embedding"].float().numpy().copy())
        return result

    model.forward = record  # an instance attribute: embed_batch's model.forward(batch) lands here
    try:
        for texts in blocks:
            embedder.embed_batch(texts)
    finally:
        del model.forward
    return seen, np.concatenate(out)


# -- the paths: each a setup returning forward(batch) -> (windows, dim) float32 --------------------------------
def _st_forward(model: Any) -> Callable[[dict], np.ndarray]:
    import torch

    def run(batch: dict) -> np.ndarray:
        with torch.inference_mode():
            return model.forward(dict(batch))["sentence_embedding"].float().numpy()

    return run


def path_fp32(model: Any, _: Any) -> Callable:
    return _st_forward(model)


def path_bf16(model: Any, _: Any) -> Callable:
    import torch

    return _st_forward(copy.deepcopy(model).to(torch.bfloat16))  # what kmq's precision="bf16" runs


def path_eager(model: Any, _: Any) -> Callable:
    m = copy.deepcopy(model)
    bert = m[0].auto_model
    if hasattr(bert, "set_attn_implementation"):
        bert.set_attn_implementation("eager")
    else:
        bert.config._attn_implementation = "eager"
    return _st_forward(m)


def _int8(model: Any, engine: str, ffn_only: bool, per_channel: bool = False) -> Callable:
    import torch

    torch.backends.quantized.engine = engine
    m = copy.deepcopy(model)
    if ffn_only:
        spec = {name for name, mod in m.named_modules()
                if isinstance(mod, torch.nn.Linear) and (".intermediate." in name or name.endswith("output.dense"))
                and ".attention." not in name}  # fmt: skip
    else:
        spec = {torch.nn.Linear}
    if per_channel:
        spec = dict.fromkeys(spec, torch.ao.quantization.per_channel_dynamic_qconfig)
    q = torch.ao.quantization.quantize_dynamic(m, spec, dtype=torch.qint8)
    run = _st_forward(q)

    def on_engine(batch: dict) -> np.ndarray:
        torch.backends.quantized.engine = engine
        return run(batch)

    return on_engine


def path_int8_x86(model: Any, _: Any) -> Callable:
    return _int8(model, "x86", ffn_only=False)


def path_int8_fbgemm(model: Any, _: Any) -> Callable:
    return _int8(model, "fbgemm", ffn_only=False)


def path_int8_x86_ffn(model: Any, _: Any) -> Callable:
    return _int8(model, "x86", ffn_only=True)


def path_int8_x86_pc(model: Any, _: Any) -> Callable:
    return _int8(model, "x86", ffn_only=False, per_channel=True)


def path_compile(model: Any, batches: list[dict]) -> Callable:
    import torch

    m = copy.deepcopy(model)
    compiled = torch.compile(m, dynamic=True)
    run = _st_forward(compiled)
    start = time.perf_counter()
    for b in batches[:2] + batches[-1:]:  # first shapes and the shortest: the dynamic graph is built
        run(b)
    print(f"  compile: warm-up {time.perf_counter() - start:.1f} s wall", flush=True)
    return run


def path_t1(model: Any, _: Any) -> Callable:
    import torch

    run = _st_forward(model)

    def one_thread(batch: dict) -> np.ndarray:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run(batch)
        finally:
            torch.set_num_threads(before)

    return one_thread


class _Ort:
    """The exported graphs, built once in a temporary folder (raw export, fused, quantised variants)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._tmp = tempfile.TemporaryDirectory(prefix="kmq-bench-ort-")  # removed when the process ends
        self.dir = Path(self._tmp.name)
        self._raw: Path | None = None

    def raw(self) -> Path:
        if self._raw is None:
            from kmq.embed import onnx_backend

            self._raw = self.dir / "raw.onnx"
            onnx_backend._torch_export(self.model, self._raw)
        return self._raw

    def fused(self) -> Path:
        from kmq.embed import onnx_backend

        path = self.dir / "fused.onnx"
        if not path.exists():
            onnx_backend._fuse(self.model, self.raw(), path)
        return path

    def quantised(self, name: str, **kwargs: Any) -> Path:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        path = self.dir / f"{name}.onnx"
        if not path.exists():
            quantize_dynamic(str(self.raw()), str(path), weight_type=QuantType.QInt8, **kwargs)
        return path

    def weight_matmuls(self, ffn_only: bool) -> list[str]:
        """Names of the raw graph's MatMul nodes with a constant (weight) input; FFN ones only if asked."""
        import onnx

        graph = onnx.load(str(self.raw())).graph
        consts = {i.name for i in graph.initializer}
        consts |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        names = []
        for node in graph.node:
            if node.op_type != "MatMul" or not any(i in consts for i in node.input):
                continue
            if ffn_only and "/intermediate/" not in node.name and not _ffn_down(node.name):
                continue
            names.append(node.name)
        return names

    def session(self, path: Path) -> Callable:
        import torch

        from kmq.embed.onnx_backend import OrtEncoder

        enc = OrtEncoder(path, threads=torch.get_num_threads())
        return lambda batch: enc({k: v.numpy() for k, v in batch.items()})


_ORT: dict[int, _Ort] = {}


def _ort(model: Any) -> _Ort:
    return _ORT.setdefault(id(model), _Ort(model))


def path_ort_fp32(model: Any, _: Any) -> Callable:
    o = _ort(model)
    return o.session(o.fused())


def path_ort_int8(model: Any, _: Any) -> Callable:
    o = _ort(model)
    return o.session(o.quantised("int8"))


def path_ort_int8_pc(model: Any, _: Any) -> Callable:
    o = _ort(model)
    nodes = o.weight_matmuls(ffn_only=False)
    return o.session(o.quantised("int8-pc", per_channel=True, op_types_to_quantize=["MatMul"],
                                 nodes_to_quantize=nodes))  # fmt: skip


def path_ort_int8_pc_noffn2(model: Any, _: Any) -> Callable:
    o = _ort(model)
    nodes = [n for n in o.weight_matmuls(ffn_only=False) if not _ffn_down(n)]
    return o.session(o.quantised("int8-pc-noffn2", per_channel=True, op_types_to_quantize=["MatMul"],
                                 nodes_to_quantize=nodes))  # fmt: skip


def _ffn_down(node: str) -> bool:
    return node.endswith("/output/dense/MatMul") and "/attention/" not in node


def path_ort_int8_pc_ffn(model: Any, _: Any) -> Callable:
    o = _ort(model)
    nodes = o.weight_matmuls(ffn_only=True)
    return o.session(o.quantised("int8-pc-ffn", per_channel=True, op_types_to_quantize=["MatMul"],
                                 nodes_to_quantize=nodes))  # fmt: skip


PATHS: dict[str, Callable[[Any, Any], Callable]] = {
    "fp32": path_fp32, "bf16": path_bf16, "eager": path_eager, "t1": path_t1, "compile": path_compile,
    "int8-x86": path_int8_x86, "int8-fbgemm": path_int8_fbgemm, "int8-x86-ffn": path_int8_x86_ffn,
    "int8-x86-pc": path_int8_x86_pc, "ort-fp32": path_ort_fp32, "ort-int8": path_ort_int8,
    "ort-int8-pc": path_ort_int8_pc, "ort-int8-pc-noffn2": path_ort_int8_pc_noffn2,
    "ort-int8-pc-ffn": path_ort_int8_pc_ffn,
}  # fmt: skip


def _peak_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=4, help="blocks of texts taken along the length order")
    ap.add_argument("--slice-size", type=int, default=128, help="texts per block")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64, help="kmq's batch size for the paths (default 64)")
    ap.add_argument("--paths", default=",".join(DEFAULT_PATHS), help=f"comma-separated, of {list(PATHS)}")
    ap.add_argument("--batch-sizes", default="", help="fp32 sweep over these batch sizes, e.g. 16,32,64,128")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    import torch

    from kmq.embed.sentence import SentenceTransformerEmbedder

    names = [p for p in args.paths.split(",") if p]
    unknown = [p for p in names if p not in PATHS]
    if unknown:
        ap.error(f"unknown paths {unknown}; known: {list(PATHS)}")
    if "fp32" not in names:
        names.insert(0, "fp32")
    emb = SentenceTransformerEmbedder("minilm", precision="fp32", backend="torch")
    blocks = sample_blocks(args.slices, args.slice_size)
    batches, kmq_vecs = kmq_batches(emb, blocks, args.batch_size)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["input_ids"].numel() for b in batches)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {len(blocks)} x {len(blocks[0])} texts, "
          f"{len(kmq_vecs)} windows, {tokens} tokens ({padded} padded) in {len(batches)} batches of "
          f"{args.batch_size}", flush=True)  # fmt: skip

    work: dict[str, tuple[Callable, list[dict]]] = {}
    for name in names:
        t0 = time.perf_counter()
        work[name] = (PATHS[name](emb.model, batches), batches)
        print(f"  set up {name} in {time.perf_counter() - t0:.1f} s", flush=True)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s]
    for size in sizes:
        sized, _ = kmq_batches(emb, blocks, size)
        work[f"fp32-b{size}"] = (_st_forward(emb.model), sized)
    emb.batch_size = args.batch_size

    # every path once untimed (allocator and oneDNN primitive caches warm), then the rounds
    ref: dict[str, np.ndarray] = {}
    for name, (fn, bs) in work.items():
        ref[name] = np.concatenate([fn(b) for b in bs])
        print(f"  warm {name}: peak RSS {_peak_gib():.2f} GiB", flush=True)
    base = ref["fp32"]
    if not np.array_equal(base, kmq_vecs):
        print(f"  note: fp32 path vs kmq's own forward: max |diff| {np.abs(base - kmq_vecs).max():.2e}")

    times: dict[str, list[tuple[float, float]]] = {name: [] for name in work}
    order = list(work)
    for r in range(args.rounds):
        rot = order[r % len(order) :] + order[: r % len(order)]
        for name in rot:
            fn, bs = work[name]
            c0, w0 = time.process_time(), time.perf_counter()
            for b in bs:
                fn(b)
            times[name].append((time.process_time() - c0, time.perf_counter() - w0))
        print(f"  round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", flush=True)

    # kmq sorts the windows by length alone (stable): every batch size concatenates them in the same order
    rows = []
    cpu0 = min(c for c, _ in times["fp32"])
    print(f"\n{'path':<16} {'CPU best':>9} {'CPU med':>8} {'wall best':>9} {'wall med':>8} {'vs fp32':>8} "
          f"{'cos min':>10} {'cos p5':>10} {'cos mean':>10}")  # fmt: skip
    for name in work:
        cpu = [c for c, _ in times[name]]
        wall = [w for _, w in times[name]]
        cos = cosines(ref[name], base)
        row = {"path": name, "cpu_best": min(cpu), "cpu_median": statistics.median(cpu), "wall_best": min(wall),
               "wall_median": statistics.median(wall), "ratio_cpu": cpu0 / min(cpu), "cos_min": float(cos.min()),
               "cos_p5": float(np.percentile(cos, 5)), "cos_mean": float(cos.mean())}  # fmt: skip
        rows.append(row)
        print(f"{name:<16} {row['cpu_best']:>9.2f} {row['cpu_median']:>8.2f} {row['wall_best']:>9.2f} "
              f"{row['wall_median']:>8.2f} {row['ratio_cpu']:>7.2f}x {row['cos_min']:>10.7f} "
              f"{row['cos_p5']:>10.7f} {row['cos_mean']:>10.7f}")  # fmt: skip
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        meta = {"texts": sum(map(len, blocks)), "windows": int(len(kmq_vecs)), "tokens": tokens, "padded": padded,
                "batch_size": args.batch_size, "rounds": args.rounds, "torch": torch.__version__}  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
