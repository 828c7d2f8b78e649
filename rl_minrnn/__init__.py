"""Minimal RNNs (minGRU, minLSTM) that train over whole sequences with a parallel scan and run one
step at a time in O(1) time and memory, giving the same numbers both ways."""

from .blocks import BlockState, CausalDepthwiseConv, MinRNNBlock, MinRNNStack, detach_state, mask_state
from .cells import CELLS, MinGRU, MinLSTM, g, log_g
from .scan import SCAN_MODES, chunked_scan, default_chunk_size, log_space_scan, sequential_scan

__all__ = [
    "MinGRU", "MinLSTM", "MinRNNBlock", "MinRNNStack", "BlockState", "CausalDepthwiseConv",
    "CELLS", "SCAN_MODES", "chunked_scan", "log_space_scan", "sequential_scan", "default_chunk_size",
    "mask_state", "detach_state", "g", "log_g",
]
