"""Several processes for one run's training step on the CPU: each batch's rows split between them
(``train.processes``).

Why processes and not threads: at the cpu profile a step is some 700 small operators. Two torch threads in
one process meet at every one of them (OpenMP), and the step got slower than with one (BENCHMARKS.md, "The
training step against 440c381"); two processes each run a whole step on half the rows and meet once, when
the gradients are added. The rule for when not: on a machine whose cores already have work (the suite's
runs side by side on Ray, the evaluation of another run) a helper only takes a core from it; keep
``train.processes=1`` there.

How, with files mapped into both processes' memory (``torch.from_file`` on ``/dev/shm``) and a local
socket for the short messages (``multiprocessing.connection``); a helper is a plain ``python -c`` process, so
nothing of the caller's main module is imported again (``multiprocessing``'s spawn would run a script
without a ``__main__`` guard twice), and ``torch.distributed`` would add a rendezvous port per run for what
is here one machine's memory:

- The trainer's process, the leader, keeps everything a checkpoint holds: weights, optimiser, schedule,
  weight average, RNG. A helper holds a copy of the agent whose parameters are views of a shared buffer.
- Each step the leader samples the whole batch as before, copies its weights into the shared buffer and
  the helper's rows of the batch into shared buffers, and draws a seed for the helper's dropout masks from
  its own generator. Leader and helpers run forward and backward on their rows at the same time, each
  loss divided by the whole batch's denominator, so that their gradients add up to the whole batch's. The
  helpers write their gradients into shared memory; the leader adds them and goes on as one process does:
  clipping, the non-finite check, the update, the weight average.
- So a checkpoint is what it was, and resume is exact: the helpers' masks come from seeds the leader's
  generator draws, and a helper keeps nothing between steps.

The numbers: the gradient is the whole batch's up to float rounding (the sums run in another order), and
the helpers' rows get other dropout masks than one process would draw, from the same distribution. A run
is deterministic for a given seed and number of processes, not equal to the bit to one with another
number.
"""

from __future__ import annotations

import dataclasses
import io
import os
import secrets
import subprocess
import sys
import tempfile
import traceback
import weakref
from multiprocessing.connection import Client, Listener
from pathlib import Path

import torch

from rl_minrnn.ranges import Number

from .faults import TrainingStopped

# ``train.processes``
PROCESSES_OPTION = Number(0, 16, integer=True, why="processes that share each batch's rows (1: none, 0: auto)")

_POLL_SECONDS = 1.0  # how often a leader waiting for a helper checks that it is still alive


class HelperFailed(TrainingStopped):
    """A helper process raised or died; the run stops with what it said (the trainer saves the step reached,
    which the failure did not touch: it comes before the update)."""


def row_bounds(rows: int, processes: int) -> list[tuple[int, int]]:
    """``processes`` contiguous row ranges as equal as they can be, the leader's (the first) the largest."""
    base, extra = divmod(rows, processes)
    bounds, start = [], 0
    for i in range(processes):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _mapped(path: str, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of ``shape`` over the file ``path`` (created if missing), shared with every process mapping it."""
    numel = int(torch.Size(shape).numel())
    return torch.from_file(path, shared=True, size=max(1, numel), dtype=dtype)[:numel].view(shape)


def _flat_views(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    views, offset = [], 0
    for t in like:
        views.append(flat[offset:offset + t.numel()].view(t.shape))
        offset += t.numel()
    return views


def _dropout_seed() -> int:
    return int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))


def _shm_folder() -> Path:
    """Memory-backed where Linux has it (``/dev/shm``), the temporary folder otherwise."""
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix="rl_minrnn-step-", dir=base))


class BatchSplitter:
    """The leader's side: starts the helpers, hands them their rows, adds their gradients.

    ``start(batch, denominator)`` -> the leader's rows; ``finish()`` adds the helpers' gradients to the
    parameters' ``.grad`` and returns their loss terms' sum. ``close()`` stops the helpers (also done when
    the object is collected or the interpreter exits)."""

    def __init__(self, agent: torch.nn.Module, model_config, processes: int):
        self.agent, self.processes = agent, int(processes)
        self.model_config = model_config
        self.parameters = list(agent.parameters())
        self.trainable = [p for p in self.parameters if p.requires_grad]
        self.helpers: list[_Helper] = []
        self._finalizer = None

    # The helpers start at the first batch, when its shapes are known.
    def _start_helpers(self, batch: dict) -> None:
        rows = batch["states"].shape[0]
        if rows < self.processes:
            raise ValueError(f"train.processes={self.processes} needs at least that many rows per batch, got {rows}")
        self.bounds = row_bounds(rows, self.processes)
        self.folder = folder = _shm_folder()
        self._finalizer = weakref.finalize(self, _close_all, self.helpers, folder)
        weights_path = str(folder / "weights")
        self.weight_views = _flat_views(_mapped(weights_path, [sum(p.numel() for p in self.parameters)]), self.parameters)
        state = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in self.agent.state_dict().items()}, state)
        model = (dataclasses.asdict(self.model_config) if dataclasses.is_dataclass(self.model_config)
                 else dict(self.model_config))
        for i, (lo, hi) in enumerate(self.bounds[1:], start=1):
            rows = {k: (str(folder / f"rows{i}-{k}"), str(v.dtype).removeprefix("torch."), list(v[lo:hi].shape))
                    for k, v in batch.items()}
            rows_buffers = {k: _mapped(path, shape, getattr(torch, dtype)) for k, (path, dtype, shape) in rows.items()}
            grads_path = str(folder / f"grads{i}")
            grads = _mapped(grads_path, [sum(p.numel() for p in self.trainable)])
            spec = {"model": model, "obs_dim": self.agent.obs_dim, "act_dim": self.agent.act_dim,
                    "state_dict": state.getvalue(), "weights": weights_path, "grads": grads_path, "rows": rows}
            self.helpers.append(_Helper(spec, rows_buffers, grads, self.trainable))
        for helper in self.helpers:
            helper.wait_ready()

    def start(self, batch: dict, denominator: torch.Tensor) -> dict:
        if not self.helpers:
            self._start_helpers(batch)
        with torch.no_grad():
            torch._foreach_copy_(self.weight_views, [p.detach() for p in self.parameters])
        for helper, (lo, hi) in zip(self.helpers, self.bounds[1:]):
            helper.send_rows(batch, lo, hi, _dropout_seed(), float(denominator))
        lo, hi = self.bounds[0]
        return {k: v[lo:hi] for k, v in batch.items()}

    def finish(self) -> float:
        total = 0.0
        for helper in self.helpers:
            loss, has_grad = helper.receive()
            total += loss
            pairs = [(p, view) for p, view, flag in zip(self.trainable, helper.grad_views, has_grad) if flag]
            for p, view in pairs:
                if p.grad is None:  # a parameter only the helper's rows reached
                    p.grad = torch.zeros_like(p)
            if pairs:
                torch._foreach_add_([p.grad for p, _ in pairs], [view for _, view in pairs])
        return total

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


class _Helper:
    """One helper process and the leader's ends of its socket and shared buffers."""

    def __init__(self, spec: dict, rows: dict, grads: torch.Tensor, trainable: list[torch.Tensor]):
        self.rows = rows
        self.grad_views = _flat_views(grads, trainable)
        authkey = secrets.token_bytes(16)
        listener = Listener(family="AF_UNIX", authkey=authkey)
        env = {**os.environ, "RL_MINRNN_HELPER": f"{listener.address}|{authkey.hex()}",
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from rl_minrnn.training.data_parallel import helper_main; helper_main()"], env=env)
        socket = getattr(getattr(listener, "_listener", None), "_socket", None)  # Listener has no timeout of its own
        if socket is not None:
            socket.settimeout(120)  # a helper that cannot start does not hang the run
        try:
            self.conn = listener.accept()
        except OSError as exc:
            self.process.kill()
            raise HelperFailed(f"A training helper process did not connect ({exc}); its error is above.") from None
        finally:
            listener.close()
        self.conn.send(spec)

    def wait_ready(self) -> None:
        message = self._recv()
        if message[0] != "ready":
            raise HelperFailed(f"A training helper process did not start:\n{message[1]}")

    def send_rows(self, batch: dict, lo: int, hi: int, seed: int, denominator: float) -> None:
        for k, buffer in self.rows.items():
            buffer.copy_(batch[k][lo:hi])
        try:
            self.conn.send(("step", seed, denominator))
        except OSError:
            raise HelperFailed(f"A training helper process died (exit code {self.process.poll()}).") from None

    def receive(self) -> tuple[float, list[bool]]:
        message = self._recv()
        if message[0] != "done":
            raise HelperFailed(f"A training helper process failed:\n{message[1]}")
        return message[1], message[2]

    def _recv(self):
        while not self.conn.poll(_POLL_SECONDS):
            if self.process.poll() is not None:
                raise HelperFailed(f"A training helper process died (exit code {self.process.returncode}).")
        try:
            return self.conn.recv()
        except EOFError:
            raise HelperFailed("A training helper process closed its connection.") from None

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.conn.close()


def _close_all(helpers: list[_Helper], folder: Path) -> None:
    for helper in helpers:
        helper.close()
    helpers.clear()
    for path in folder.glob("*"):
        path.unlink(missing_ok=True)
    folder.rmdir()


def helper_main() -> None:
    """A helper's loop (``python -c``; ``RL_MINRNN_HELPER`` says where its leader listens): map the shared
    buffers, build the agent, then on ``("step", seed, denominator)`` run forward and backward on its rows
    with the leader's current weights, write the gradients, answer ``("done", loss, which parameters had a
    gradient)``; ``None`` or a closed connection ends it. One torch thread: it exists to use a core."""
    address, key = os.environ.pop("RL_MINRNN_HELPER").split("|")
    conn = Client(address, family="AF_UNIX", authkey=bytes.fromhex(key))
    try:
        torch.set_num_threads(1)
        from rl_minrnn.agents import build_agent
        from rl_minrnn.training.loss import masked_action_loss

        spec = conn.recv()
        agent = build_agent(spec["model"], spec["obs_dim"], spec["act_dim"])
        agent.load_state_dict(torch.load(io.BytesIO(spec["state_dict"]), weights_only=True))
        parameters = list(agent.parameters())
        weights = _mapped(spec["weights"], [sum(p.numel() for p in parameters)])
        for p, view in zip(parameters, _flat_views(weights, parameters)):
            p.data = view
        trainable = [p for p in parameters if p.requires_grad]
        grad_views = _flat_views(_mapped(spec["grads"], [sum(p.numel() for p in trainable)]), trainable)
        rows = {k: _mapped(path, shape, getattr(torch, dtype)) for k, (path, dtype, shape) in spec["rows"].items()}
        agent.train()
        conn.send(("ready",))
    except BaseException:  # noqa: BLE001 - said to the leader, which raises it
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the leader is gone
            return
        if message is None:
            return
        try:
            _, seed, denominator = message
            torch.manual_seed(seed)
            for p in trainable:
                p.grad = None
            preds, _ = agent(rows["states"], rows["actions"], rows["returns_to_go"], rows["timesteps"], None)
            loss = masked_action_loss(preds, rows["actions"], rows["mask"], denominator)
            loss.backward()
            has_grad = [p.grad is not None for p in trainable]
            with torch.no_grad():
                torch._foreach_copy_([v for v, f in zip(grad_views, has_grad) if f],
                                     [p.grad for p in trainable if p.grad is not None])
            conn.send(("done", float(loss.detach()), has_grad))
        except BaseException:  # noqa: BLE001
            conn.send(("error", traceback.format_exc()))
