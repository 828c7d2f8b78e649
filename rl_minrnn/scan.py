"""The linear recurrence shared by minGRU and minLSTM, computed three ways.

Both cells reduce to ``h_t = a_t * h_{t-1} + b_t`` with ``a_t, b_t`` computed from ``x_t`` alone
(elementwise, ``a_t`` in (0, 1), ``b_t`` > 0), so a whole sequence can be processed at once.

- :func:`chunked_scan` (the default): exact, with an analytic backward pass (the adjoint recurrence is
  the same scan run backwards in time), so its loops build no autograd graph. The sequence is cut
  into chunks of ``C`` steps: one loop of ``C`` steps runs every chunk at once from a zero state
  (keeping each chunk's end state and product of ``a``), one loop of ``T / C`` steps carries the state
  from chunk to chunk, and a second loop of ``C`` steps writes the states from each chunk's start
  state: ``2C + T / C`` steps instead of ``T``, on tensors ``T / C`` times larger, with the step
  loop's arithmetic, so float32 keeps the step loop's accuracy. ``C = 1`` is a plain loop, one pass
  over memory, which wins on CPU for large states (:func:`default_chunk_size` says when).
- :func:`log_space_scan`: the paper's Heinsen scan, ``log h = a* + logcumsumexp(log b - a*)`` with
  ``a* = cumsum(log a)``. Kept for comparison: in float32 ``a*`` reaches about -1100 at T = 1500 and the
  subtraction cancels (2.5e-4 relative error there, growing with T), and ``logcumsumexp`` is slow on CPU.
- :func:`sequential_scan`: the step-by-step recurrence, the reference the others are tested against.

All take ``a, b`` shaped ``(B, T, D)`` and an optional initial state ``h0`` ``(B, D)`` and return every
state ``(B, T, D)``.
"""

from __future__ import annotations

import math

import torch

SCAN_MODES = ("chunked", "log", "sequential")


def default_chunk_size(length: int, device: torch.device | str = "cpu", rows: int | None = None) -> int:
    """The chunk size used when none is given, chosen by measurement (``benchmarks/scan_speed.py``).

    ``rows`` is the number of elements one time step updates (batch x width). On GPUs every step is a
    kernel launch, so about sqrt(T) balances the in-chunk loops (2C launches) against the carry loop
    (T / C). On CPU a step over a large state (>= 4096 elements, e.g. batch 64 x width 128) is
    memory-bound and the fewest passes over memory win: chunk 1, a plain loop with the analytic backward.
    Smaller states are dominated by per-step overhead, so they chunk too (in a whole training step the
    difference is lost in the rest of the model: BENCHMARKS.md, "Scan").
    """
    if torch.device(device).type == "cpu" and (rows is None or rows >= 4096):
        return 1
    return max(1, math.ceil(math.sqrt(length)))


def sequential_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Reference: ``h_t = a_t * h_{t-1} + b_t`` one step at a time (differentiable by autograd)."""
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    out = []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        h = torch.addcmul(b_t, a_t, h)
        out.append(h)
    return torch.stack(out, dim=1)


def _scan_kernel(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, chunk: int, reverse: bool = False
) -> torch.Tensor:
    """The chunked scan, without autograd, on the (B, T, D) layout as it is (no transposed copies).

    Forward: ``out_t = a_t * out_{t-1} + b_t``. ``reverse=True`` runs time backwards:
    ``out_t = a_t * out_{t+1} + b_t`` (the backward pass). The first ``N * C`` steps (the last, in
    reverse) are done in chunks, the remaining ``T mod C`` one by one.
    """
    batch, length, dim = a.shape
    s = torch.zeros_like(b[:, 0]) if h0 is None else h0.to(b.dtype)
    if chunk == 1:  # plain loop: one read of a and b, one write of out (fastest on CPU, memory-bound)
        return _plain_loop(a, b, s, reverse)
    out = torch.empty_like(b)
    chunk = min(chunk, length)
    num_chunks = length // chunk
    body = num_chunks * chunk
    lo = length - body if reverse else 0
    a4 = a[:, lo:lo + body].unflatten(1, (num_chunks, chunk))  # (B, N, C, D) views
    b4 = b[:, lo:lo + body].unflatten(1, (num_chunks, chunk))
    out4 = out[:, lo:lo + body].unflatten(1, (num_chunks, chunk))
    steps = range(chunk - 1, -1, -1) if reverse else range(chunk)
    # Pass 1: every chunk at once from a zero state; keep only each chunk's end state and decay.
    h, p = b4[:, :, steps[0]], a4[:, :, steps[0]]
    for c in steps[1:]:
        h = torch.addcmul(b4[:, :, c], a4[:, :, c], h)
        p = p * a4[:, :, c]
    # Carry: the state entering each chunk.
    starts = torch.empty_like(h)  # (B, N, D)
    for n in range(num_chunks - 1, -1, -1) if reverse else range(num_chunks):
        starts[:, n] = s
        s = torch.addcmul(h[:, n], p[:, n], s)
    # Pass 2: the real states, every chunk at once from its start state.
    h = starts
    for c in steps:
        h = torch.addcmul(b4[:, :, c], a4[:, :, c], h, out=out4[:, :, c])
    # The steps that did not fill a whole chunk.
    for t in range(lo - 1, -1, -1) if reverse else range(body, length):
        s = torch.addcmul(b[:, t], a[:, t], s, out=out[:, t])
    return out


def _plain_loop(a: torch.Tensor, b: torch.Tensor, s: torch.Tensor, reverse: bool) -> torch.Tensor:
    """The step loop with as few operator calls as it can have, the same ``addcmul`` per step. At short T
    (K = 20) a step is a few microseconds of arithmetic, so indexing ``a[:, t]``, ``b[:, t]`` and
    ``out[:, t]`` (three calls a step) cost more than the step: ``unbind`` makes all the slices in one
    call each (faster at every size measured, from batch x time x width 64 x 20 x 64 to 2 x 1000 x 128;
    gathering the states with one ``stack`` instead of writing them in place was not)."""
    order = range(a.shape[1] - 1, -1, -1) if reverse else range(a.shape[1])
    out = torch.empty_like(b)
    a_t, b_t, out_t = a.unbind(1), b.unbind(1), out.unbind(1)
    for t in order:
        s = torch.addcmul(b_t[t], a_t[t], s, out=out_t[t])
    return out


class _ChunkedScan(torch.autograd.Function):
    """Forward: chunked scan. Backward: the adjoint recurrence ``g_t = dh_t + a_{t+1} g_{t+1}`` is the
    same linear scan run backwards in time, so it reuses the forward kernel; then
    ``da_t = g_t * h_{t-1}``, ``db_t = g_t``, ``dh0 = a_0 * g_0``."""

    @staticmethod
    def forward(ctx, a, b, h0, chunk):
        with torch.no_grad():
            out = _scan_kernel(a, b, h0, chunk)
        ctx.chunk = chunk
        ctx.has_h0 = h0 is not None
        ctx.save_for_backward(a, out, h0 if h0 is not None else out.new_zeros(()))
        return out

    @staticmethod
    def backward(ctx, grad_out):
        a, out, h0 = ctx.saved_tensors
        with torch.no_grad():
            a_next = torch.cat([a[:, 1:], torch.zeros_like(a[:, :1])], dim=1)
            g = _scan_kernel(a_next, grad_out.contiguous(), None, ctx.chunk, reverse=True)
            grad_a = torch.empty_like(g)
            torch.mul(g[:, 1:], out[:, :-1], out=grad_a[:, 1:])
            if ctx.has_h0:
                torch.mul(g[:, 0], h0, out=grad_a[:, 0])
                grad_h0 = a[:, 0] * g[:, 0]
            else:
                grad_a[:, 0] = 0
                grad_h0 = None
        return grad_a, g, grad_h0, None


def chunked_scan(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, chunk: int | None = None
) -> torch.Tensor:
    """Exact parallel scan of ``h_t = a_t * h_{t-1} + b_t`` (module docstring explains the method)."""
    _check_shapes(a, b, h0)
    chunk = default_chunk_size(a.shape[1], a.device, a.shape[0] * a.shape[2]) if chunk is None else int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if h0 is not None:
        h0 = h0.to(b.dtype).contiguous()
    return _ChunkedScan.apply(a.contiguous(), b.contiguous(), h0, chunk)


def log_space_scan(
    log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None = None
) -> torch.Tensor:
    """Heinsen scan in log space: ``h_t = exp(a*_t + logcumsumexp(log b - a*)_t) + exp(a*_t) h0``.

    ``b`` must be positive (it is, with the ``g`` candidate). The initial state is added separately
    rather than prepended as ``log h0``, so it may have any sign (a zero or learned state included).
    """
    _check_shapes(log_a, log_b, h0)
    a_star = torch.cumsum(log_a, dim=1)
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, dim=1))
    if h0 is not None:
        h = h + torch.exp(a_star) * h0.to(h.dtype).unsqueeze(1)
    return h


def _check_shapes(a, b, h0):
    if a.dim() != 3 or a.shape != b.shape:
        raise ValueError(f"a and b must both be (batch, time, dim); got {tuple(a.shape)} and {tuple(b.shape)}")
    if h0 is not None and h0.shape != (a.shape[0], a.shape[2]):
        raise ValueError(f"h0 must be (batch, dim) = {(a.shape[0], a.shape[2])}, got {tuple(h0.shape)}")
