"""minGRU and minLSTM ("Were RNNs All We Needed?", Feng et al. 2024), log-space form.

Both cells are ``h_t = a_t * h_{t-1} + b_t`` with ``a_t, b_t`` from ``x_t`` alone:

- minGRU: ``z = sigmoid(k_z)``, ``h~ = g(k_h)``, ``h_t = (1 - z) h_{t-1} + z h~``
  so ``a = 1 - z = sigmoid(-k_z)`` and ``b = z * g(k_h)``.
- minLSTM: ``f = sigmoid(k_f)``, ``i = sigmoid(k_i)``, ``f' = f / (f + i)``, ``i' = i / (f + i)``,
  ``h_t = f' h_{t-1} + i' g(k_h)``. With ``d = softplus(-k_f) - softplus(-k_i) = log(i / f)``:
  ``f' = sigmoid(-d)``, ``i' = sigmoid(d)``.

Logarithms of sigmoids use ``logsigmoid`` (``log sigmoid(x) = -softplus(-x)``), which is exact, where
``F.softplus`` switches to ``x`` above 20 and is off by up to ``exp(-20)``, about 2e-9.

``g(x) = x + 0.5`` for ``x >= 0`` and ``sigmoid(x)`` otherwise keeps the candidate, hence the state,
positive so that its logarithm exists (``log_g``) for the log-space scan. Gates are computed as
``sigmoid(-k)`` rather than ``1 - sigmoid(k)``, which loses relative accuracy on small values.

Training computes the coefficients and their gradient in one autograd function per cell with the
derivatives written out (``_MinGRUCoefficients``, ``_MinLSTMCoefficients``): autograd's own backward of
the same expressions is about twenty elementwise calls, several on boolean masks (``where``, ``ge``),
which this CPU build runs an order of magnitude slower than float arithmetic. The forward values are the
same to the bit.

Parallel mode (``cell(x, h)``) and step mode (``cell.step(x_t, h)``) compute the same numbers; the
parallel mode's scan is chosen by ``scan=`` (``CELL_SCANS``): ``fused``, the default, computes the
coefficients and the step recurrence in one C++ kernel on the CPU (:mod:`rl_minrnn.fused`; the same
values as ``chunked`` at chunk 1, to the bit at widths that are multiples of 32) and is ``chunked`` wherever
that kernel does not run; the others are
:mod:`rl_minrnn.scan`'s. Reduced-precision inputs
(bfloat16, float16) are projected in their dtype and scanned in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ranges import Number, OptionError
from . import fused
from .scan import SCAN_MODES, chunked_scan, log_space_scan, sequential_scan

# How a cell's parallel mode runs the recurrence: the fused kernel (CPU, float32; else ``chunked``) or one
# of the scans.
CELL_SCANS = ("fused", *SCAN_MODES)

# The cells' own options (``model.expansion``), checked by the config before a cell is built.
CELL_OPTIONS = {"expansion": Number(0, 64, low_open=True, why="the hidden width is int(width * expansion)")}


def hidden_width(dim: int, expansion: float) -> int:
    """``int(dim * expansion)``, the hidden width, or ``OptionError`` when it is below 1."""
    CELL_OPTIONS["expansion"].check(expansion, "expansion")
    hidden = int(dim * expansion)
    if dim < 1 or hidden < 1:
        raise OptionError(f"int(width * expansion) must be >= 1, got width={dim}, expansion={expansion}")
    return hidden


def g(x: torch.Tensor) -> torch.Tensor:
    """Positive candidate activation: ``x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` otherwise.

    Written ``max(x + 0.5, sigmoid(x))``, the same function (``x + 0.5 >= sigmoid(x)`` exactly when
    ``x >= 0``: sigmoid lies below its tangent ``0.5 + x / 4`` for ``x > 0`` and above it for ``x < 0``) and
    the same floats, without a boolean mask."""
    return torch.maximum(x + 0.5, torch.sigmoid(x))


def _g_derivative(x: torch.Tensor, sigmoid_x: torch.Tensor) -> torch.Tensor:
    """``g'(x)``: 1 for ``x >= 0``, ``sigmoid'(x)`` (at most 1/4) otherwise, as ``max(1[x >= 0], s (1 - s))``;
    the indicator is written straight into a float tensor (``ge`` with a float ``out``)."""
    step = torch.ge(x, 0, out=torch.empty_like(x))
    return torch.maximum(step, sigmoid_x * (1 - sigmoid_x))


def _needs_grad(k: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and k.requires_grad


class _MinGRUCoefficients(torch.autograd.Function):
    """``a = sigmoid(-k_z)``, ``b = sigmoid(k_z) g(k_h)``. With ``z = sigmoid(k_z)``: ``da/dk_z = -a z`` and
    ``db/dk_z = a z g``, so ``dk_z = a z (db g - da)``; ``dk_h = db z g'(k_h)``."""

    @staticmethod
    def forward(ctx, k):
        k_z, k_h = k.chunk(2, dim=-1)
        z, a, s = torch.sigmoid(k_z), torch.sigmoid(-k_z), torch.sigmoid(k_h)
        candidate = torch.maximum(k_h + 0.5, s)
        ctx.save_for_backward(k_h, a, z, s, candidate)
        return a, z * candidate

    @staticmethod
    def backward(ctx, grad_a, grad_b):
        k_h, a, z, s, candidate = ctx.saved_tensors
        grad = torch.empty(*k_h.shape[:-1], 2 * k_h.shape[-1], dtype=k_h.dtype, device=k_h.device)
        grad_z, grad_h = grad.chunk(2, dim=-1)
        torch.mul((grad_b * candidate).sub_(grad_a), a * z, out=grad_z)
        torch.mul(grad_b * z, _g_derivative(k_h, s), out=grad_h)
        return grad


class _MinLSTMCoefficients(torch.autograd.Function):
    """``d = logsigmoid(k_i) - logsigmoid(k_f)``, ``a = sigmoid(-d)``, ``b = i' g(k_h)`` with ``i' = sigmoid(d)``:
    ``dL/dd = a i' (db g - da)``, ``dk_i = dL/dd sigmoid(-k_i)``, ``dk_f = -dL/dd sigmoid(-k_f)``,
    ``dk_h = db i' g'(k_h)``."""

    @staticmethod
    def forward(ctx, k):
        k_f, k_i, k_h = k.chunk(3, dim=-1)
        d = F.logsigmoid(k_i) - F.logsigmoid(k_f)
        a, i, s = torch.sigmoid(-d), torch.sigmoid(d), torch.sigmoid(k_h)
        candidate = torch.maximum(k_h + 0.5, s)
        ctx.save_for_backward(k_f, k_i, k_h, a, i, s, candidate)
        return a, i * candidate

    @staticmethod
    def backward(ctx, grad_a, grad_b):
        k_f, k_i, k_h, a, i, s, candidate = ctx.saved_tensors
        grad = torch.empty(*k_h.shape[:-1], 3 * k_h.shape[-1], dtype=k_h.dtype, device=k_h.device)
        grad_f, grad_i, grad_h = grad.chunk(3, dim=-1)
        grad_d = (grad_b * candidate).sub_(grad_a).mul_(a * i)
        torch.mul(grad_d, torch.sigmoid(-k_i), out=grad_i)
        torch.mul(grad_d, torch.sigmoid(-k_f), out=grad_f).neg_()
        torch.mul(grad_b * i, _g_derivative(k_h, s), out=grad_h)
        return grad


def log_g(x: torch.Tensor) -> torch.Tensor:
    """``log(g(x))``: ``log(relu(x) + 0.5)`` for ``x >= 0``, ``-softplus(-x) = logsigmoid(x)`` otherwise."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), F.logsigmoid(x))


def token_rows(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """The ``n`` token-major blocks of rows of ``x`` ``(n * B, ...)``, by slicing: ``chunk``/``split`` would
    make torch.export fix the batch size."""
    if n == 1:
        return [x]
    batch = x.shape[0] // n
    return [x[j * batch:(j + 1) * batch] for j in range(n)]


class _MinRNNCell(nn.Module):
    """Shared machinery: one input projection to the gate/candidate pre-activations, the scan, and an
    optional projection of the hidden state (width ``int(dim * expansion)``) back to ``dim``."""

    num_projections: int  # how many hidden-width pre-activations the cell needs

    name: str  # the cell's name in ``CELLS`` and in the fused kernel

    def __init__(self, dim: int, expansion: float = 1.0, scan: str = "fused", chunk_size: int | None = None):
        super().__init__()
        if scan not in CELL_SCANS:
            raise ValueError(f"scan must be one of {CELL_SCANS}, got {scan!r}")
        hidden = hidden_width(dim, expansion)
        self.dim, self.hidden_dim = dim, hidden
        self.scan, self.chunk_size = scan, chunk_size
        self.to_gates = nn.Linear(dim, self.num_projections * hidden)
        self.to_out = nn.Linear(hidden, dim, bias=False) if hidden != dim else nn.Identity()

    @classmethod
    def parameter_count(cls, dim: int, expansion: float = 1.0) -> int:
        """Closed form: ``n * dim * H + n * H`` (input projection with bias) ``+ H * dim`` when ``H != dim``,
        with ``H = int(dim * expansion)`` and ``n`` = 2 (minGRU) or 3 (minLSTM)."""
        hidden = int(dim * expansion)
        count = cls.num_projections * (dim * hidden + hidden)
        return count + (hidden * dim if hidden != dim else 0)

    # Subclasses give the recurrence coefficients from the pre-activations (float32 or float64).
    def coefficients(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def log_coefficients(self, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _preactivations(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__} expects inputs of width {self.dim}, got {tuple(x.shape)}")
        k = self.to_gates(x)
        return k.float() if k.dtype in (torch.float16, torch.bfloat16) else k

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, T, dim)``, ``h (B, hidden)`` or None -> ``y (B, T, dim)``, state after the last step."""
        if x.dim() != 3:
            raise ValueError(f"{type(self).__name__} expects (batch, time, dim) inputs, got {tuple(x.shape)}")
        k = self._preactivations(x)
        h0 = None if h is None else h.to(k.dtype)
        if self.scan == "fused" and fused.applies(k):
            states = fused.fused_states(self.name, k, h0)
        elif self.scan == "log":
            log_a, log_b = self.log_coefficients(k)
            states = log_space_scan(log_a, log_b, h0)
        else:
            a, b = self.coefficients(k)
            states = sequential_scan(a, b, h0) if self.scan == "sequential" else chunked_scan(a, b, h0, self.chunk_size)
        return self.to_out(states.to(x.dtype)), states[:, -1]

    def step(self, x_t: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step, O(1): ``x_t (B, dim)`` -> ``y_t (B, dim)``, new state ``(B, hidden)``."""
        a, b = self.coefficients(self._preactivations(x_t))
        h = b if h is None else torch.addcmul(b, a, h.to(b.dtype))
        return self.to_out(h.to(x_t.dtype)), h

    def steps(self, x: torch.Tensor, h: torch.Tensor, n: int, keep_first: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``n`` consecutive steps of one batch at once: ``x (n * B, dim)`` token-major rows (step j is rows
        ``j*B:(j+1)*B``), ``h (B, hidden)`` -> the state after each step. One projection and one coefficient
        call for all ``n`` steps; only ``h = a * h + b`` runs step by step (at batch 1 a step costs about its
        number of operators, not its arithmetic). ``keep_first (B, 1)`` bool: where False the first step
        leaves the state as it was (a row with no such step)."""
        a, b = self.coefficients(self.to_gates(x))
        states = []
        for j, (a_j, b_j) in enumerate(zip(token_rows(a, n), token_rows(b, n))):
            h_next = torch.addcmul(b_j, a_j, h)
            if j == 0 and keep_first is not None:
                h_next = torch.where(keep_first, h_next, h)
            h = h_next
            states.append(h)
        return states

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden_dim={self.hidden_dim}, scan={self.scan!r}"


class MinGRU(_MinRNNCell):
    """minGRU: ``h_t = (1 - z_t) h_{t-1} + z_t g(h~_t)``, ``z_t = sigmoid(Linear_z(x_t))``.

    Parameters: ``2 * (dim * H + H)`` (+ ``H * dim`` when ``H != dim``); at expansion 1 exactly a third
    of ``nn.GRU(dim, dim)``'s ``6 * (dim^2 + dim)``.
    """

    name, num_projections = "mingru", 2

    def coefficients(self, k):
        if _needs_grad(k):
            return _MinGRUCoefficients.apply(k)
        k_z, k_h = k.chunk(2, dim=-1)
        return torch.sigmoid(-k_z), torch.sigmoid(k_z) * g(k_h)

    def log_coefficients(self, k):
        k_z, k_h = k.chunk(2, dim=-1)
        return F.logsigmoid(-k_z), F.logsigmoid(k_z) + log_g(k_h)


class MinLSTM(_MinRNNCell):
    """minLSTM: ``h_t = f'_t h_{t-1} + i'_t g(h~_t)`` with normalised forget/input gates
    ``f' = f / (f + i)``, ``i' = i / (f + i)``.

    Parameters: ``3 * (dim * H + H)`` (+ ``H * dim`` when ``H != dim``); at expansion 1 exactly 3/8 of
    ``nn.LSTM(dim, dim)``'s ``8 * (dim^2 + dim)``.
    """

    name, num_projections = "minlstm", 3

    @staticmethod
    def _log_ratio(k_f, k_i):
        return F.logsigmoid(k_i) - F.logsigmoid(k_f)  # d = log(i / f) = softplus(-k_f) - softplus(-k_i)

    def coefficients(self, k):
        if _needs_grad(k):
            return _MinLSTMCoefficients.apply(k)
        k_f, k_i, k_h = k.chunk(3, dim=-1)
        d = self._log_ratio(k_f, k_i)
        return torch.sigmoid(-d), torch.sigmoid(d) * g(k_h)

    def log_coefficients(self, k):
        k_f, k_i, k_h = k.chunk(3, dim=-1)
        d = self._log_ratio(k_f, k_i)
        return F.logsigmoid(-d), F.logsigmoid(d) + log_g(k_h)


CELLS = {"mingru": MinGRU, "minlstm": MinLSTM}
