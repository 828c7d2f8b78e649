"""Minimal RNNs (minGRU, minLSTM) that train over whole sequences with a parallel scan and run one
step at a time in O(1) time and memory, giving the same numbers both ways.

The Python API (``rl_minrnn.api``: ``train``, ``load_policy``, ``evaluate``, ``render``; README, "Python API")
is re-exported here too. The names below load on first use, not at ``import rl_minrnn``: the installed
subpackages (``rl_minrnn.deploy.runtime`` above all) must be importable without torch, and the API, which
sits above ``training``, is imported only when one of its names is asked for."""

from importlib import import_module

_EXPORTS = {
    "api": ("Policy", "TrainResult", "evaluate", "load_policy", "render", "train"),
    "blocks": ("BlockState", "CausalDepthwiseConv", "MinRNNBlock", "MinRNNStack", "detach_state", "mask_state"),
    "cells": ("CELLS", "MinGRU", "MinLSTM", "g", "log_g"),
    "dropout": ("Dropout", "dropout"),
    "scan": ("SCAN_MODES", "chunked_scan", "default_chunk_size", "log_space_scan", "sequential_scan"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name in _MODULE_OF:
        return getattr(import_module(f".{_MODULE_OF[name]}", __name__), name)
    raise AttributeError(f"module 'rl_minrnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
