"""Allowed values of an option, stated once by the module that uses it (``Number``, ``OneOf``,
``NumberList``, ``ChoiceList``), so that the configuration checks a value before anything is built with it and the
message says what is allowed: a value torch would reject with a traceback (a dropout of ``inf``), or a
size no machine holds (a width of 99999999999), stops at the config with the key named.

A rule says what it allows (``allowed``) and whether a value is allowed (``ok``); ``check(value)``, shared by all
of them, raises :class:`OptionError` with ``must be <what is allowed>, got <value>``; the caller
(``rl_minrnn.training.options``) puts the key and an example in front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class OptionError(ValueError):
    """A value outside what its option allows; the message says what is allowed."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _named(name: str) -> str:
    return f"{name} " if name else ""


def _fmt(x: float) -> str:
    return f"{int(x):,}".replace(",", "_") if float(x).is_integer() and abs(x) >= 10_000 else f"{x:g}"


class Rule:
    """The one message every rule gives: ``must be <allowed()>, got <value>`` (and ``why_not`` where it names the
    entry that is not allowed)."""

    def allowed(self) -> str:
        raise NotImplementedError

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def why_not(self, value: Any) -> str:
        return ""

    def check(self, value: Any, name: str = "") -> None:
        if not self.ok(value):
            why = self.why_not(value)
            raise OptionError(f"{_named(name)}must be {self.allowed()}, got {value!r}" + (f" ({why})" if why else ""))


@dataclass(frozen=True)
class Number(Rule):
    """A finite number in ``[low, high]`` (either end open when asked), an integer when ``integer``,
    never one of ``excluded``. ``why``: a short reason shown with the range."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    low_open: bool = False
    high_open: bool = False
    excluded: tuple = ()
    why: str = ""

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_fmt(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {_fmt(self.high)}")
        text = f"{kind} {' and '.join(parts)}" if parts else kind
        if self.excluded:
            text += f" other than {', '.join(_fmt(x) for x in self.excluded)}"
        return text + (f" ({self.why})" if self.why else "")

    def ok(self, value: Any) -> bool:
        if not _is_number(value) or not math.isfinite(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return value not in self.excluded


@dataclass(frozen=True)
class OneOf(Rule):
    """One of ``options`` (the registry or tuple that implements them)."""

    options: tuple

    def allowed(self) -> str:
        return "one of " + ", ".join(map(str, self.options))

    def ok(self, value: Any) -> bool:
        return not isinstance(value, (list, dict)) and value in self.options


@dataclass(frozen=True)
class NumberList(Rule):
    """A list of ``min_len`` to ``max_len`` numbers, each allowed by ``element``."""

    element: Number
    min_len: int = 1
    max_len: int = 64

    def allowed(self) -> str:
        return f"a list of {self.min_len} to {self.max_len} values, each {self.element.allowed()}"

    def ok(self, value: Any) -> bool:
        return (isinstance(value, (list, tuple)) and self.min_len <= len(value) <= self.max_len
                and all(self.element.ok(v) for v in value))

    def why_not(self, value: Any) -> str:
        bad = [v for v in value if not self.element.ok(v)] if isinstance(value, (list, tuple)) else []
        return f"{bad[0]!r} is not" if bad and self.min_len <= len(value) <= self.max_len else ""


@dataclass(frozen=True)
class ChoiceList(Rule):
    """A list (possibly empty) whose every entry is one of ``options``, each at most once."""

    options: tuple

    def allowed(self) -> str:
        return "a list of distinct entries from " + ", ".join(map(str, self.options))

    def ok(self, value: Any) -> bool:
        return (isinstance(value, (list, tuple)) and all(not isinstance(v, (list, dict)) and v in self.options
                                                         for v in value) and len(set(value)) == len(value))
