"""Progress that reads well wherever it goes: tqdm's bar on a terminal or in a notebook, plain lines in a file.

A bar redraws itself with ``\\r`` several times a second; piped into a file (a background job, a cluster,
CI) that is kilobytes of redraws per minute that no one can read. ``progress_bar`` returns tqdm when its
stream is a terminal (or a Jupyter kernel, where ``tqdm.auto`` draws a widget), and otherwise a
:class:`LineProgress` with the part of tqdm's interface the project uses (``update``, ``set_postfix``,
``write``, ``close``, ``n``), which prints one line every few percent::

    step 300/600 (50%)  38.2 step/s  loss=0.1234  elapsed 0:00:08  ETA 0:00:08

Training, the score suite, dataset building and evaluation all make their bars here. It imports only
tqdm and the standard library, so every layer may use it.
"""

from __future__ import annotations

import math
import sys
import time

DEFAULT_PERCENT = 5.0  # a line every 5 % of the total in a file: 20 lines a job, whatever its length
UNKNOWN_TOTAL_SECONDS = 30.0  # with no total (and no ``every``), a line every 30 s


def interactive(stream=None) -> bool:
    """Whether ``stream`` (stderr by default) is shown live: a terminal, or a Jupyter kernel's output."""
    stream = sys.stderr if stream is None else stream
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # closed or not a real file
        return False
    return "ipykernel" in sys.modules and type(stream).__module__.startswith("ipykernel")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def line_interval(total: int | None, every: int | None = None, percent: float = DEFAULT_PERCENT) -> int:
    """Units between two lines: ``percent`` of ``total``, rounded up to a multiple of ``every`` when given
    (training passes ``train.log_every``, so every line carries a loss just logged); ``every`` alone
    without a total; 0 (lines by time, every ``UNKNOWN_TOTAL_SECONDS``) with neither."""
    step = max(1, math.ceil(total * percent / 100)) if total else 0
    if every:
        every = max(1, int(every))
        return max(every, math.ceil(step / every) * every)
    return step


class LineProgress:
    """tqdm's interface, printed as one plain line every ``interval`` units (every ``UNKNOWN_TOTAL_SECONDS``
    when ``interval`` is 0) and a last line at ``close``.

    Lines go to ``stream`` (stderr, where tqdm draws); ``write`` prints to stdout as ``tqdm.write`` does.
    The rate is measured since the bar was made (from ``initial``, so a resumed run's rate is its own)."""

    def __init__(self, total: int | None = None, initial: int = 0, desc: str | None = None, unit: str = "step",
                 interval: int = 1, stream=None, leave: bool = True):
        self.total, self.n, self.desc, self.unit = total, int(initial), desc, unit
        self.interval, self.stream, self.leave = max(0, int(interval)), stream, leave
        self.postfix: dict = {}
        self._start_n, self._start = self.n, time.perf_counter()
        self._last_print = self._start
        self._next = (self.n // self.interval + 1) * self.interval if self.interval else None
        self._printed_at = None
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if self._next is None:  # no total to take percentages of: by time
            due = time.perf_counter() - self._last_print >= UNKNOWN_TOTAL_SECONDS
        else:
            due = self.n >= self._next or (self.total is not None and self.n >= self.total)
            if due:
                self._next = (self.n // self.interval + 1) * self.interval
        if due:
            self._print()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        pass

    def line(self) -> str:
        elapsed = time.perf_counter() - self._start
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        where = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        parts = [f"{self.desc}: " if self.desc else "", f"{self.unit} {where}", f"  {rate:.1f} {self.unit}/s"]
        parts += [f"  {k}={v}" for k, v in self.postfix.items()]
        parts.append(f"  elapsed {_clock(elapsed)}")
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"  ETA {_clock((self.total - self.n) / rate)}")
        return "".join(parts)

    def _print(self) -> None:
        stream = sys.stderr if self.stream is None else self.stream
        print(self.line(), file=stream, flush=True)
        self._printed_at, self._last_print = self.n, time.perf_counter()

    def write(self, text: str, file=None) -> None:
        out = sys.stdout if file is None else file
        print(text, file=out, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.leave and self._printed_at != self.n and self.n > self._start_n:
            self._print()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int | None = None, *, initial: int = 0, desc: str | None = None, unit: str = "step",
                 enabled: bool = True, every: int | None = None, percent: float = DEFAULT_PERCENT,
                 leave: bool = True, stream=None, **tqdm_kwargs):
    """A progress bar for ``total`` units: tqdm (``tqdm.auto``) where ``stream`` (stderr) is live, else a
    :class:`LineProgress` printing a line every ``percent`` of the total (a multiple of ``every`` when given,
    see :func:`line_interval`); a disabled tqdm when ``enabled`` is false. ``tqdm_kwargs`` go to tqdm only."""
    if enabled and not interactive(stream):
        return LineProgress(total, initial=initial, desc=desc, unit=unit, interval=line_interval(total, every, percent),
                            stream=stream, leave=leave)
    from tqdm.auto import tqdm

    if stream is not None:
        tqdm_kwargs["file"] = stream
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=leave,
                dynamic_ncols=True, **tqdm_kwargs)
