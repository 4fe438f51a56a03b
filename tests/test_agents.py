"""The policy network, rollouts, trainers and their checkpoints."""

import json
import math

import pytest
import torch

from textgym.agents import ppo, reinforce, sft
from textgym.agents.common import TrainingError, resolve_device
from textgym.agents.rollout import SequenceView, collect, evaluate_logprobs, make_envs, sample
from textgym.agents.scripted import vector_expert
from textgym.policies import Policy, PolicyConfig, make_policy

ENV_IDS = ["textgym/GuessNumber-v0", "textgym/GuessNumberText-v0", "textgym/Reverse-v0",
           "textgym/Addition-v0", "textgym/TokenGeneration-v0"]


def random_policy(view, **kwargs):
    torch.manual_seed(0)
    policy = make_policy(**view.policy_spec(), **kwargs)
    for p in policy.parameters():
        p.data.normal_(0, 0.3)  # far from the init, so positions and tokens matter
    return policy.eval()


def _hf_policy(view, eos, separate_value):
    from transformers import GPT2Config, GPT2LMHeadModel

    from textgym.policies import HFPolicy

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=view.vocab_size, n_positions=view.max_len, n_embd=32, n_layer=2, n_head=4,
                     eos_token_id=eos, bos_token_id=eos, pad_token_id=0)
    return HFPolicy(GPT2LMHeadModel(cfg), value_model="separate" if separate_value else "shared").eval()


@pytest.mark.parametrize("separate_value", [False, True])
@pytest.mark.parametrize("kind", ["textgym", "hf"])
@pytest.mark.parametrize("env_id, distinct", [("textgym/Reverse-v0", 3), ("textgym/GuessNumberText-v0", 1)])
def test_repeated_prompts_are_read_once_and_the_rollout_is_the_same(env_id, distinct, kind, separate_value, monkeypatch):
    """Groups that share a prompt (GRPO's) prefill it once and copy its cache (select_cache); the
    rollout equals the one that reads every prompt, for textgym's policy and a Hugging Face one."""
    pytest.importorskip("transformers")
    envs = make_envs(env_id, 12, torch.device("cpu"))  # GuessNumberText: one prompt for all, multi-token replies
    view = SequenceView(envs)
    policy = random_policy(view, separate_value=separate_value) if kind == "textgym" else \
        _hf_policy(view, envs.tokenizer.eos_id, separate_value)
    batches = []
    real = type(policy).new_cache
    monkeypatch.setattr(type(policy), "new_cache", lambda self, b, slack=1: (batches.append(b), real(self, b, slack))[1])
    shared = collect(envs, view, policy, seed=5, reset_options={"group_size": 4},
                     generator=torch.Generator().manual_seed(1))
    assert batches == [distinct]  # 12 sequences in groups of 4
    monkeypatch.delattr(type(policy), "select_cache")
    plain = collect(envs, view, policy, seed=5, reset_options={"group_size": 4},
                    generator=torch.Generator().manual_seed(1))
    assert batches == [distinct, 12]
    assert torch.equal(shared.actions, plain.actions) and torch.equal(shared.mask, plain.mask)
    assert torch.allclose(shared.logprobs, plain.logprobs, atol=1e-5)
    assert torch.allclose(shared.values, plain.values, atol=1e-5)
    assert shared.mask.sum() > 12


@pytest.mark.parametrize("separate_value", [False, True])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_cached_steps_equal_the_full_forward_pass(env_id, separate_value):
    """Log-probs and values sampled step by step with the KV cache (prompts of different lengths,
    padding, multi-token feedback chunks) equal one full forward pass over the final sequences."""
    envs = make_envs(env_id, 16, torch.device("cpu"))
    view = SequenceView(envs)
    policy = random_policy(view, separate_value=separate_value)
    rollout = collect(envs, view, policy, seed=0)
    logprobs, _, values = evaluate_logprobs(policy, rollout)
    m = rollout.mask
    assert m.sum() > 16
    assert torch.allclose(logprobs[m], rollout.logprobs[m], atol=1e-5)
    assert torch.allclose(values[m], rollout.values[m], atol=1e-5)
    shifted = rollout.index(torch.arange(16))
    shifted.positions = (shifted.positions - 1).clamp(min=0)  # the check can fail
    assert not torch.allclose(evaluate_logprobs(policy, shifted)[0][m], rollout.logprobs[m], atol=1e-3)


@pytest.mark.parametrize("max_new_tokens, check_every", [(5, 8), (12, 4)])
def test_the_rollout_steps_the_policy_only_before_an_action(max_new_tokens, check_every, monkeypatch):
    """A cached step is taken only when an action follows it: none after the last possible step,
    and none once the periodic check finds every episode over."""
    task = [("ab=", ["ba"]), ("abc=", ["cba"])]
    envs = make_envs("textgym/TokenGeneration-v0", 6, torch.device("cpu"), task=task, max_new_tokens=max_new_tokens)
    view = SequenceView(envs)
    policy = random_policy(view)
    calls = []
    real = type(policy).step
    monkeypatch.setattr(type(policy), "step", lambda self, *a, **k: (calls.append(1), real(self, *a, **k))[1])
    eos = torch.tensor([envs.tokenizer.eos_id])

    def no_eos(logits):  # every episode writes all `max_new_tokens`
        return logits.index_fill(1, eos, float("-inf"))

    rollout = collect(envs, view, policy, seed=0, logits_fn=no_eos, check_every=check_every)
    assert int(rollout.mask.sum(1).min()) == max_new_tokens
    assert len(calls) == max_new_tokens  # the prefill, then one step before each later action
    calls.clear()
    ended = collect(envs, view, policy, seed=0, check_every=check_every, greedy=True,
                    logits_fn=lambda logits: torch.full_like(logits, -1.0).index_fill(1, eos, 0.0))  # eos at once
    assert int(ended.mask.sum(1).max()) == 1
    assert len(calls) == min(check_every, max_new_tokens)  # up to the check that finds them all over


def test_full_forward_ignores_the_padding():
    envs = make_envs("textgym/Reverse-v0", 4, torch.device("cpu"))
    view = SequenceView(envs)
    policy = random_policy(view)
    obs, _ = envs.reset(seed=0)
    ids, lengths = view.sequence(obs)
    logits, _ = policy(ids)
    junk = torch.where(obs["attention_mask"].bool(), ids, 5)
    logits2, _ = policy(junk)
    rows = torch.arange(4)
    assert torch.allclose(logits[rows, lengths - 1], logits2[rows, lengths - 1], atol=1e-6)


def test_sampling_controls():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 0.0]])
    assert sample(logits, greedy=True).tolist() == [1, 0]
    assert sample(logits, top_k=1, generator=torch.Generator().manual_seed(0)).tolist() == [1, 0]
    draws = torch.stack([sample(logits, temperature=100.0, generator=torch.Generator().manual_seed(s)) for s in range(200)])
    assert len(set(draws[:, 0].tolist())) == 3  # a high temperature flattens the distribution


def test_expert_demonstrations_win_every_env():
    for env_id in ENV_IDS:
        envs = make_envs(env_id, 32, torch.device("cpu"))
        demos = collect(envs, SequenceView(envs), expert=vector_expert(envs), seed=1)
        assert bool(demos.success.all()), env_id


def test_save_and_load_give_identical_outputs(tmp_path):
    envs = make_envs("textgym/Reverse-v0", 8, torch.device("cpu"))
    view = SequenceView(envs)
    policy = random_policy(view, n_layers=1, d_model=32, n_heads=2)
    policy.save(tmp_path)
    loaded = Policy.load(tmp_path)
    assert loaded.cfg == policy.cfg
    obs, _ = envs.reset(seed=0)
    ids, _ = view.sequence(obs)
    for a, b in zip(policy(ids), loaded(ids)):
        assert torch.equal(a, b)
    assert json.loads((tmp_path / "policy.json").read_text())["policy"]["d_model"] == 32


def test_loading_a_missing_or_corrupt_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="policy.json is missing"):
        Policy.load(tmp_path)
    Policy(PolicyConfig(vocab_size=9, n_actions=9, max_len=14, n_layers=1)).save(tmp_path)
    (tmp_path / "policy.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="corrupt"):
        Policy.load(tmp_path)


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    cfg = PolicyConfig(vocab_size=9, n_actions=9, max_len=14, n_layers=1)
    Policy(cfg).save(tmp_path)
    before = (tmp_path / "policy.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_model", crash)
    with pytest.raises(OSError, match="disk full"):
        Policy(cfg).save(tmp_path)
    assert (tmp_path / "policy.safetensors").read_bytes() == before
    monkeypatch.undo()
    Policy.load(tmp_path)


def test_a_policy_for_another_env_is_refused():
    policy = Policy(PolicyConfig(vocab_size=9, n_actions=9, max_len=14, n_layers=1))
    with pytest.raises(ValueError, match="the policy does not fit this env"):
        ppo.train(ppo.PPOConfig(env_id="textgym/Addition-v0", total_steps=10, num_envs=8), policy=policy, progress=False)


@pytest.mark.parametrize("cls,field,value,message", [
    (sft.SFTConfig, "max_grad_norm", -1, "max_grad_norm must be a number > 0, got -1"),
    (ppo.PPOConfig, "gamma", 5, r"gamma must be a number in \[0, 1\], got 5"),
    (ppo.PPOConfig, "gamma", "abc", r"gamma must be a number in \[0, 1\], got 'abc'"),
    (ppo.PPOConfig, "clip_coef", -1, "clip_coef must be a number > 0, got -1"),
    (ppo.PPOConfig, "target_kl", -1, "target_kl must be a number > 0 or None, got -1"),
    (ppo.PPOConfig, "update_epochs", 0, "update_epochs must be an integer >= 1, got 0"),
    (ppo.PPOConfig, "update_epochs", 1.5, "update_epochs must be an integer >= 1, got 1.5"),
    (ppo.PPOConfig, "temperature", 0, "temperature must be a number > 0, got 0"),
    (ppo.PPOConfig, "learning_rate", float("nan"), "learning_rate must be a number > 0, got nan"),
    (ppo.PPOConfig, "norm_adv", "false", "norm_adv must be true or false, got 'false'"),
    (ppo.PPOConfig, "kl_estimator", "k2", r"kl_estimator must be one of \['k1', 'k3'\], got 'k2'"),
    (reinforce.ReinforceConfig, "baseline_decay", 1, r"baseline_decay must be a number in \[0, 1\), got 1"),
    (ppo.PPOConfig, "env_kwargs", None, "env_kwargs must be a JSON object, got None"),
    (sft.SFTConfig, "eval_every", 0, "eval_every must be an integer >= 1, got 0"),
])
def test_every_config_field_is_checked_for_type_and_range(cls, field, value, message):
    with pytest.raises(ValueError, match=message):
        cls(**{field: value})


def test_an_unknown_env_id_is_a_value_error_not_a_traceback():
    with pytest.raises(ValueError, match="cannot make env 'foo'"):
        sft.train(sft.SFTConfig(env_id="foo", total_steps=10, num_envs=2), progress=False)


def test_bad_config_values():
    with pytest.raises(ValueError, match="unknown baseline 'mean'"):
        reinforce.ReinforceConfig(baseline="mean")
    with pytest.raises(ValueError, match="rloo_k >= 2 dividing num_envs=10"):
        reinforce.ReinforceConfig(num_envs=10, rloo_k=4)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="num_minibatches must be between 1 and num_envs=2"):
        ppo.PPOConfig(num_envs=2)
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1, got 0"):
        sft.SFTConfig(num_envs=0)
    with pytest.raises(ValueError, match="num_envs must be an integer >= 1"):
        reinforce.ReinforceConfig(num_envs=-4, rloo_k=2)
    with pytest.raises(ValueError, match="adaptive_kl_target needs kl_coef > 0"):
        ppo.PPOConfig(adaptive_kl_target=6.0)
    with pytest.raises(ValueError, match="divisible"):
        PolicyConfig(vocab_size=9, n_actions=9, max_len=14, d_model=30, n_heads=4)


TINY = dict(total_steps=300, num_envs=16, n_layers=1, d_model=32, n_heads=2, eval_episodes=16)


@pytest.mark.parametrize("make", [
    lambda: (ppo, ppo.PPOConfig(env_id="textgym/Reverse-v0", kl_coef=0.1, kl_estimator="k3", adaptive_kl_target=1.0, **TINY)),
    lambda: (reinforce, reinforce.ReinforceConfig(env_id="textgym/GuessNumber-v0", baseline="moving_average", **TINY)),
    lambda: (reinforce, reinforce.ReinforceConfig(env_id="textgym/GuessNumberText-v0", baseline="value", **TINY)),
    lambda: (reinforce, reinforce.ReinforceConfig(env_id="textgym/Addition-v0", baseline="rloo", rloo_k=4, **TINY)),
    lambda: (sft, sft.SFTConfig(env_id="textgym/GuessNumberText-v0", **TINY)),
])
def test_training_is_reproducible(make):
    module, cfg = make()
    a = module.train(cfg, progress=False)
    b = module.train(cfg, progress=False)
    assert a.history and a.history[-1]["env_steps"] >= cfg.total_steps
    strip = lambda h: [{k: v for k, v in m.items() if k != "time"} for m in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert a.eval == b.eval


def test_rloo_groups_share_prompts():
    envs = make_envs("textgym/Reverse-v0", 8, torch.device("cpu"))
    view = SequenceView(envs)
    rollout = collect(envs, view, random_policy(view), seed=0, reset_options={"group_size": 4})
    prompts = rollout.inputs[:, :3]
    assert torch.equal(prompts[0], prompts[3]) and torch.equal(prompts[4], prompts[7])


def test_nan_loss_stops_training_with_a_message(monkeypatch):
    monkeypatch.setattr("textgym.agents.ppo.value_loss", lambda *a, **k: torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match="iteration 1: v_loss became NaN or infinite"):
        ppo.train(ppo.PPOConfig(**TINY), progress=False)


def test_sft_then_ppo_learns_reverse():
    """A small measured learning check: SFT lifts exact match far above chance, and PPO from it
    with a KL leash keeps it (the benchmarks report the full-size numbers)."""
    cfg = dict(env_id="textgym/Reverse-v0", num_envs=128, eval_episodes=256)
    result = sft.train(sft.SFTConfig(total_steps=60_000, **cfg), progress=False)
    assert result.eval["exact_match"] > 0.2  # chance is below 0.001
    after = ppo.train(ppo.PPOConfig(total_steps=5_000, kl_coef=0.1, **cfg), policy=result.policy, progress=False)
    assert after.eval["exact_match"] > 0.2
    assert after.history[0]["ref_kl"] == pytest.approx(0.0, abs=1e-4)  # starts at the reference


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_rollout_on_cuda_matches_the_full_forward():
    envs = make_envs("textgym/GuessNumberText-v0", 64, torch.device("cuda"))
    view = SequenceView(envs)
    policy = random_policy(view).cuda()
    rollout = collect(envs, view, policy, seed=0)
    logprobs, _, _ = evaluate_logprobs(policy, rollout)
    m = rollout.mask
    assert rollout.actions.device.type == "cuda"
    assert torch.allclose(logprobs[m], rollout.logprobs[m], atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_ppo_trains_on_cuda():
    result = ppo.train(ppo.PPOConfig(device="cuda", **TINY), progress=False)
    assert next(result.policy.parameters()).device.type == "cuda"


def test_grpo_group_size_must_divide_num_envs_and_fields_are_checked():
    from textgym.agents import grpo

    with pytest.raises(ValueError, match="group_size=3 must divide num_envs=16"):
        grpo.GRPOConfig(num_envs=16, group_size=3)
    with pytest.raises(ValueError, match=r"loss_type must be one of \['token_mean', 'grpo', 'dr_grpo'\], got 'sum'"):
        grpo.GRPOConfig(loss_type="sum")
    with pytest.raises(ValueError, match=r"loss_type must be one of \['token_mean', 'grpo', 'dr_grpo'\], got 'mean'"):
        reinforce.ReinforceConfig(loss_type="mean")
    with pytest.raises(ValueError, match="group_size must be an integer >= 2, got 1"):
        grpo.GRPOConfig(group_size=1)


def test_the_shared_kl_penalty_is_zero_at_the_start_and_matches_the_estimator():
    from textgym.agents.common import frozen_reference, kl_to_reference
    from textgym.agents.configs import KLConfig
    from textgym.agents.losses import kl_penalty

    envs = make_envs("textgym/Reverse-v0", 8, torch.device("cpu"))
    view = SequenceView(envs)
    policy = make_policy(**view.policy_spec(), n_layers=1, d_model=32)
    assert frozen_reference(policy, KLConfig(kl_coef=0.0)) is None  # no copy without a penalty
    reference = frozen_reference(policy, KLConfig(kl_coef=0.1, kl_estimator="k3"))
    rollout = collect(envs, view, policy, seed=0)
    assert torch.allclose(kl_to_reference(reference, rollout, KLConfig(0.1, "k3")), torch.zeros(1), atol=1e-5)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rollout = collect(envs, view, policy, seed=0)
    ref_lp = evaluate_logprobs(reference, rollout)[0]
    for est in ("k1", "k3"):
        expected = kl_penalty(rollout.logprobs, ref_lp, est) * rollout.mask
        assert torch.allclose(kl_to_reference(reference, rollout, KLConfig(0.1, est)), expected, atol=1e-6)
    assert bool((kl_to_reference(reference, rollout, KLConfig(0.1, "k3")) >= -1e-6).all())  # k3 is never negative


@pytest.mark.parametrize("algo", ["ppo", "reinforce", "grpo"])
def test_sft_then_rl_with_the_kl_penalty_starts_at_zero_kl(algo):
    from textgym.agents import grpo

    base = dict(env_id="textgym/Reverse-v0", num_envs=16, total_steps=300, n_layers=1, d_model=32, eval_episodes=8)
    start = sft.train(sft.SFTConfig(**base), progress=False).policy
    module, cls = {"ppo": (ppo, ppo.PPOConfig), "reinforce": (reinforce, reinforce.ReinforceConfig),
                   "grpo": (grpo, grpo.GRPOConfig)}[algo]
    extra = {"rloo_k": 4} if algo == "reinforce" else {"group_size": 4} if algo == "grpo" else {}
    result = module.train(cls(**base, kl_coef=0.1, **extra), policy=start, progress=False)
    first = result.history[0]
    # The reference is the policy it starts from: PPO and REINFORCE measure the KL on the rollout,
    # before any update; GRPO logs its mean over the iteration's updates, which move a little.
    if algo == "grpo":
        assert 0 <= first["kl"] < 5e-3
    else:
        assert abs(first["ref_kl"]) < 1e-4


def test_bf16_autocast_trains_with_float32_losses():
    from textgym.agents.common import precision

    cfg = ppo.PPOConfig(env_id="textgym/Reverse-v0", num_envs=8, total_steps=80, eval_episodes=8, device="cpu",
                        bf16=True, n_layers=1, d_model=32)
    result = ppo.train(cfg, progress=False)
    assert all(math.isfinite(h["pg_loss"]) and math.isfinite(h["v_loss"]) for h in result.history)
    envs = make_envs("textgym/Reverse-v0", 8, torch.device("cpu"))
    view = SequenceView(envs)
    rollout = collect(envs, view, result.policy, seed=0, greedy=True)
    full, _, _ = evaluate_logprobs(result.policy, rollout)
    with precision(cfg, torch.device("cpu")):
        half, _, _ = evaluate_logprobs(result.policy, rollout)
    assert half.dtype == torch.float32 and next(result.policy.parameters()).dtype == torch.float32
    m = rollout.mask
    assert not torch.equal(half[m], full[m])  # the forward pass ran in bfloat16...
    torch.testing.assert_close(half[m], full[m], atol=0.1, rtol=0.05)  # ...and agrees to its precision


def test_compiled_decode_step_and_forward_match_eager():
    from textgym.agents.common import compiled

    envs = make_envs("textgym/Reverse-v0", 16, torch.device("cpu"))
    view = SequenceView(envs)
    torch.manual_seed(0)
    policy = make_policy(**view.policy_spec(), n_layers=1, d_model=32).eval()
    eager = collect(envs, view, policy, seed=0, generator=torch.Generator().manual_seed(0))
    score, step = compiled(ppo.PPOConfig(compile=True), policy)
    assert score is not policy and step is not policy.step
    fast = collect(envs, view, policy, seed=0, generator=torch.Generator().manual_seed(0), step=step)
    assert torch.equal(fast.actions, eager.actions)
    torch.testing.assert_close(fast.logprobs, eager.logprobs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(evaluate_logprobs(score, eager)[0], evaluate_logprobs(policy, eager)[0], atol=1e-5, rtol=1e-5)
