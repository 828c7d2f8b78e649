"""The minGRU / minLSTM library: parallel == step-by-step, chunked == whole, gradients, precision."""

import copy

import pytest
import torch
from torch import nn

from rl_minrnn import (
    MinGRU,
    MinLSTM,
    MinRNNBlock,
    MinRNNStack,
    chunked_scan,
    log_space_scan,
    mask_state,
    sequential_scan,
)

LENGTHS = [1, 2, 3, 17, 64, 1000, 4096]
# the stack over 4096 steps takes seconds: in the full run only
STACK_LENGTHS = [*LENGTHS[:-1], pytest.param(4096, marks=pytest.mark.slow)]


def rel_err(x, ref):
    """max |x - ref| / max |ref|: relative to the tensor's scale, so zeros in ref do not blow it up."""
    return ((x.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-300)).item()


def step_through(module, x, state=None):
    """Run ``module.step`` over the time axis; returns the stacked outputs and the final state."""
    ys = []
    for x_t in x.unbind(1):
        y_t, state = module.step(x_t, state)
        ys.append(y_t)
    return torch.stack(ys, 1), state


def flat(state):
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for s in state if s is not None for t in flat(s)]


# ---------------------------------------------------------------- scan
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("with_h0", [False, True])
def test_scans_match_sequential_float64(length, with_h0):
    gen = torch.Generator().manual_seed(length)
    a = torch.rand(2, length, 3, generator=gen, dtype=torch.float64)
    b = torch.rand(2, length, 3, generator=gen, dtype=torch.float64) + 0.1  # positive, as the cells make it
    h0 = torch.randn(2, 3, generator=gen, dtype=torch.float64) if with_h0 else None
    ref = sequential_scan(a, b, h0)
    for chunk in (None, 1, 2, 7, 64, 5000):
        assert rel_err(chunked_scan(a, b, h0, chunk), ref) <= 1e-10, chunk
    assert rel_err(log_space_scan(a.log(), b.log(), h0), ref) <= 1e-10


def test_sequential_scan_against_brute_force_sum():
    """h_t = sum_s (prod_{s<r<=t} a_r) b_s + (prod_{r<=t} a_r) h0, written out term by term."""
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(1, 6, 2, generator=gen, dtype=torch.float64)
    b = torch.randn(1, 6, 2, generator=gen, dtype=torch.float64)
    h0 = torch.randn(1, 2, generator=gen, dtype=torch.float64)
    for t in range(6):
        expected = a[0, : t + 1].prod(0) * h0[0]
        for s in range(t + 1):
            expected = expected + a[0, s + 1 : t + 1].prod(0) * b[0, s]
        for out in (sequential_scan(a, b, h0), chunked_scan(a, b, h0, chunk=4)):
            assert torch.allclose(out[0, t], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
def test_chunked_scan_gradcheck(chunk):
    gen = torch.Generator().manual_seed(chunk)
    a = torch.rand(2, 7, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 7, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, h: chunked_scan(a, b, h, chunk=chunk), (a, b, h0))
    assert torch.autograd.gradcheck(lambda a, b: chunked_scan(a, b, chunk=chunk), (a, b))


def test_scan_shape_errors_are_clear():
    with pytest.raises(ValueError, match="batch, time, dim"):
        chunked_scan(torch.rand(2, 3), torch.rand(2, 3))
    with pytest.raises(ValueError, match="h0 must be"):
        chunked_scan(torch.rand(2, 3, 4), torch.rand(2, 3, 4), torch.rand(2, 5))


# ---------------------------------------------------------------- cells
CELL_TYPES = [MinGRU, MinLSTM]


def make_cell(cls, dim=4, expansion=1.0, scan="chunked", seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return cls(dim, expansion=expansion, scan=scan).to(dtype)


@pytest.mark.parametrize("cls", CELL_TYPES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("with_h", [False, True])
def test_cell_step_equals_parallel(cls, length, with_h):
    cell = make_cell(cls, expansion=1.5)
    x = torch.randn(2, length, 4, dtype=torch.float64) * 2
    h = torch.rand(2, cell.hidden_dim, dtype=torch.float64) if with_h else None
    y_step, h_step = step_through(cell, x, h)
    for scan in ("chunked", "log", "sequential"):
        cell.scan = scan
        y, h_last = cell(x, h)
        assert rel_err(y, y_step) <= 1e-10, scan
        assert rel_err(h_last, h_step) <= 1e-10, scan


@pytest.mark.parametrize("cls", CELL_TYPES)
@pytest.mark.parametrize("scan", ["chunked", "log"])
def test_cell_chunks_continue_exactly(cls, scan):
    """A sequence split into chunks, each continuing from the last chunk's state, equals one pass
    (including chunks of more than one token continuing from a state: a known minLSTM pitfall)."""
    cell = make_cell(cls, scan=scan)
    x = torch.randn(3, 100, 4, dtype=torch.float64)
    y_whole, h_whole = cell(x)
    ys, h = [], None
    for piece in x.split([1, 5, 17, 2, 40, 35], dim=1):
        y, h = cell(piece, h)
        ys.append(y)
    assert rel_err(torch.cat(ys, 1), y_whole) <= 1e-10
    assert rel_err(h, h_whole) <= 1e-10


def test_coefficients_match_the_definitions_float64():
    """Against the textbook formulas, including pre-activations beyond 20 where F.softplus switches to
    the identity and would be off by ~2e-9."""
    k = torch.tensor([-40.0, -25.0, -3.0, -0.5, 0.0, 0.7, 4.0, 22.0, 35.0], dtype=torch.float64)
    kz, kh = torch.meshgrid(k, k, indexing="ij")
    a, b = MinGRU(1).double().coefficients(torch.stack([kz.flatten(), kh.flatten()], -1))
    z = torch.sigmoid(kz.flatten())
    h_tilde = torch.where(kh.flatten() >= 0, kh.flatten() + 0.5, torch.sigmoid(kh.flatten()))
    torch.testing.assert_close(a[:, 0], torch.sigmoid(-kz.flatten()), rtol=1e-14, atol=0)
    torch.testing.assert_close(b[:, 0], z * h_tilde, rtol=1e-14, atol=0)
    log_a, log_b = MinGRU(1).double().log_coefficients(torch.stack([kz.flatten(), kh.flatten()], -1))
    torch.testing.assert_close(log_a.exp(), a, rtol=1e-13, atol=0)
    torch.testing.assert_close(log_b.exp(), b, rtol=1e-13, atol=0)

    kf, ki = torch.meshgrid(k, k, indexing="ij")
    kh = torch.full_like(kf, 0.3)
    cell = MinLSTM(1).double()
    pre = torch.stack([kf.flatten(), ki.flatten(), kh.flatten()], -1)
    a, b = cell.coefficients(pre)
    f, i = torch.sigmoid(kf.flatten()), torch.sigmoid(ki.flatten())
    torch.testing.assert_close(a[:, 0], f / (f + i), rtol=1e-13, atol=0)
    torch.testing.assert_close(b[:, 0], i / (f + i) * 0.8, rtol=1e-13, atol=0)
    log_a, log_b = cell.log_coefficients(pre)
    torch.testing.assert_close(log_a.exp(), a, rtol=1e-13, atol=0)
    torch.testing.assert_close(log_b.exp(), b, rtol=1e-13, atol=0)


def test_g_as_a_maximum_gives_the_piecewise_definitions_floats():
    """``max(x + 0.5, sigmoid(x))`` and ``where(x >= 0, x + 0.5, sigmoid(x))`` agree to the bit in float32,
    around 0, at signed zeros, saturation and infinities."""
    from rl_minrnn import g

    torch.manual_seed(0)
    x = torch.cat([torch.randn(200_000) * 10, torch.randn(100_000) * 1e-6, torch.linspace(-1e-7, 1e-7, 2001),
                   torch.tensor([0.0, -0.0, 1e-30, -1e-30, 88.7, -88.7, -104.0, float("inf"), float("-inf")])])
    assert torch.equal(g(x), torch.where(x >= 0, x + 0.5, torch.sigmoid(x)))


@pytest.mark.parametrize("cls", CELL_TYPES)
def test_coefficient_gradients_match_autograd_of_the_formulas(cls):
    """The written-out backward against autograd through the plain expressions, in float32 on a training-sized
    batch (saturated pre-activations included)."""
    torch.manual_seed(1)
    cell = cls(16)
    k = (torch.randn(8, 20, cell.num_projections * 16) * 4).requires_grad_()
    ga, gb = torch.randn(8, 20, 16), torch.randn(8, 20, 16)
    a, b = cell.coefficients(k)
    (grad,) = torch.autograd.grad((a * ga).sum() + (b * gb).sum(), k)
    parts = k.detach().clone().requires_grad_()
    if cls is MinGRU:
        kz, kh = parts.chunk(2, -1)
        ref_a, ref_b = torch.sigmoid(-kz), torch.sigmoid(kz) * torch.where(kh >= 0, kh + 0.5, torch.sigmoid(kh))
    else:
        kf, ki, kh = parts.chunk(3, -1)
        d = torch.nn.functional.logsigmoid(ki) - torch.nn.functional.logsigmoid(kf)
        ref_a, ref_b = torch.sigmoid(-d), torch.sigmoid(d) * torch.where(kh >= 0, kh + 0.5, torch.sigmoid(kh))
    (ref,) = torch.autograd.grad((ref_a * ga).sum() + (ref_b * gb).sum(), parts)
    assert torch.equal(a, ref_a) and torch.equal(b, ref_b)
    torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", CELL_TYPES)
@pytest.mark.parametrize("scan", ["chunked", "log"])
def test_cell_gradcheck(cls, scan):
    cell = make_cell(cls, dim=3, expansion=2.0, scan=scan)
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    h = torch.rand(2, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h: cell(x, h)[0], (x, h))
    # and through the parameters
    params = tuple(cell.parameters())
    assert torch.autograd.gradcheck(
        lambda *p: torch.func.functional_call(cell, dict(zip(dict(cell.named_parameters()), p)), (x.detach(),))[0],
        params,
    )


@pytest.mark.parametrize("cls", CELL_TYPES)
@pytest.mark.parametrize("length", [64, 1500, 4096])
def test_float32_matches_float64(cls, length):
    """The default (chunked) scan in float32 stays within 1e-5 of float64, also with the GPU chunking."""
    cell64 = make_cell(cls, dim=16)
    cell32 = copy.deepcopy(cell64).float()
    x = torch.randn(4, length, 16, dtype=torch.float64)
    ref, _ = cell64(x)
    for chunk in (None, 64):
        cell32.chunk_size = chunk
        y32, _ = cell32(x.float())
        assert rel_err(y32, ref) <= 1e-5, chunk


@pytest.mark.parametrize("cls", CELL_TYPES)
@pytest.mark.parametrize("scan", ["chunked", "log"])
def test_no_nan_with_saturated_gates(cls, scan):
    torch.manual_seed(0)
    cell = cls(8, scan=scan)
    with torch.no_grad():
        cell.to_gates.weight.mul_(20.0)  # saturates the gates
    x = ((torch.rand(2, 4096, 8) * 2 - 1) * 50).requires_grad_()
    y, h = cell(x)
    (y.square().mean() + h.sum()).backward()
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in cell.parameters())


@pytest.mark.parametrize(
    "cls, reference, fraction", [(MinGRU, nn.GRU, 1 / 3), (MinLSTM, nn.LSTM, 3 / 8)]
)
@pytest.mark.parametrize("dim", [16, 128])
def test_parameter_counts(cls, reference, fraction, dim):
    for expansion in (1.0, 1.5, 2.0):
        cell = cls(dim, expansion=expansion)
        assert sum(p.numel() for p in cell.parameters()) == cls.parameter_count(dim, expansion)
    ours = cls.parameter_count(dim, 1.0)
    theirs = sum(p.numel() for p in reference(dim, dim).parameters())
    assert ours / theirs == pytest.approx(fraction)  # the paper: about 33% and 38%


@pytest.mark.parametrize("cls", CELL_TYPES)
def test_bfloat16_runs_and_stays_close(cls):
    torch.manual_seed(0)
    cell = cls(16)
    x = torch.randn(2, 300, 16)
    ref, _ = cell(x)
    y, h = cell.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16 and h.dtype == torch.float32  # scanned in float32
    assert rel_err(y, ref) < 3e-2


def test_cell_rejects_wrong_width():
    with pytest.raises(ValueError, match="width 4"):
        MinGRU(4)(torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="scan must be"):
        MinGRU(4, scan="magic")


# ---------------------------------------------------------------- blocks and stacks
def make_block(cell, conv, seed=0):
    torch.manual_seed(seed)
    return MinRNNBlock(6, cell=cell, expansion=1.5, conv=conv, dropout=0.1).double().eval()


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("conv", [0, 4])
@pytest.mark.parametrize("length", [1, 2, 3, 17, 64, 1000])
def test_block_step_equals_parallel(cell, conv, length):
    block = make_block(cell, conv)
    x = torch.randn(2, length, 6, dtype=torch.float64)
    y, state = block(x)
    y_step, state_step = step_through(block, x)
    assert rel_err(y, y_step) <= 1e-10
    for s, r in zip(flat(state), flat(state_step)):
        assert rel_err(s, r) <= 1e-10
    # continuing from a state, too
    y2, _ = block(x, state)
    y2_step, _ = step_through(block, x, state_step)
    assert rel_err(y2, y2_step) <= 1e-10


@pytest.mark.parametrize("conv", [0, 3])
def test_block_chunks_continue_exactly(conv):
    block = make_block("minlstm", conv)
    x = torch.randn(2, 50, 6, dtype=torch.float64)
    y_whole, _ = block(x)
    ys, state = [], None
    for piece in x.split([1, 1, 9, 30, 9], dim=1):  # chunks shorter than the conv window included
        y, state = block(piece, state)
        ys.append(y)
    assert rel_err(torch.cat(ys, 1), y_whole) <= 1e-10


def test_block_gradcheck_with_conv():
    block = make_block("mingru", 3)
    x = torch.randn(1, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: block(x)[0], (x,))


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("length", STACK_LENGTHS)
def test_stack_step_equals_parallel(cell, length):
    torch.manual_seed(0)
    stack = MinRNNStack(6, depth=3, cell=cell, conv=3 if cell == "mingru" else 0).double().eval()
    x = torch.randn(2, length, 6, dtype=torch.float64)
    y, state = stack(x)
    y_step, state_step = step_through(stack, x)
    assert len(state) == 3
    assert rel_err(y, y_step) <= 1e-10
    # chunked == whole with the state carried
    half = max(1, length // 2)
    y1, s1 = stack(x[:, :half])
    y2, _ = stack(x[:, half:], s1) if length > half else (x[:, :0], None)
    assert rel_err(torch.cat([y1, y2], 1), y) <= 1e-10


def test_mask_state_resets_rows():
    torch.manual_seed(0)
    stack = MinRNNStack(6, depth=2, conv=3).double().eval()
    x = torch.randn(3, 10, 6, dtype=torch.float64)
    _, state = stack(x)
    keep = torch.tensor([True, False, True])
    masked = mask_state(state, keep)
    y_masked, _ = stack(x, masked)
    y_fresh, _ = stack(x[1:2])
    y_cont, _ = stack(x, state)
    assert rel_err(y_masked[1:2], y_fresh) <= 1e-12  # row 1 starts afresh
    assert rel_err(y_masked[[0, 2]], y_cont[[0, 2]]) <= 1e-12  # the others continue


def test_stack_state_length_checked():
    stack = MinRNNStack(6, depth=2)
    _, state = stack(torch.randn(1, 3, 6))
    with pytest.raises(ValueError, match="2 layers"):
        stack(torch.randn(1, 3, 6), state[:1])


@pytest.mark.slow
def test_torch_compile_matches_eager():
    torch.manual_seed(0)
    stack = MinRNNStack(8, depth=2, cell="minlstm", conv=3).eval()
    x = torch.randn(2, 12, 8)
    ref, _ = stack(x)
    compiled = torch.compile(stack)
    y, state = compiled(x)
    assert rel_err(y, ref) <= 1e-5
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in stack.parameters())
    step = torch.compile(stack.step)
    y_t, _ = step(x[:, 0], None)
    assert rel_err(y_t, ref[:, 0]) <= 1e-5


def test_dropout_drops_at_rate_p_and_keeps_the_mean():
    """The numpy-drawn masks: about p of the elements zeroed, the rest scaled by 1 / (1 - p), so the
    expectation is kept (2e5 draws: the drop rate is within 4 standard errors of p)."""
    from rl_minrnn import Dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    for p in (0.1, 0.5):
        y = Dropout(p)(x)
        dropped = float((y == 0).double().mean())
        assert abs(dropped - p) <= 4 * (p * (1 - p) / x.numel()) ** 0.5, (p, dropped)
        assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - p)))
    assert torch.equal(Dropout(0.1).eval()(x), x) and torch.equal(Dropout(0.0)(x), x)


def test_dropout_follows_torchs_seed_and_its_gradient_is_its_mask():
    """Masks are a function of torch's RNG state alone (what checkpoints save), differ from call to call,
    and the backward multiplies by the same mask."""
    from rl_minrnn import Dropout

    drop = Dropout(0.3)
    x = torch.randn(64, 20, 16, requires_grad=True)
    torch.manual_seed(5)
    first, second = drop(x), drop(x)
    torch.manual_seed(5)
    assert torch.equal(drop(x), first) and not torch.equal(first, second)
    first.backward(torch.ones_like(first))
    assert torch.equal(x.grad, torch.where(first != 0, torch.tensor(1 / 0.7), torch.tensor(0.0)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)
