"""Closed-loop evaluation: environments made from a dataset's metadata or a gymnasium id
(``environments``), the batched rollout loop (``rollout``), what it reports (``results``) and headless
video (``render``). Reads datasets' metadata through ``envs.offline``; never trains."""
