"""Decision agents: the recurrent Decision-RNN and the Decision Transformer baseline, one interface.

Models only: how they are trained, checkpointed and logged lives in ``training``.
"""

from .base import DecisionAgent
from .decision_rnn import DecisionRNN, RNNAgentState
from .decision_transformer import DecisionTransformer
from .factory import AGENTS, agent_kwargs, build_agent

__all__ = ["AGENTS", "DecisionAgent", "DecisionRNN", "DecisionTransformer", "RNNAgentState", "build_agent", "agent_kwargs"]
