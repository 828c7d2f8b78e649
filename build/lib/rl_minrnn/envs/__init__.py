"""Data in, scores out: the two halves of the environment side, and what they share.

- ``envs.offline``: offline data. The dataset model, where datasets live (local store, shipped samples,
  download), reading and writing Minari's format, D4RL import, building from behaviour policies,
  combining, training batches and state normalisation.
- ``envs.evaluation``: closed-loop evaluation. Environments, the batched rollout loop, its results, and
  rendering.
- ``envs.scores``: D4RL reference returns and the normalised score, used by both (a dataset carries its
  reference scores; an evaluation reports against them).

Layers: ``scores`` <- ``offline`` <- ``evaluation`` (evaluation reads a dataset's metadata to make its
environment; nothing in ``offline`` imports ``evaluation``).
"""
