"""Data in, scores out: the two halves of the environment side, and what they share.

- ``envs.offline``: offline data. The dataset model, where datasets live (local store, shipped samples,
  download), reading and writing Minari's format, D4RL import, building from behaviour policies,
  combining, training batches and state normalisation.
- ``envs.evaluation``: closed-loop evaluation. Environments, the batched rollout loop, its results, and
  rendering.
- ``envs.tasks``: the task table, one row per environment (gymnasium id, D4RL reference returns, the local
  suite's behaviour policies), and ``envs.scores``: the normalised score; both used by both halves (a
  dataset carries its reference scores; an evaluation reports against them).

Layers: ``tasks`` <- ``scores`` <- ``offline`` <- ``evaluation`` (evaluation reads a dataset's metadata to
make its environment; nothing in ``offline`` imports ``evaluation``). Installed as ``rl_minrnn.envs``.
"""
