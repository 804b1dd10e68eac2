"""What the machine's processors can do fast, and the encoder precision and backend ``auto`` picks from it.

bf16 pays on a CPU only where the silicon multiplies bf16 natively (AVX512-BF16, or AMX tiles): there the
bundled MiniLM ran 2x faster than fp32 (issue 15: 306 vs 152 texts/s, cosine >= 0.9999). Elsewhere (AVX2,
plain AVX-512) torch emulates bf16 and it is several times slower than fp32, so ``auto`` keeps fp32. On a
GPU ``auto`` picks bf16 where the device supports it, else fp16.

The backend: on an AVX2-only CPU (AMD EPYC family 25) ONNX Runtime's fused BERT graph ran the bundled MiniLM
at the same vectors but no faster than torch on a quiet machine (1.00x; BENCHMARKS.md, "MiniLM on an AVX2 CPU:
backends"); on an AVX-512 CPU with native bf16 (family 26) it ran 2.2x torch fp32, the speed of torch bf16, which
``auto`` picks there (BENCHMARKS.md, "MiniLM forward paths and the main job on this session's CPU"). So ``auto``
keeps torch, and takes ONNX Runtime only for ``int8``, which runs only there.

Everything here is cheap and imports torch only when asked about a GPU.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

__all__ = ["BF16_FLAGS", "cpu_flags", "has_native_bf16", "resolve_backend", "resolve_precision"]

#: /proc/cpuinfo flags that mean native bf16 arithmetic (AVX512-BF16 dot products, AMX bf16 tiles)
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The feature flags of the first processor in ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    return flags_of(text)


def flags_of(cpuinfo: str) -> frozenset[str]:
    """The ``flags`` (x86) or ``Features`` (ARM) line of the first processor in a ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU multiplies bf16 natively (AVX512-BF16, AMX-BF16, or ARM's ``bf16`` feature)."""
    flags = cpu_flags() if flags is None else flags
    return bool(flags & BF16_FLAGS) or "bf16" in flags


def resolve_precision(precision: str, device: str = "cpu", *, flags: frozenset[str] | None = None) -> str:
    """The precision a model runs in: ``precision`` itself, or for ``"auto"`` the fastest accurate one.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16"}
        Anything but ``"auto"`` is returned unchanged (the caller validates it).
    device : str, default "cpu"
        A torch device string: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...
    flags : frozenset of str, optional
        CPU flags to decide from (default: :func:`cpu_flags`); tests pass their own.

    Returns
    -------
    precision : str
        ``"bf16"`` on a CPU with native bf16, ``"fp32"`` on other CPUs; on CUDA ``"bf16"`` where
        ``torch.cuda.is_bf16_supported()``, else ``"fp16"``; ``"fp16"`` on MPS; ``"fp32"`` on other devices.

    Examples
    --------
    >>> resolve_precision("auto", "cpu", flags=frozenset({"avx2", "fma"}))
    'fp32'
    >>> resolve_precision("auto", "cpu", flags=frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))
    'bf16'
    >>> resolve_precision("fp32", "cuda")
    'fp32'
    """
    if precision != "auto":
        return precision
    kind = str(device).split(":", 1)[0]
    if kind == "cpu":
        return "bf16" if has_native_bf16(flags) else "fp32"
    if kind == "cuda":
        import torch

        index = str(device).partition(":")[2]
        with torch.cuda.device(int(index) if index else torch.cuda.current_device()):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if kind == "mps":
        return "fp16"
    return "fp32"


def resolve_backend(
    backend: str, precision: str, device: str = "cpu", *, onnx: bool, flags: frozenset[str] | None = None
) -> str:
    """What runs an encoder's network: ``backend`` itself, or for ``"auto"`` the faster one measured here.

    Parameters
    ----------
    backend : {"auto", "torch", "onnx"}
        Anything but ``"auto"`` is returned unchanged (the caller validates it).
    precision : str
        The resolved precision (:func:`resolve_precision`).
    device : str, default "cpu"
    onnx : bool
        Whether the ONNX backend can run this model here (onnxruntime installed, a model it takes).
    flags : frozenset of str, optional
        CPU flags to decide from (default: :func:`cpu_flags`).

    Returns
    -------
    backend : str
        ``"onnx"`` for ``int8`` (it runs only there), else ``"torch"``: fp32 ONNX Runtime was measured no
        faster than torch on an AVX2 CPU, and no faster than torch bf16 on a bf16 CPU (``onnx`` and ``flags``
        are the inputs a CPU where it wins would use).

    Examples
    --------
    >>> resolve_backend("auto", "fp32", "cpu", onnx=True, flags=frozenset({"avx2", "fma"}))
    'torch'
    >>> resolve_backend("auto", "int8", "cpu", onnx=True)
    'onnx'
    >>> resolve_backend("onnx", "fp32", "cpu", onnx=True)
    'onnx'
    """
    if backend != "auto":
        return backend
    return "onnx" if precision == "int8" else "torch"
