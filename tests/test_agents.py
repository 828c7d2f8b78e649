"""Decision agents: rollouts (recurrent and window) agree with the training forward pass."""

import numpy as np
import pytest
import torch

from rl_minrnn.agents import DecisionRNN, DecisionTransformer, build_agent
from rl_minrnn.configs.schema import ModelConfig

OBS, ACT, K = 5, 2, 6


def make_agent(kind="rnn", seed=0, **kwargs):
    """PyTorch's default initialisation unless told otherwise: its larger random weights keep untrained
    outputs far from 0, so the equalities below compare numbers that a wrong rollout would change."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    stats = dict(state_mean=rng.normal(size=OBS), state_std=rng.uniform(0.5, 2.0, size=OBS), return_scale=100.0)
    cls = DecisionRNN if kind == "rnn" else DecisionTransformer
    kwargs = {"init": "pytorch", "width": 16, **kwargs}
    return cls(OBS, ACT, context=K, depth=2, dropout=0.0, **stats, **kwargs).double().eval()


def episode(length, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(length, OBS)) * 3, rng.uniform(-1, 1, size=(length, ACT)),
            rng.uniform(0, 300, size=length))


def normalised(agent, states, actions, rtg):
    """The batch the training forward sees for one raw episode (B = 1)."""
    s = (torch.as_tensor(states) - agent.state_mean.double()) / agent.state_std.double()
    r = torch.as_tensor(rtg) / agent.return_scale.double()
    t = torch.arange(len(states))
    return s[None], torch.as_tensor(actions)[None], r[None], t[None]


def rollout(agent, states, actions, rtg, mode, batch=1):
    """Feed a recorded episode through act/observe (teacher forcing): the actions act() returns."""
    agent.reset(batch, mode)
    agent.double()
    out = []
    for t in range(len(states)):
        a = agent.act(np.repeat(rtg[t : t + 1], batch), np.repeat(states[t : t + 1], batch, 0))
        out.append(a)
        agent.observe(np.repeat(actions[t : t + 1], batch, 0))
    return np.stack(out, 1)  # (B, T, act)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
@pytest.mark.parametrize("tokens", ["interleaved", "fused"])
def test_recurrent_rollout_equals_forward_over_the_episode(cell, tokens):
    """O(1) steps with a carried state == one forward pass over the whole 50-step episode."""
    agent = make_agent(cell=cell, tokens=tokens, conv=3 if cell == "mingru" else 0)
    states, actions, rtg = episode(50)
    with torch.no_grad():
        preds, _ = agent(*normalised(agent, states, actions, rtg))
    acted = rollout(agent, states, actions, rtg, "recurrent", batch=2)
    np.testing.assert_allclose(acted[0], preds[0].numpy(), rtol=0, atol=1e-5)  # act() returns float32
    np.testing.assert_array_equal(acted[0], acted[1])


@pytest.mark.parametrize("kind", ["rnn", "dt"])
@pytest.mark.parametrize("tokens", ["interleaved", "fused"])
def test_window_rollout_reruns_the_last_k_steps(kind, tokens):
    agent = make_agent(kind, tokens=tokens)
    states, actions, rtg = episode(15)
    acted = rollout(agent, states, actions, rtg, "window")
    s, a, r, t = normalised(agent, states, actions, rtg)
    for step in range(15):
        lo = max(0, step - K + 1)
        window_actions = a[:, lo : step + 1].clone()
        window_actions[:, -1] = 0  # the current action is not known yet
        with torch.no_grad():
            preds, _ = agent(s[:, lo : step + 1], window_actions, r[:, lo : step + 1], t[:, lo : step + 1])
        np.testing.assert_allclose(acted[0, step], preds[0, -1].numpy(), atol=1e-5)


@pytest.mark.parametrize("tokens", ["interleaved", "fused"])
@pytest.mark.slow
def test_carried_state_over_chunks_equals_one_pass(tokens):
    agent = make_agent(tokens=tokens)
    s, a, r, t = normalised(agent, *episode(40))
    with torch.no_grad():
        whole, _ = agent(s, a, r, t)
        first, state = agent(s[:, :13], a[:, :13], r[:, :13], t[:, :13])
        second, _ = agent(s[:, 13:], a[:, 13:], r[:, 13:], t[:, 13:], state=state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-10, atol=1e-10)


def test_padding_at_the_end_does_not_change_real_outputs():
    for kind in ("rnn", "dt"):
        agent = make_agent(kind)
        s, a, r, t = normalised(agent, *episode(K))
        with torch.no_grad():
            full, _ = agent(s, a, r, t)
            s2, a2, r2 = s.clone(), a.clone(), r.clone()
            s2[:, 4:], a2[:, 4:], r2[:, 4:] = 99.0, 0.5, -3.0  # garbage where the mask would be 0
            padded, _ = agent(s2, a2, r2, t)
        torch.testing.assert_close(padded[:, :4], full[:, :4])


def test_rollout_modes_and_input_checks():
    rnn, dt = make_agent("rnn"), make_agent("dt")
    assert rnn.default_rollout_mode == "recurrent" and "window" in rnn.rollout_modes
    assert dt.rollout_modes == ("window",)
    with pytest.raises(ValueError, match="rollout modes"):
        dt.reset(2, "recurrent")
    rnn.reset(2)
    with pytest.raises(ValueError, match="act expects"):
        rnn.act(np.zeros(3), np.zeros((3, OBS)))


def test_build_agent_from_config():
    agent = build_agent(ModelConfig(kind="decision_transformer", width=32, heads=2, context=10), OBS, ACT)
    assert isinstance(agent, DecisionTransformer) and agent.context == 10
    agent = build_agent(ModelConfig(cell="minlstm", tokens="fused", width=32), OBS, ACT)
    assert isinstance(agent, DecisionRNN) and agent.embed.layout == "fused"


@pytest.mark.parametrize("kind", ["rnn", "dt"])
def test_gpt_initialisation(kind):
    """Every Linear/Embedding weight N(0, 0.02) with zero biases, LayerNorms the identity; the buffers
    (normalisation statistics) untouched. PyTorch's default leaves the timestep embedding N(0, 1)."""
    agent = make_agent(kind, init="gpt", width=64)
    for name, module in agent.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            w = module.weight.detach()
            if w.numel() >= 1000:  # enough samples for the standard deviation to be within 20%
                assert 0.016 < float(w.std()) < 0.024, (name, float(w.std()))
            assert float(w.abs().max()) < 0.02 * 7, name
            if getattr(module, "bias", None) is not None:
                assert not module.bias.any(), name
        if isinstance(module, torch.nn.LayerNorm):
            assert bool((module.weight == 1).all()) and not module.bias.any(), name
    assert not torch.equal(agent.state_mean, torch.zeros(OBS, dtype=agent.state_mean.dtype))
    default = make_agent(kind, init="pytorch", width=64)
    assert 0.9 < float(default.embed.timestep.weight.detach().std()) < 1.1
    # d3rlpy's: GPT's except PyTorch's defaults (uniform, +-1/sqrt(fan_in)) on the R/s/a projections and head
    d3 = make_agent(kind, init="d3rlpy", width=64)
    assert float(d3.embed.ret.weight.detach().abs().max()) > 0.5 and d3.embed.ret.bias.any()  # fan_in 1: U(-1, 1)
    assert float(d3.head.linear.weight.detach().std()) > 0.05
    torch.testing.assert_close(d3.embed.timestep.weight.detach().std(), torch.tensor(0.02, dtype=torch.float64), atol=4e-3, rtol=0)
    with pytest.raises(ValueError, match="init must be one of"):
        make_agent(kind, init="xavier")


@pytest.mark.parametrize("kind", ["rnn", "dt"])
def test_weight_decay_groups(kind):
    """``matrices``: exactly the Linear/conv weights decay; every parameter is in one group once."""
    from rl_minrnn.training.optimizer import parameter_groups

    agent = make_agent(kind, conv=3) if kind == "rnn" else make_agent(kind)
    decay, no_decay = parameter_groups(agent, 1e-4, "matrices")
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    expected = {id(m.weight) for m in agent.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d))}
    assert {id(p) for p in decay["params"]} == expected
    all_ids = [id(p) for group in (decay, no_decay) for p in group["params"]]
    assert sorted(all_ids) == sorted(id(p) for p in agent.parameters())
    assert id(agent.embed.timestep.weight) in {id(p) for p in no_decay["params"]}
    (everything,) = parameter_groups(agent, 1e-4, "all")
    assert len(everything["params"]) == len(list(agent.parameters()))


@pytest.mark.slow
def test_the_fused_optimiser_updates_the_weights_as_the_default_loop_does():
    """``build_optimizer`` runs torch's fused AdamW on the CPU; over warm-up and both decay groups it gives the
    per-parameter loop's weights to within an ulp or two, and a checkpoint saved with foreach resumes with it."""
    from rl_minrnn.configs.schema import TrainConfig
    from rl_minrnn.training.optimizer import build_optimizer, parameter_groups

    train = TrainConfig(lr=1e-3, weight_decay=1e-4, weight_decay_on="matrices", warmup_steps=3, lr_schedule="constant",
                        ema=0.0)
    fused_agent, loop_agent = make_agent("rnn").float(), make_agent("rnn").float()
    fused, fused_schedule = build_optimizer(fused_agent, train)
    assert fused.defaults["fused"] and not fused.defaults["foreach"]
    loop = torch.optim.AdamW(parameter_groups(loop_agent, 1e-4, "matrices"), lr=1e-3, foreach=False)
    loop_schedule = torch.optim.lr_scheduler.LambdaLR(loop, lambda step: min(1.0, (step + 1) / 3))
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        for p, q in zip(fused_agent.parameters(), loop_agent.parameters()):
            p.grad = torch.randn(p.shape, generator=gen) * 0.1
            q.grad = p.grad.clone()
        fused.step(), loop.step(), fused_schedule.step(), loop_schedule.step()
    for (name, p), q in zip(fused_agent.named_parameters(), loop_agent.parameters()):
        ulp = torch.finfo(torch.float32).eps * q.detach().abs().clamp_min(1e-3)
        assert ((p - q).abs() <= 2 * ulp).all(), name
    assert not torch.equal(fused_agent.head.linear.weight, make_agent("rnn").float().head.linear.weight)
    saved_agent = make_agent("rnn").float()
    saved = torch.optim.AdamW(parameter_groups(saved_agent, 1e-4, "matrices"), lr=1e-3, foreach=True)
    for p in saved_agent.parameters():
        p.grad = torch.ones_like(p)
    saved.step()
    resumed, _ = build_optimizer(saved_agent, train)
    resumed.load_state_dict(saved.state_dict())
    assert all(group["foreach"] is True and not group["fused"] for group in resumed.param_groups)


def test_every_model_option_reaches_an_agent_and_every_agent_option_is_configurable():
    """The factory passes an agent the config fields its constructor names (its own and DecisionAgent's):
    a field no agent takes would be silently ignored, an option no field sets could never be chosen."""
    import dataclasses

    from rl_minrnn.agents.factory import AGENTS, agent_kwargs, constructor_options

    fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"kind"}
    options = {kind: set(constructor_options(cls)) - {"state_mean", "state_std", "return_scale"} for kind, cls in AGENTS.items()}
    assert set().union(*options.values()) == fields
    assert set(agent_kwargs(ModelConfig(kind="decision_transformer"))) == options["decision_transformer"]
    assert "cell" in options["decision_rnn"] and "cell" not in options["decision_transformer"]
