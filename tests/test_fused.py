"""The fused CPU kernel of the cells (``rl_minrnn.fused``): the same numbers as the PyTorch path, to the
bit where both vectorise the same elements, close to the float64 step recurrence elsewhere, and a
fallback that says why when it cannot be built."""

import platform
import shutil

import pytest
import torch

from rl_minrnn import fused
from rl_minrnn.cells import MinGRU, MinLSTM
from rl_minrnn.scan import sequential_scan

CELLS = [MinGRU, MinLSTM]
CAN_BUILD = (platform.machine() in ("x86_64", "AMD64") and shutil.which("c++") is not None
             and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"))
needs_kernel = pytest.mark.skipif(not CAN_BUILD, reason="needs x86-64 with AVX2 and a C++ compiler")


def run(cell, x, h0, grad_seed=1):
    """Outputs, last state and the gradients of a fixed random loss w.r.t. the input, h0 and the weights."""
    y, last = cell(x, h0)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed))
    inputs = [x, *cell.parameters(), *([h0] if h0 is not None else [])]
    return [y, last, *torch.autograd.grad((y * weights).sum() + last.sum(), inputs)]


def pair(cls, width, chunk_size=1):
    fused_cell = cls(width, scan="fused")
    torch_cell = cls(width, scan="chunked", chunk_size=chunk_size)
    torch_cell.load_state_dict(fused_cell.state_dict())
    return fused_cell, torch_cell


def inputs(batch, length, width, with_h0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (3 * torch.randn(batch, length, width, generator=gen)).requires_grad_()  # saturates some gates
    h0 = torch.randn(batch, width, generator=gen).requires_grad_() if with_h0 else None
    return x, h0


@needs_kernel
def test_the_kernel_builds_here():
    ok, why = fused.available()
    assert ok, why


@needs_kernel
@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("batch,width", [(64, 64), (3, 32), (2, 128)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_bit_identical_to_the_pytorch_path(cls, batch, width, with_h0):
    """Widths that are multiples of 32: every element vectorised on both sides, so every output and
    gradient is the same float32 number as the coefficients' autograd function + chunked scan at chunk 1."""
    torch.manual_seed(0)
    fused_cell, torch_cell = pair(cls, width)
    x, h0 = inputs(batch, 20, width, with_h0)
    for got, want in zip(run(fused_cell, x, h0), run(torch_cell, x, h0), strict=True):
        assert torch.equal(got, want)


@needs_kernel
@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("batch,length,width", [(1, 1, 1), (2, 7, 13), (3, 50, 24), (4, 300, 40)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_close_to_the_float64_step_recurrence(cls, batch, length, width, with_h0):
    """Any width (the scalar tail past the last vector of 8 included) and length, against the step loop
    computed in float64 from the same weights."""
    torch.manual_seed(1)
    cell = cls(width, scan="fused")
    reference = cls(width, scan="sequential").double()
    reference.load_state_dict(cell.state_dict())
    x, h0 = inputs(batch, length, width, with_h0, seed=length)
    got = run(cell, x, h0)
    want = run(reference, x.detach().double().requires_grad_(),
               None if h0 is None else h0.detach().double().requires_grad_())
    for g, w in zip(got, want, strict=True):
        scale = w.abs().max().clamp_min(1e-6)
        assert ((g.double() - w).abs().max() / scale).item() < 2e-5


@needs_kernel
@pytest.mark.parametrize("cls", CELLS)
def test_without_gradients_the_same_states(cls):
    torch.manual_seed(2)
    cell = cls(24)
    x, h0 = inputs(5, 9, 24, True)
    y, last = cell(x, h0)
    with torch.no_grad():
        y_ng, last_ng = cell(x, h0)
    assert torch.equal(y, y_ng) and torch.equal(last, last_ng)


@needs_kernel
def test_small_batches_follow_the_step_recurrence():
    """Below 4096 numbers a step the PyTorch path chunks the scan (another grouping, other last bits); the
    kernel is the step recurrence at every size, so a batch's rows get the same numbers alone as together."""
    torch.manual_seed(3)
    cell = MinGRU(64)
    x, _ = inputs(64, 20, 64, False)
    whole = cell(x)[0]
    halves = torch.cat([cell(x[:32])[0], cell(x[32:])[0]])
    assert torch.equal(whole, halves)


def test_falls_back_to_the_pytorch_path_with_a_reason(monkeypatch):
    """A failed build: one warning naming the error, ``available()`` says why, the cell computes the
    chunked scan's numbers."""
    from torch.utils import cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension:\nfused_cells.cpp:1: error: no compiler here")

    monkeypatch.setattr(fused, "_extension", None)
    monkeypatch.setattr(fused, "_unavailable", None)
    monkeypatch.delenv(fused.DISABLE_ENV, raising=False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(cpp_extension, "load", broken)
    torch.manual_seed(4)
    fused_cell, torch_cell = pair(MinLSTM, 16, chunk_size=None)
    x, h0 = inputs(2, 5, 16, True)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        got = run(fused_cell, x, h0)
    ok, why = fused.available()
    assert not ok and "could not be built" in why and "no compiler here" in why
    for g, w in zip(got, run(torch_cell, x, h0), strict=True):
        assert torch.equal(g, w)


def test_disabled_by_the_environment(monkeypatch):
    monkeypatch.setattr(fused, "_extension", None)
    monkeypatch.setattr(fused, "_unavailable", None)
    monkeypatch.setenv(fused.DISABLE_ENV, "0")
    assert fused.available() == (False, f"{fused.DISABLE_ENV}=0")
    assert not fused.applies(torch.zeros(1, 1, 2))


def test_other_dtypes_and_devices_use_the_pytorch_path():
    assert not fused.applies(torch.zeros(1, 1, 2, dtype=torch.float64))
    assert not fused.applies(torch.zeros(1, 1, 2, dtype=torch.bfloat16))


@needs_kernel
@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_training_steps_are_bit_identical_to_the_pytorch_path(cell):
    """Whole training steps of a Decision-RNN (dropout, AdamW, weight average): the fused kernel's weights
    equal the PyTorch path's after every step, at a size where that path scans in one pass (batch x width
    >= 4096) and the width is a multiple of 32."""
    from rl_minrnn.agents import build_agent
    from rl_minrnn.configs.schema import ModelConfig, TrainConfig
    from rl_minrnn.training.step import TrainingStep

    gen = torch.Generator().manual_seed(0)
    batch = {"states": torch.randn(128, 6, 11, generator=gen), "actions": torch.rand(128, 6, 3, generator=gen) * 2 - 1,
             "returns_to_go": torch.rand(128, 6, generator=gen), "timesteps": torch.randint(0, 100, (128, 6), generator=gen),
             "mask": torch.ones(128, 6)}
    weights = []
    for scan in ("fused", "chunked"):
        torch.manual_seed(0)
        agent = build_agent(ModelConfig(cell=cell, width=32, depth=2, context=6, tokens="fused", dropout=0.1), 11, 3)
        agent.stack.set_scan(scan)
        step = TrainingStep(agent, TrainConfig(lr=1e-3, warmup_steps=2))
        for _ in range(4):
            step(batch)
        weights.append([t.clone() for t in [*agent.state_dict().values(), *step.average.module.state_dict().values()]])
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_a_changed_private_build_folder_helper_only_skips_the_message(capsys):
    """The "compiling" line reads torch's private build-folder helper; a loader without it (a stand-in here)
    skips the line and raises nothing, so the build goes on."""
    fused._say_if_compiling(object())
    assert capsys.readouterr().err == ""
