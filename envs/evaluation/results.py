"""What an evaluation reports: per target return the episodes' returns, normalised scores, lengths and
agent vs env time (``TargetResult``), one evaluation's results (``EvaluationResult``: JSON, TensorBoard
metrics, the score training tracks), and the Markdown table ``evaluate.py`` prints."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from rl_minrnn.envs.scores import ReferenceScores


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def _std(values: np.ndarray) -> float:
    return float(np.std(values)) if len(values) else math.nan


@dataclass
class TargetResult:
    """All episodes of one target return. Timings are per env step of the whole batch, in ms."""

    target_return: float
    returns: np.ndarray  # (N,) float64 raw returns
    lengths: np.ndarray  # (N,) int64 episode lengths
    normalized_scores: np.ndarray | None  # (N,) 100 * (R - min) / (max - min); None without references
    agent_ms: np.ndarray  # per batched step: agent.act + agent.observe for all rows
    env_ms: np.ndarray  # per batched step: env.step of every active episode
    active: np.ndarray  # per batched step: episodes stepped
    render_s: float = 0.0  # seconds spent rendering (not in env_ms)
    frames_rendered: int = 0
    wall_s: float = 0.0

    def summary(self) -> dict:
        norm = self.normalized_scores
        per_episode_env_ms = self.env_ms / np.maximum(self.active, 1)
        return {
            "target_return": float(self.target_return),
            "return_mean": float(np.mean(self.returns)),
            "return_std": _std(self.returns),
            "normalized_score_mean": float(np.mean(norm)) if norm is not None else None,
            "normalized_score_std": _std(norm) if norm is not None else None,
            "length_mean": float(np.mean(self.lengths)),
            "length_std": _std(self.lengths),
            "agent_ms_p50": _percentile(self.agent_ms, 50),
            "agent_ms_p99": _percentile(self.agent_ms, 99),
            "env_ms_p50": _percentile(self.env_ms, 50),
            "env_ms_p99": _percentile(self.env_ms, 99),
            "env_ms_per_episode_step_p50": _percentile(per_episode_env_ms, 50),
            "batched_steps": int(len(self.agent_ms)),
            "episode_steps": int(np.sum(self.lengths)),
            "render_s": float(self.render_s),
            "frames_rendered": int(self.frames_rendered),
            "wall_s": float(self.wall_s),
        }

    def to_dict(self) -> dict:
        out = self.summary()
        out["returns"] = [float(r) for r in self.returns]
        out["lengths"] = [int(n) for n in self.lengths]
        out["normalized_scores"] = (
            [float(s) for s in self.normalized_scores] if self.normalized_scores is not None else None
        )
        return out


@dataclass
class EvaluationResult:
    """One ``evaluate_agent`` call: one env, one rollout mode, one result per target return."""

    env_id: str
    mode: str | None
    num_episodes: int
    seed: int
    batch_size: int
    max_episode_steps: int | None
    ref_scores: ReferenceScores | None
    targets: list[TargetResult] = field(default_factory=list)
    video: str | None = None

    def to_dict(self) -> dict:
        refs = self.ref_scores
        return {
            "env_id": self.env_id,
            "mode": self.mode,
            "num_episodes": self.num_episodes,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "max_episode_steps": self.max_episode_steps,
            "ref_min_score": refs.min_score if refs else None,
            "ref_max_score": refs.max_score if refs else None,
            "ref_source": refs.source if refs else None,
            "video": self.video,
            "targets": [t.to_dict() for t in self.targets],
        }

    def score(self) -> float:
        """The evaluation's one number: the best target return's mean normalised score (mean return when
        there are no reference scores). Training keeps its best checkpoint and the suite compares by it."""
        summaries = [t.summary() for t in self.targets]
        key = "normalized_score_mean" if self.ref_scores is not None else "return_mean"
        return max(s[key] for s in summaries)

    def metrics(self, prefix: str = "eval") -> dict[str, float]:
        """Flat scalars for loggers, namespaced by target: ``eval/3600_normalized_score_mean``."""
        out = {}
        for target in self.targets:
            for key, value in target.summary().items():
                if key != "target_return" and value is not None:
                    out[f"{prefix}/{target.target_return:g}_{key}"] = value
        return out

    def to_markdown(self) -> str:
        return results_markdown([self])


def _pm(mean, std, digits: int) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def results_markdown(results: Sequence[EvaluationResult]) -> str:
    """One Markdown table, a row per (mode, target return)."""
    header = (
        "| env | mode | target | return | normalised score | length | agent ms/step p50 / p99 "
        "| env ms/step p50 / p99 |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    rows = [header]
    for result in results:
        for target in result.targets:
            s = target.summary()
            rows.append(
                f"| {result.env_id} | {result.mode or '-'} | {s['target_return']:g} "
                f"| {_pm(s['return_mean'], s['return_std'], 1)} "
                f"| {_pm(s['normalized_score_mean'], s['normalized_score_std'], 1)} "
                f"| {_pm(s['length_mean'], s['length_std'], 1)} "
                f"| {s['agent_ms_p50']:.2f} / {s['agent_ms_p99']:.2f} "
                f"| {s['env_ms_p50']:.2f} / {s['env_ms_p99']:.2f} |"
            )
    n = results[0].num_episodes if results else 0
    batch = results[0].batch_size if results else 0
    rows.append(
        f"\n{n} episodes per target, {batch} at a time; ms per env step of the whole batch "
        "(agent: act + observe; env: stepping every active episode)."
    )
    return "\n".join(rows)

