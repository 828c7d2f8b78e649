"""The fused CPU kernel of the cells: minGRU / minLSTM coefficients and the step recurrence in one pass.

Why: at the cpu profile (batch 64, K = 20, width 64) the cells' PyTorch path is about twenty elementwise
operator calls per layer and direction (sigmoids, maximum, the products of the chain rule, the scan's
``addcmul`` per time step), each a pass over memory with its own dispatch; the C++ kernel
(``csrc/fused_cells.cpp``) computes the same values in one loop forward and one backward
(BENCHMARKS.md, "Fused cell kernel"). It reproduces the PyTorch path's operations in the same order
(the file's header lists them), so where both vectorise the same elements (hidden widths that are a
multiple of 32) the states and gradients are the same to the bit as ``chunked_scan`` at chunk 1
(``tests/test_fused.py``); at chunk sizes above 1 (small batches) the PyTorch path groups the recurrence
differently and the two differ in the last bits, the kernel being the plain step recurrence.

It is built with PyTorch's C++ extension loader on first use (about 30 s, once per machine and torch
version: ``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) and needs a C++ compiler, ninja
and an x86-64 CPU with AVX2 and FMA. Where any of these is missing, or with ``RL_MINRNN_FUSED=0``, the
cells use the PyTorch path (``available()`` says why, and a warning says it once); the kernel only runs
for float32 CPU tensors outside ``torch.compile`` (``applies``), with or without gradients.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).resolve().parent / "csrc" / "fused_cells.cpp"
EXTENSION_NAME = "rl_minrnn_fused_cells"
FLAGS = ["-O3", "-mavx2", "-mfma", "-ffp-contract=off"]  # no contraction beyond the fma the code writes
DISABLE_ENV = "RL_MINRNN_FUSED"

_extension = None
_unavailable: str | None = None


def _load():
    """The compiled extension, or None with ``_unavailable`` set to the reason."""
    global _extension, _unavailable
    if _extension is not None or _unavailable is not None:
        return _extension
    if os.environ.get(DISABLE_ENV, "1") == "0":
        _unavailable = f"{DISABLE_ENV}=0"
        return None
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        _unavailable = f"the CPU has no AVX2 (torch reports {torch.backends.cpu.get_cpu_capability()})"
        return None
    if shutil.which("ninja") is None and (Path(sys.executable).parent / "ninja").exists():
        # pip's ninja sits beside this interpreter, which PATH lacks when the venv is not activated
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        from torch.utils import cpp_extension

        _say_if_compiling(cpp_extension)
        _extension = cpp_extension.load(EXTENSION_NAME, [str(SOURCE)], extra_cflags=FLAGS, verbose=False)
    except Exception as error:  # no compiler, no ninja, a failed build: the PyTorch path still works
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = "; ".join([line for line in lines if "error" in line.lower()][:3] or lines[-1:])[:400]
        _unavailable = f"it could not be built ({type(error).__name__}: {reason})"
        warnings.warn(f"rl_minrnn: the fused cell kernel is not used, {_unavailable}; the cells run their "
                      f"PyTorch path (the same values to float rounding, slower on CPU). Set {DISABLE_ENV}=0 to "
                      "skip the attempt.", RuntimeWarning, stacklevel=3)
    return _extension


def _say_if_compiling(cpp_extension) -> None:
    """One line before a first build (the loader itself is silent for its ~30 s). It reads the loader's
    build folder through a private helper, so if that helper changes the line is skipped, not the kernel."""
    try:
        build_dir = Path(cpp_extension._get_build_directory(EXTENSION_NAME, verbose=False))
    except Exception:  # noqa: BLE001 - only the message depends on it
        return
    if not any(build_dir.glob(f"{EXTENSION_NAME}*.so")):
        print(f"rl_minrnn: compiling the fused minGRU/minLSTM CPU kernel into {build_dir} "
              "(once per machine, about 30 s)", file=sys.stderr, flush=True)


def available() -> tuple[bool, str]:
    """Whether the kernel can run here (building it if needed), and if not, why."""
    return _load() is not None, _unavailable or "available"


def applies(k: torch.Tensor) -> bool:
    """Whether the fused kernel should compute these pre-activations: float32 on the CPU, outside
    ``torch.compile`` (which cannot trace it), with the extension built."""
    return (k.device.type == "cpu" and k.dtype == torch.float32 and not torch.compiler.is_compiling()
            and _load() is not None)


class _FusedCell(torch.autograd.Function):
    """``k (B, T, P*H)``, ``h0 (B, H)`` or None -> every state ``(B, T, H)``; the backward returns
    ``dL/dk`` and ``dL/dh0`` from the slots the forward saved (``csrc/fused_cells.cpp``)."""

    @staticmethod
    def forward(ctx, k, h0, cell):
        states, slots = getattr(_extension, f"{cell}_forward")(k, h0, True)
        ctx.cell, ctx.has_h0 = cell, h0 is not None
        ctx.save_for_backward(slots, states, h0 if h0 is not None else states.new_zeros(()))
        return states

    @staticmethod
    def backward(ctx, grad_states):
        slots, states, h0 = ctx.saved_tensors
        grad_k, grad_h0 = getattr(_extension, f"{ctx.cell}_backward")(
            grad_states.contiguous(), slots, states, h0 if ctx.has_h0 else None)
        return grad_k, grad_h0 if ctx.has_h0 else None, None


def fused_states(cell: str, k: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Every state of a ``cell`` (``"mingru"`` or ``"minlstm"``) layer from its gate pre-activations ``k``;
    call only where :func:`applies` holds. Without gradients nothing is saved for a backward pass."""
    k, h0 = k.contiguous(), None if h0 is None else h0.to(k.dtype).contiguous()
    if torch.is_grad_enabled() and (k.requires_grad or (h0 is not None and h0.requires_grad)):
        return _FusedCell.apply(k, h0, cell)
    return getattr(_extension, f"{cell}_forward")(k, h0, False)[0]
