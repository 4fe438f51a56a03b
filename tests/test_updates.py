"""The trainers' updates: what they score, under which distribution, and how many steps they take."""

import pytest
import torch

from textgym.agents import grpo, ppo, reinforce, sft
from textgym.agents.optim import Adam
from textgym.agents.rollout import SequenceView, collect, evaluate_logprobs, make_envs, sample
from textgym.policies import make_policy

TINY = dict(num_envs=16, n_layers=1, d_model=32, n_heads=2, eval_episodes=16)


def a_policy(view, seed=0):
    torch.manual_seed(seed)
    policy = make_policy(**view.policy_spec(), n_layers=1, d_model=32, n_heads=2)
    for p in policy.parameters():
        p.data.normal_(0, 0.3)  # far from the init, so that tokens and positions matter
    return policy.eval()


def a_rollout(env_id, num_envs=32, temperature=1.0, **env_kwargs):
    envs = make_envs(env_id, num_envs, torch.device("cpu"), **env_kwargs)
    view = SequenceView(envs)
    policy = a_policy(view)
    rollout = collect(envs, view, policy, seed=0, temperature=temperature, generator=torch.Generator().manual_seed(0))
    return policy, rollout


def adam_steps(optimizer_state_owner):
    return max(int(s["step"]) for s in optimizer_state_owner.values() if "step" in s)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_recorded_logprobs_are_those_of_the_distribution_sampled_from(temperature):
    policy, rollout = a_rollout("textgym/Reverse-v0", temperature=temperature)
    logprobs, entropy, _ = evaluate_logprobs(policy, rollout, temperature)
    m = rollout.mask
    assert torch.allclose(rollout.logprobs[m], logprobs[m], atol=1e-5)
    if temperature != 1.0:  # against the untempered logits they differ: the old bug
        assert not torch.allclose(rollout.logprobs[m], evaluate_logprobs(policy, rollout)[0][m], atol=1e-3)
    # and sample() draws from exactly that distribution: empirical frequencies within noise
    logits = torch.tensor([[0.0, 1.0, 2.0]])
    probs = torch.softmax(logits / temperature, -1)[0]
    gen = torch.Generator().manual_seed(1)
    draws = torch.stack([sample(logits, temperature, generator=gen) for _ in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=3).float() / 4000
    assert torch.allclose(freq, probs, atol=0.03)


def test_an_env_action_mask_is_sampled_from_and_scored_alike():
    """GuessNumberText-v0 with action_mask=True: a rollout writes only digits and eos, and the update
    scores the actions under the same masked distribution (after a minibatch split too)."""
    policy, rollout = a_rollout("textgym/GuessNumberText-v0", temperature=1.5, action_mask=True)
    allowed = rollout.allowed
    tok = make_envs("textgym/GuessNumberText-v0", 1, torch.device("cpu")).tokenizer
    assert sorted(torch.nonzero(allowed).flatten().tolist()) == sorted(tok.encode("0123456789") + [tok.eos_id])
    m = rollout.mask
    assert allowed[rollout.actions[m]].all()
    half = rollout.index(torch.arange(16))
    assert half.allowed is allowed
    logprobs, entropy, _ = evaluate_logprobs(policy, half, 1.5)
    assert torch.allclose(half.logprobs[half.mask], logprobs[half.mask], atol=1e-5)
    assert torch.isfinite(entropy).all() and float(entropy[half.mask].max()) <= float(torch.log(allowed.sum())) + 1e-5
    # without the mask the same policy writes other tokens too, and scores differently
    _, plain = a_rollout("textgym/GuessNumberText-v0", temperature=1.5)
    assert plain.allowed is None and not allowed[plain.actions[plain.mask]].all()


@pytest.mark.parametrize("bad", [0, 0.0, -1.0])
def test_a_temperature_that_is_not_positive_is_refused(bad):
    with pytest.raises(ValueError, match=rf"temperature must be a number > 0 \(for greedy decoding use greedy=True\), got {bad}"):
        sample(torch.zeros(1, 3), temperature=bad)
    for cls in (ppo.PPOConfig, grpo.GRPOConfig, reinforce.ReinforceConfig):
        with pytest.raises(ValueError, match=f"temperature must be a number > 0, got {bad}"):
            cls(temperature=bad)


@pytest.mark.parametrize("env_id,env_kwargs", [("textgym/Reverse-v0", {}), ("textgym/GuessNumber-v0", {}),
                                               ("textgym/GuessNumberText-v0", {}), ("textgym/Mastermind-v0", {})])
def test_the_trimmed_update_scores_the_same_as_the_untrimmed_one(env_id, env_kwargs):
    policy, rollout = a_rollout(env_id, **env_kwargs)
    trimmed = rollout.trimmed()
    assert trimmed.inputs.shape[1] == int(rollout.positions.max()) + 1
    if env_id == "textgym/Mastermind-v0":  # short random games end far before the observation's end
        assert trimmed.inputs.shape[1] < rollout.inputs.shape[1]
    full, cut = evaluate_logprobs(policy, rollout), evaluate_logprobs(policy, trimmed)
    for a, b in zip(full, cut):
        assert torch.allclose(a, b, atol=1e-5)
    # the same losses and the same gradients
    grads = []
    for r in (rollout, trimmed):
        policy.zero_grad()
        logprobs, entropy, values = evaluate_logprobs(policy, r)
        (logprobs.sum() + entropy.sum() + values.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


def test_the_critic_warmup_trains_the_value_function_alone():
    envs = make_envs("textgym/Reverse-v0", 16, torch.device("cpu"))
    policy = a_policy(SequenceView(envs))
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    cfg = ppo.PPOConfig(env_id="textgym/Reverse-v0", total_steps=1, critic_warmup=1, **TINY)
    result = ppo.train(cfg, policy=policy, progress=False)
    after = result.policy.state_dict()
    value = {n for n, _ in policy.named_parameters() if n.startswith("value_head")}
    assert value and all(not torch.equal(before[n], after[n]) for n in value)  # the critic learned
    assert all(torch.equal(before[n], after[n]) for n in before if n not in value)  # nothing else moved
    # without the warm-up, the same iteration moves the policy too
    policy2 = a_policy(SequenceView(envs))
    moved = ppo.train(ppo.PPOConfig(env_id="textgym/Reverse-v0", total_steps=1, **TINY), policy=policy2, progress=False)
    assert not torch.equal(before["trunk.tok_emb.weight"] if "trunk.tok_emb.weight" in before else next(iter(before.values())),
                           moved.policy.state_dict()[next(k for k in before if k not in value)])


def test_a_policy_without_value_parameters_cannot_warm_up_a_critic():
    from textgym.agents.common import critic_parameters

    with pytest.raises(TypeError, match="critic_warmup needs the policy to say which parameters are its value function's"):
        critic_parameters(torch.nn.Linear(2, 2))


def test_rloo_takes_epochs_of_minibatches_and_its_plain_form_is_one_reinforce_step(monkeypatch):
    steps = []
    real = Adam.step
    monkeypatch.setattr(Adam, "step", lambda self, *a, **k: (steps.append(1), real(self, *a, **k))[1])
    cfg = reinforce.ReinforceConfig(env_id="textgym/Reverse-v0", total_steps=1, rloo_k=4, update_epochs=3,
                                    num_minibatches=4, **TINY)
    reinforce.train(cfg, progress=False)
    assert len(steps) == 3 * 4  # one iteration: 3 epochs of 4 minibatches

    # the plain form: one step whose gradient is -mean(log pi(a|s) * (G_t - b_t)) over the batch
    envs = make_envs("textgym/Reverse-v0", 16, torch.device("cpu"), shaping=True)
    view = SequenceView(envs)
    start = a_policy(view)
    grads = []
    monkeypatch.setattr(Adam, "step", lambda self, *a, **k: grads.append(
        [torch.zeros_like(p) if p.grad is None else p.grad.clone() for g in self.param_groups for p in g["params"]]))
    cfg = reinforce.ReinforceConfig(env_id="textgym/Reverse-v0", env_kwargs={"shaping": True}, total_steps=1, rloo_k=4,
                                    update_epochs=1, num_minibatches=1, norm_adv=False, ent_coef=0.0,
                                    max_grad_norm=1e9, **TINY)
    reinforce.train(cfg, policy=a_policy(view), progress=False)
    assert len(grads) == 1
    # the same rollout by hand (the same seeds give the same samples), and REINFORCE's loss
    from textgym.agents.common import seed_everything
    from textgym.agents.losses import masked_mean, returns_to_go, rloo_baseline

    seed_everything(0)
    rollout = collect(envs, view, start, seed=0, reset_options={"group_size": 4}, generator=torch.Generator().manual_seed(0))
    returns = returns_to_go(rollout.rewards, rollout.mask, 1.0)
    advantages = (returns - rloo_baseline(returns, 4)) * rollout.mask
    start.train()
    (-masked_mean(evaluate_logprobs(start, rollout)[0] * advantages, rollout.mask)).backward()
    expected = [torch.zeros_like(p) if p.grad is None else p.grad for p in start.parameters()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads[0], expected))
    assert any(b.abs().max() > 1e-3 for b in expected)  # a real gradient, not zeros on both sides


def test_sft_takes_epochs_of_minibatches_and_they_must_divide_the_batch(monkeypatch):
    steps = []
    real = Adam.step
    monkeypatch.setattr(Adam, "step", lambda self, *a, **k: (steps.append(1), real(self, *a, **k))[1])
    cfg = sft.SFTConfig(env_id="textgym/Reverse-v0", total_steps=1, update_epochs=2, num_minibatches=4, **TINY)
    result = sft.train(cfg, progress=False)
    assert len(steps) == 2 * 4
    assert result.history[0]["loss"] > 0
    with pytest.raises(ValueError, match=r"num_minibatches=3 must divide num_envs=16 \(every minibatch holds the same "
                                         r"number of whole episodes\)"):
        sft.SFTConfig(num_envs=16, num_minibatches=3)
    with pytest.raises(ValueError, match="num_minibatches=5 must divide num_envs=16"):
        reinforce.ReinforceConfig(num_envs=16, num_minibatches=5, rloo_k=4)


def test_sft_minibatches_learn_faster_per_demonstration():
    """The same demonstrations buy 8 optimizer steps instead of 1: a lower loss at the same budget."""
    base = dict(env_id="textgym/Reverse-v0", total_steps=20_000, num_envs=64, n_layers=1, d_model=32, n_heads=2,
                eval_episodes=16, eval_every=1000)
    one = sft.train(sft.SFTConfig(**base), progress=False).history[-1]["loss"]
    many = sft.train(sft.SFTConfig(update_epochs=2, num_minibatches=4, **base), progress=False).history[-1]["loss"]
    assert many < 0.8 * one


def test_grpo_per_token_advantages_need_per_step_rewards():
    cfg = grpo.GRPOConfig(env_id="textgym/Reverse-v0", total_steps=1, group_size=4, advantage="per_token", **TINY)
    with pytest.raises(ValueError, match=r"advantage='per_token' needs rewards paid per step, but textgym/Reverse-v0 with "
                                         r"\{\} pays only at the end of an episode: use advantage='episode' or 'auto'"):
        grpo.train(cfg, progress=False)
    with pytest.raises(ValueError, match=r"advantage must be one of \['auto', 'per_token', 'episode'\], got 'token'"):
        grpo.GRPOConfig(advantage="token")
    with pytest.raises(ValueError, match=r"zero_variance must be one of \['skip', 'keep'\], got 'drop'"):
        grpo.GRPOConfig(zero_variance="drop")


@pytest.mark.parametrize("advantage,zero_variance", [("auto", "skip"), ("episode", "keep"), ("per_token", "skip")])
def test_grpo_forms_train_and_log_the_informative_groups(advantage, zero_variance):
    cfg = grpo.GRPOConfig(env_id="textgym/Reverse-v0", env_kwargs={"shaping": True}, total_steps=200, group_size=4,
                          advantage=advantage, zero_variance=zero_variance, **TINY)
    history = grpo.train(cfg, progress=False).history
    assert all(0.0 <= h["informative_groups"] <= 1.0 for h in history)
    assert all(h["entropy"] > 0 for h in history)


@pytest.mark.parametrize("module,cls", [(ppo, ppo.PPOConfig), (grpo, grpo.GRPOConfig), (reinforce, reinforce.ReinforceConfig),
                                        (sft, sft.SFTConfig)])
def test_anneal_lr_decays_the_step_size_linearly_over_the_budget(monkeypatch, module, cls):
    lrs = []
    real = Adam.step
    monkeypatch.setattr(Adam, "step", lambda self, *a, **k: (lrs.append(self.param_groups[0]["lr"]), real(self, *a, **k))[1])
    extra = {"group_size": 4} if cls is grpo.GRPOConfig else {}
    history = module.train(cls(env_id="textgym/Reverse-v0", total_steps=200, learning_rate=1e-3, anneal_lr=True,
                               **extra, **TINY), progress=False).history
    steps = [0] + [h["env_steps"] for h in history[:-1]]  # the progress when each iteration started
    per_iteration = len(lrs) // len(history)
    expected = [1e-3 * (1 - s / 200) for s in steps for _ in range(per_iteration)]
    assert lrs == pytest.approx(expected)
    assert lrs[0] == 1e-3 and lrs[-1] < 1e-3


def test_group_minibatches_keep_groups_whole_and_one_episode_groups_are_the_plain_split():
    from textgym.agents.common import minibatches

    torch.manual_seed(3)
    parts = list(minibatches(32, 4, torch.device("cpu"), group_size=8))
    assert [len(p) for p in parts] == [8] * 4
    assert sorted(torch.cat(parts).tolist()) == list(range(32))
    assert all(len(set((p // 8).tolist())) == 1 for p in parts)  # each minibatch is one whole group
    assert len({int(p[0]) // 8 for p in parts}) == 4
    two_groups = list(minibatches(32, 2, torch.device("cpu"), group_size=8))
    for p in two_groups:  # two whole groups each
        groups = (p // 8).tolist()
        assert len(p) == 16 and len(set(groups)) == 2 and all(groups.count(g) == 8 for g in groups)
    torch.manual_seed(3)
    plain = list(minibatches(32, 4, torch.device("cpu")))
    torch.manual_seed(3)
    assert torch.equal(torch.cat(plain), torch.randperm(32))  # group_size=1: the random split of episodes, as before


def test_update_minibatches_are_epochs_of_fresh_splits_with_their_masks():
    from types import SimpleNamespace

    from textgym.agents.common import minibatches, update_minibatches

    class Batch:
        def index(self, idx):
            return ("rows", idx)

    mask = torch.arange(12).reshape(12, 1) % 5 != 0
    cfg = SimpleNamespace(update_epochs=3, num_minibatches=4)
    torch.manual_seed(0)
    got = list(update_minibatches(Batch(), mask, cfg, torch.device("cpu"), group_size=3))
    torch.manual_seed(0)
    expected = [idx for _ in range(3) for idx in minibatches(12, 4, torch.device("cpu"), 3)]
    assert len(got) == 12
    for (idx, mb, mb_mask), want in zip(got, expected):
        assert torch.equal(idx, want) and mb == ("rows", idx) and torch.equal(mb_mask, mask[idx])
    for epoch in range(3):  # each epoch is one pass over every episode
        assert sorted(torch.cat([idx for idx, _, _ in got[4 * epoch: 4 * epoch + 4]]).tolist()) == list(range(12))
    assert [idx for idx, _, _ in update_minibatches(Batch(), mask, SimpleNamespace(update_epochs=2, num_minibatches=1),
                                                      torch.device("cpu"))] == [slice(None)] * 2


def test_seconds_trained_count_the_earlier_sessions_of_a_resumed_run(monkeypatch):
    from textgym.agents import state

    now = [1000.0]
    monkeypatch.setattr(state.time, "time", lambda: now[0])
    resumed = state.Progress(iteration=5, env_steps=50, elapsed=30.0)
    now[0] += 2.5
    assert resumed.seconds() == 32.5 and state.Progress().seconds() == 0.0


def test_group_minibatches_need_whole_groups_per_minibatch(monkeypatch):
    with pytest.raises(ValueError, match=r"group_minibatches=True keeps groups whole, so num_minibatches must divide "
                                         r"the number of groups \(num_envs / group_size = 4\), got num_minibatches=8"):
        grpo.GRPOConfig(num_envs=32, group_size=8, num_minibatches=8, group_minibatches=True)
    with pytest.raises(ValueError, match="group_minibatches"):
        grpo.GRPOConfig(group_minibatches="yes")
    with pytest.raises(ValueError, match=r"num_minibatches must divide the number of groups \(num_envs / rloo_k = 4\), "
                                         r"got num_minibatches=8"):
        reinforce.ReinforceConfig(num_envs=16, rloo_k=4, num_minibatches=8, group_minibatches=True)
    with pytest.raises(ValueError, match="group_minibatches=True keeps RLOO's groups whole: it needs baseline='rloo', "
                                         "got 'value'"):
        reinforce.ReinforceConfig(baseline="value", group_minibatches=True)
    seen = []
    real = evaluate_logprobs

    def spy(policy, rollout, temperature=1.0):
        seen.append(rollout.inputs.shape[0])
        return real(policy, rollout, temperature)

    monkeypatch.setattr(grpo, "evaluate_logprobs", spy)
    cfg = grpo.GRPOConfig(env_id="textgym/Reverse-v0", total_steps=1, group_size=4, num_minibatches=2,
                          group_minibatches=True, update_epochs=1, **TINY)
    grpo.train(cfg, progress=False)
    assert seen == [8, 8]  # two minibatches of two whole groups of 4
    seen.clear()
    monkeypatch.setattr(reinforce, "evaluate_logprobs", spy)
    cfg = reinforce.ReinforceConfig(env_id="textgym/Reverse-v0", total_steps=1, rloo_k=4, num_minibatches=4,
                                    group_minibatches=True, update_epochs=1, **TINY)
    reinforce.train(cfg, progress=False)
    assert seen == [4, 4, 4, 4]
