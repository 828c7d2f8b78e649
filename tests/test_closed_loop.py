"""A low training loss is not a policy: agents trained briefly on a small HalfCheetah medium dataset must
run in closed loop, scoring a good share of what the behaviour policy scored.

The guard against a policy that fits its windows and fails in closed loop: with PyTorch's default initialisation and weight decay on every parameter,
the same runs fitted their windows (training loss about 0.01) and scored 2 (HalfCheetah episodes that
never get going). Now they score 20-41 against the data's 46 (8 runs, seeds 0-3, both agents, at 800
steps), so the bar, a third of the behaviour's score at the better of two evaluations, sits well clear of
both the failure and the noise between seeds and machines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rl_minrnn.training import Trainer
from rl_minrnn.training.options import load_config
from rl_minrnn.envs.offline import load_dataset

GUARD_DATASET = Path(__file__).resolve().parent / "data" / "test" / "halfcheetah" / "guard-v0"
# The cpu profile's model and optimiser, a shorter run: 800 steps, 8 episodes at target 6000 after 400 and 800.
SETTINGS = ["model.width=64", "model.depth=3", "model.context=20", "model.tokens=fused", "train.batch_size=64",
            "train.lr=1e-3", "train.warmup_steps=200", "train.steps=800", "eval.every=400", "eval.episodes=8",
            "eval.target_returns=[6000]", "train.threads=1", "train.device=cpu", "train.log_every=100",
            "train.checkpoint_every=1000", "eval.final_episodes=0"]


@pytest.fixture(scope="module")
def guard_dataset():
    return load_dataset(GUARD_DATASET)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["decision_rnn", "decision_transformer"])
def test_short_training_runs_in_closed_loop(kind, guard_dataset, tmp_path):
    behaviour = float(np.mean([ep.rewards.sum() for ep in guard_dataset.episodes]))
    behaviour_score = 100 * (behaviour - guard_dataset.ref_min_score) / (guard_dataset.ref_max_score - guard_dataset.ref_min_score)
    trainer = Trainer(load_config(overrides=SETTINGS + [f"model.kind={kind}"]), tmp_path, progress=False,
                      dataset=guard_dataset)
    outcome = trainer.run()
    score = outcome["best"]["score"]
    assert score >= behaviour_score / 3, (
        f"{kind} scored at best {score:.1f} in closed loop (steps 400 and 800); the behaviour policy's episodes "
        f"score {behaviour_score:.1f}. A low training loss with a failing policy.")
