"""Decision agents: the recurrent Decision-RNN and the Decision Transformer baseline, one interface."""

from .base import DecisionAgent
from .checkpoint import CheckpointError, load_agent, read_checkpoint, save_checkpoint
from .decision_rnn import DecisionRNN, RNNAgentState
from .decision_transformer import DecisionTransformer
from .factory import agent_kwargs, build_agent

__all__ = [
    "DecisionAgent", "DecisionRNN", "DecisionTransformer", "RNNAgentState", "build_agent", "agent_kwargs",
    "CheckpointError", "load_agent", "read_checkpoint", "save_checkpoint",
]
