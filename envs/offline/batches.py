"""Training batches from an ``OfflineDataset``: K-step windows, or consecutive chunks for carried state.

Every batch is a dict of numpy arrays (float32 unless said), B rows of K (or L) timesteps:

- ``states (B, K, obs_dim)``: normalised with the sampler's ``StateNormalizer`` (the dataset's mean/std
  by default; the agent holds the same statistics as buffers, so its checkpoint carries them);
- ``actions (B, K, act_dim)``; action t pairs with state t;
- ``returns_to_go (B, K)``: undiscounted sum of rewards from t to the episode's end, / ``return_scale``;
- ``timesteps (B, K)`` int64: index in the episode, clipped to ``max_timestep - 1``;
- ``mask (B, K)``: 1 real, 0 padding. Padding is at the END (a causal recurrent model then never reads
  padding before real steps) and is all zeros; a row never crosses an episode boundary.

``WindowSampler`` samples windows the way Decision Transformer does (an episode in proportion to its
length, then a uniform start in it: i.e. a uniform timestep of the dataset; windows starting near the end
are padded). ``SequenceSampler`` gives B lanes that walk whole episodes in consecutive chunks of L steps
(truncated BPTT: the model carries each lane's recurrent state to the next batch and zeroes it where
``reset`` is true), or whole episodes padded to the longest with ``chunk_len=None``. Its episodes come
from a shuffled queue (each episode once per pass), so every timestep is seen equally often.

All gathering is vectorised numpy over a flat copy of the dataset made once; no per-timestep loops.
``state_dict()`` / ``load_state_dict()`` hold plain Python values (generator state, lanes, queue) and
resume bit-exactly.
"""

from __future__ import annotations

import numpy as np

from rl_minrnn.envs.offline.normalization import StateNormalizer
from rl_minrnn.ranges import Number, OneOf

DEFAULT_MAX_TIMESTEP = 1000
WINDOW_SAMPLING = ("start", "end", "cover")
REGIMES = ("window", "sequence")  # WindowSampler, SequenceSampler
# The samplers' options (``train.batch_size``, ``train.chunk_len``, ``train.window_sampling``,
# ``train.regime``, the ``seed`` of numpy's generator), checked by the config before a sampler is built.
SAMPLER_OPTIONS = {
    "batch_size": Number(1, 1_000_000, integer=True),
    "chunk_len": Number(1, 1_000_000, integer=True, why="timesteps per chunk"),
    "window_sampling": OneOf(WINDOW_SAMPLING),
    "regime": OneOf(REGIMES),
    "seed": Number(0, 2**32 - 1, integer=True),
}


class FlatEpisodes:
    """The dataset's episodes concatenated once: normalised states, actions, scaled return-to-go, timesteps."""

    def __init__(self, dataset, normalizer: StateNormalizer, return_scale: float):
        episodes = dataset.episodes
        self.lengths = np.array([len(ep) for ep in episodes], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.num_steps = int(self.lengths.sum())
        self.num_episodes = len(episodes)
        states = np.concatenate([ep.observations[:-1] for ep in episodes])
        self.states = normalizer.normalize(states)
        self.actions = np.concatenate([ep.actions for ep in episodes]).astype(np.float32, copy=False)
        rewards = np.concatenate([ep.rewards for ep in episodes]).astype(np.float64)
        # return-to-go without a per-episode loop: suffix sums of the whole array minus the suffix after
        # each episode's end; float64 keeps it exact to float32 precision.
        suffix = np.concatenate([np.cumsum(rewards[::-1])[::-1], [0.0]])
        ends = np.repeat(self.starts + self.lengths, self.lengths)
        self.returns_to_go = ((suffix[:-1] - suffix[ends]) / float(return_scale)).astype(np.float32)
        self.timesteps = np.arange(self.num_steps, dtype=np.int64) - np.repeat(self.starts, self.lengths)

    def gather(self, episodes: np.ndarray, positions: np.ndarray, length: int, max_timestep: int,
               row_lengths: np.ndarray | None = None) -> dict:
        """Rows of ``length`` steps from ``positions`` in ``episodes``; padded (zeros) past each episode's end
        and past ``row_lengths`` (B,) real steps when given."""
        offsets = np.arange(length, dtype=np.int64)
        pos = positions[:, None] + offsets[None, :]  # (B, K) position in the episode
        valid = pos < self.lengths[episodes][:, None]
        if row_lengths is not None:
            valid &= offsets[None, :] < row_lengths[:, None]
        flat = np.where(valid, self.starts[episodes][:, None] + pos, 0)
        fvalid = valid.astype(np.float32)
        states = self.states[flat]
        states *= fvalid[..., None]
        actions = self.actions[flat]
        actions *= fvalid[..., None]
        rtg = self.returns_to_go[flat] * fvalid
        timesteps = np.where(valid, np.minimum(pos, max_timestep - 1), 0)
        return {
            "states": states,
            "actions": actions,
            "returns_to_go": rtg,
            "timesteps": timesteps,
            "mask": fvalid,
        }


class _Sampler:
    def __init__(self, dataset, batch_size, return_scale, normalizer, seed, max_timestep):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if max_timestep <= 0:
            raise ValueError(f"max_timestep must be positive, got {max_timestep}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.return_scale = float(return_scale)
        self.normalizer = normalizer if normalizer is not None else StateNormalizer.from_dataset(dataset)
        self.max_timestep = int(max_timestep)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.flat = FlatEpisodes(dataset, self.normalizer, self.return_scale)

    def __iter__(self):
        while True:
            yield self.sample()

    def _config(self) -> dict:
        return {
            "batch_size": self.batch_size,
            "num_episodes": self.flat.num_episodes,
            "num_steps": self.flat.num_steps,
        }

    def _check_config(self, state: dict) -> None:
        saved = state.get("config", {})
        mine = self._config()
        diff = {k: (saved.get(k), v) for k, v in mine.items() if k in saved and saved[k] != v}
        if diff:
            raise ValueError(
                f"Sampler state does not match this sampler (saved, current): {diff}; "
                "resume with the same dataset and batch settings."
            )


class WindowSampler(_Sampler):
    """K-step windows drawn uniformly from the windows ``sampling`` allows, so episodes come in proportion
    to their number of windows (about their length).

    Where a window lies in its episode (``sampling``), for an episode of T steps:

    - ``start``: its first step is uniform over 0..T-1 (Decision Transformer's and CORL's sampling). A step
      t < K - 1 is in only t + 1 windows, K times fewer for the first step than for a mid-episode one,
      although every rollout starts there.
    - ``end``: its last step is uniform over 0..T-1 (d3rlpy's): windows ending before step K - 1 start at
      step 0 and are shorter; now the last K - 1 steps are in fewer windows.
    - ``cover``: its first step is uniform over -(K-1)..T-1 and the window is clipped to the episode, so
      every step is in exactly K windows (the steps before 0 are dropped, not padded).

    Padding stays at the END of a row in every case (a causal recurrent model never reads it).
    """

    def __init__(
        self,
        dataset,
        context: int,
        batch_size: int,
        return_scale: float,  # the config's dataset.return_scale (the agent divides rollout returns by the same)
        normalizer: StateNormalizer | None = None,
        seed: int | None = 0,
        max_timestep: int = DEFAULT_MAX_TIMESTEP,
        sampling: str = "start",
    ):
        if context <= 0:
            raise ValueError(f"context must be positive, got {context}")
        SAMPLER_OPTIONS["window_sampling"].check(sampling, "sampling")
        super().__init__(dataset, batch_size, return_scale, normalizer, seed, max_timestep)
        self.context, self.sampling = int(context), sampling
        # window starts allowed in each episode: before_start .. T - 1 - cut_at_end, in episode order
        self._before_start = 0 if sampling == "start" else self.context - 1
        cut_at_end = self.context - 1 if sampling == "end" else 0
        counts = self.flat.lengths + self._before_start - cut_at_end
        self._first_window = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.num_windows = int(counts.sum())  # distinct windows; ``sample`` draws indices uniformly below it

    def sample(self) -> dict:
        return self.windows(self.rng.integers(0, self.num_windows, size=self.batch_size))

    def windows(self, g: np.ndarray) -> dict:
        """The batch of windows number ``g`` (B,) (episode by episode, then by first step)."""
        episodes = np.searchsorted(self._first_window, g, side="right") - 1
        starts = g - self._first_window[episodes] - self._before_start  # may be < 0: clipped below
        first = np.maximum(starts, 0)
        real = np.minimum(starts + self.context, self.flat.lengths[episodes]) - first
        return self.flat.gather(episodes, first, self.context, self.max_timestep, row_lengths=real)

    def _config(self) -> dict:
        return {**super()._config(), "context": self.context, "sampling": self.sampling}

    def state_dict(self) -> dict:
        return {"kind": "window", "rng": self.rng.bit_generator.state, "config": self._config()}

    def load_state_dict(self, state: dict) -> None:
        self._check_config(state)
        self.rng.bit_generator.state = state["rng"]


class SequenceSampler(_Sampler):
    """B lanes walking episodes in consecutive chunks of ``chunk_len`` (None: whole episodes).

    Batches carry ``reset (B,)`` bool: true where the row starts a new episode, so the model zeroes that
    row's carried recurrent state before it. A lane whose episode ends mid-chunk is padded at the end
    of that chunk and starts its next episode in the next batch.
    """

    def __init__(
        self,
        dataset,
        chunk_len: int | None,
        batch_size: int,
        return_scale: float,  # the config's dataset.return_scale (the agent divides rollout returns by the same)
        normalizer: StateNormalizer | None = None,
        seed: int | None = 0,
        max_timestep: int = DEFAULT_MAX_TIMESTEP,
    ):
        if chunk_len is not None and chunk_len <= 0:
            raise ValueError(f"chunk_len must be positive or None, got {chunk_len}")
        super().__init__(dataset, batch_size, return_scale, normalizer, seed, max_timestep)
        self.chunk_len = None if chunk_len is None else int(chunk_len)
        self.lane_episode = np.full(self.batch_size, -1, dtype=np.int64)
        self.lane_position = np.zeros(self.batch_size, dtype=np.int64)
        self.queue = np.zeros(0, dtype=np.int64)
        self.queue_position = 0

    def _next_episodes(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self.queue_position >= len(self.queue):
                self.queue = self.rng.permutation(self.flat.num_episodes).astype(np.int64)
                self.queue_position = 0
            take = self.queue[self.queue_position : self.queue_position + n]
            self.queue_position += len(take)
            n -= len(take)
            out.append(take)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def sample(self) -> dict:
        lengths = self.flat.lengths
        if self.chunk_len is None:
            episodes = self._next_episodes(self.batch_size)
            positions = np.zeros(self.batch_size, dtype=np.int64)
            length = int(lengths[episodes].max())
            reset = np.ones(self.batch_size, dtype=bool)
            self.lane_episode, self.lane_position = episodes, lengths[episodes].copy()
        else:
            reset = (self.lane_episode < 0) | (self.lane_position >= lengths[np.maximum(self.lane_episode, 0)])
            n_new = int(reset.sum())
            if n_new:
                self.lane_episode[reset] = self._next_episodes(n_new)
                self.lane_position[reset] = 0
            episodes, positions = self.lane_episode.copy(), self.lane_position.copy()
            length = self.chunk_len
            self.lane_position += self.chunk_len
        batch = self.flat.gather(episodes, positions, length, self.max_timestep)
        batch["reset"] = reset
        return batch

    def _config(self) -> dict:
        return {**super()._config(), "chunk_len": self.chunk_len}

    def state_dict(self) -> dict:
        return {
            "kind": "sequence",
            "rng": self.rng.bit_generator.state,
            "lane_episode": self.lane_episode.tolist(),
            "lane_position": self.lane_position.tolist(),
            "queue": self.queue.tolist(),
            "queue_position": int(self.queue_position),
            "config": self._config(),
        }

    def load_state_dict(self, state: dict) -> None:
        self._check_config(state)
        self.rng.bit_generator.state = state["rng"]
        self.lane_episode = np.asarray(state["lane_episode"], dtype=np.int64)
        self.lane_position = np.asarray(state["lane_position"], dtype=np.int64)
        self.queue = np.asarray(state["queue"], dtype=np.int64)
        self.queue_position = int(state["queue_position"])
