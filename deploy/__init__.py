"""Deployable policies: a trained agent's rollout step as a standalone graph (ONNX or TorchScript).

- :mod:`deploy.export` (needs torch): ``python -m rl_minrnn.deploy.export --checkpoint best.pt --out hopper.onnx``
  writes the agent's one rollout step, normalisation and clipping included, with a metadata record.
- :mod:`deploy.runtime` (numpy and onnxruntime; no torch for ONNX files): :class:`~deploy.runtime.ExportedPolicy`
  runs an exported file step by step, :class:`~deploy.runtime.ExportedAgent` gives it the agents' rollout
  protocol so ``evaluate.py`` and ``envs.evaluation.rollout.evaluate_agent`` evaluate it like a checkpoint.
- :mod:`deploy.metadata` (standard library only): the metadata record both sides agree on.

This package's ``__init__`` imports nothing, so ``import rl_minrnn.deploy.runtime`` works where torch is not installed.
"""
