"""Hugging Face causal LMs as policies (GPT-2 and Llama, built locally), LoRA, and classifier rewards."""

import json

import gymnasium as gym
import pytest
import torch

pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from textgym.agents import grpo, ppo, reinforce, sft  # noqa: E402
from textgym.agents.common import kl_to_reference  # noqa: E402
from textgym.agents.rollout import SequenceView, collect, evaluate_logprobs, make_envs  # noqa: E402
from textgym.cli import main  # noqa: E402
from textgym.policies import HFPolicy, load_policy  # noqa: E402
from textgym.tokenizers import CharTokenizer  # noqa: E402

CHARS = "abcdef="


def char_tokenizer(pad_is_eos: bool = False) -> PreTrainedTokenizerFast:
    """Reverse-v0's own character tokenizer, as a transformers tokenizer."""
    tok = CharTokenizer(CHARS).to_transformers()
    if pad_is_eos:
        tok.pad_token = tok.eos_token
    return tok


def tiny_lm(arch: str, vocab: int, eos: int, pad: int, positions: int = 64):
    torch.manual_seed(0)
    if arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_positions=positions, n_embd=32, n_layer=2, n_head=4,
                         eos_token_id=eos, bos_token_id=eos, pad_token_id=pad)
        return GPT2LMHeadModel(cfg)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=positions, eos_token_id=eos, bos_token_id=eos,
                      pad_token_id=pad)
    return LlamaForCausalLM(cfg)


@pytest.fixture
def model_dir(tmp_path):
    """A tiny random GPT-2 and its character tokenizer, saved as a user's downloaded model would be."""
    tok = char_tokenizer()
    tiny_lm("gpt2", len(tok), tok.eos_token_id, tok.pad_token_id).save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")
    return tmp_path / "gpt2"


def env_policy(arch: str, env_id: str = "textgym/Reverse-v0", num_envs: int = 8, **env_kwargs):
    envs = make_envs(env_id, num_envs, torch.device("cpu"), **env_kwargs)
    view = SequenceView(envs)
    tok = envs.tokenizer
    policy = HFPolicy(tiny_lm(arch, view.vocab_size, tok.eos_id, tok.pad_id, positions=max(64, view.max_len)))
    return envs, view, policy


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_cached_steps_equal_one_full_forward_pass(arch):
    envs, view, policy = env_policy(arch)
    policy.eval()
    rollout = collect(envs, view, policy, seed=0, generator=torch.Generator().manual_seed(0))
    logprobs, _, values = evaluate_logprobs(policy, rollout)
    m = rollout.mask
    assert int(m.sum()) > 8 * 2  # episodes of several steps
    torch.testing.assert_close(logprobs[m], rollout.logprobs[m], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(values[m], rollout.values[m], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch, value_model", [("gpt2", "shared"), ("llama", "shared"), ("llama", "separate")])
def test_a_shared_prompt_computed_once_gives_the_same_outputs_and_gradients(arch, value_model):
    """forward(..., prefix=P): rows that repeat their first P ids (GRPO's groups) read them once."""
    torch.manual_seed(0)
    policy = HFPolicy(tiny_lm(arch, 20, 1, 0), value_model=value_model)
    torch.nn.init.normal_(policy.value_head.weight)
    prompts = torch.randint(2, 20, (2, 5))
    inputs = torch.cat([prompts[torch.tensor([0, 1, 0, 0, 1])], torch.randint(2, 20, (5, 4))], 1)  # (5, 9)
    at = torch.tensor([[4, 5, 6, 7]]).expand(5, -1)

    def outputs(prefix):
        policy.zero_grad()
        logits, values = policy(inputs, at=at, prefix=prefix)
        (logits.log_softmax(-1)[..., 3].sum() + values.sum()).backward()
        return logits.detach(), values.detach(), {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}

    full, shared = outputs(None), outputs(5)
    torch.testing.assert_close(shared[0], full[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared[1], full[1], atol=1e-5, rtol=1e-5)
    assert full[2].keys() == shared[2].keys() and len(full[2]) > 10
    for name, grad in full[2].items():  # gradients reach the hundreds: float32's resolution there is ~1e-5
        scale = float(grad.abs().max())
        torch.testing.assert_close(shared[2][name], grad, atol=1e-5 + 1e-6 * scale, rtol=1e-4, msg=name)
    distinct, pick, _ = policy._shared_prefix(inputs, 5)
    assert len(distinct) == 2 and pick.tolist() in ([0, 1, 0, 0, 1], [1, 0, 1, 1, 0])
    assert policy._shared_prefix(inputs, 6) is None  # no two rows share 6 ids: the plain pass
    assert policy._shared_prefix(inputs, 9) is None  # nothing after the prompt


def test_grpo_scores_a_group_minibatch_as_the_plain_forward_does():
    """evaluate_logprobs passes the shortest prompt as the shared prefix; a GRPO rollout's groups share it."""
    envs, view, policy = env_policy("llama")
    policy.eval()
    rollout = collect(envs, view, policy, seed=0, reset_options={"group_size": 4}, generator=torch.Generator().manual_seed(0))
    assert policy._shared_prefix(rollout.inputs, int(rollout.positions[:, 0].min()) + 1) is not None
    logprobs, entropy, values = evaluate_logprobs(policy, rollout)
    plain = evaluate_logprobs(lambda inputs, at: policy(inputs, at=at), rollout)
    m = rollout.mask
    for got, want in zip((logprobs, entropy, values), plain):
        torch.testing.assert_close(got[m], want[m], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logprobs[m], rollout.logprobs[m], atol=1e-4, rtol=1e-4)


def test_cached_chunks_equal_the_full_pass_in_a_multi_turn_game():
    """A text game's replies add many positions per step, written past some sequences' ends."""
    envs, view, policy = env_policy("gpt2", "textgym/Mastermind-v0")
    assert view.tokens_per_step > 1
    policy.eval()
    rollout = collect(envs, view, policy, seed=1, generator=torch.Generator().manual_seed(1))
    logprobs, _, _ = evaluate_logprobs(policy, rollout)
    m = rollout.mask
    torch.testing.assert_close(logprobs[m], rollout.logprobs[m], atol=1e-4, rtol=1e-4)


def test_a_separate_value_model_gives_values_of_its_own():
    envs, view, _ = env_policy("gpt2")
    tok = envs.tokenizer
    policy = HFPolicy(tiny_lm("gpt2", view.vocab_size, tok.eos_id, tok.pad_id), value_model="separate")
    torch.nn.init.normal_(policy.value_head.weight)
    ids = torch.randint(0, view.vocab_size, (2, 6))
    policy.lm.base_model.wte.weight.data.zero_()  # the policy's trunk changes; the value trunk must not
    _, v1 = policy(ids)
    assert v1.abs().sum() > 0 and v1.std() > 0
    assert not any(p is q for p in policy.value_trunk.parameters() for q in policy.lm.parameters())


@pytest.mark.parametrize("value_model", ["shared", "separate"])
def test_a_policy_is_built_on_its_models_device(value_model):
    """A model already on a device (here ``meta``, which needs no GPU) keeps the whole policy there:
    the value head and the rollout's cache too, so ``HFPolicy(lm.cuda())`` needs no ``.cuda()``."""
    lm = tiny_lm("gpt2", 20, 1, 0).to("meta")
    policy = HFPolicy(lm, value_model=value_model)
    assert {p.device.type for p in policy.parameters()} == {"meta"}
    assert policy.new_cache(3).slot_pos.device.type == "meta"


@pytest.mark.parametrize("algo", [sft, ppo, reinforce, grpo])
def test_every_trainer_trains_an_hf_policy(algo):
    envs, view, policy = env_policy("gpt2")
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    cls = {sft: sft.SFTConfig, ppo: ppo.PPOConfig, reinforce: reinforce.ReinforceConfig, grpo: grpo.GRPOConfig}[algo]
    extra = {"kl_coef": 0.05} if algo is not sft else {}
    if algo is grpo:
        extra["group_size"] = 4
    result = algo.train(cls(env_id="textgym/Reverse-v0", num_envs=8, total_steps=64, eval_episodes=8, device="cpu",
                            **extra), policy=policy, progress=False)
    assert result.policy is policy and result.history
    changed = [k for k, v in policy.state_dict().items() if not torch.equal(v, before[k])]
    assert any("transformer" in k for k in changed)


def test_save_writes_a_model_that_transformers_loads(tmp_path):
    envs, view, policy = env_policy("llama")
    torch.nn.init.normal_(policy.value_head.weight)
    policy.save(tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "hf_model", local_files_only=True)
    ids = torch.randint(0, view.vocab_size, (3, 7))
    logits, values = policy(ids)
    torch.testing.assert_close(plain(ids).logits, logits)
    loaded = load_policy(tmp_path)
    assert isinstance(loaded, HFPolicy)
    torch.testing.assert_close(loaded(ids)[0], logits)
    torch.testing.assert_close(loaded(ids)[1], values)
    assert json.loads((tmp_path / "policy.json").read_text())["kind"] == "hf"


def test_cli_trains_from_a_model_directory_with_its_tokenizer(tmp_path, model_dir):
    run = tmp_path / "run"
    argv = ["train", "sft", "--env", "textgym/Reverse-v0", "--init", str(model_dir), "--total-steps", "64",
            "--num-envs", "8", "--out", str(run), "--quiet", "--recipe", "none", "--device", "cpu",
            "--set", "eval_episodes=8"]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["env_kwargs"]["tokenizer"] == str(model_dir)  # the env tokenized with the model's tokenizer
    assert (run / "hf_model" / "tokenizer.json").is_file()
    AutoModelForCausalLM.from_pretrained(run / "hf_model", local_files_only=True)
    # the run goes on with PPO from the saved HF policy, and evaluates
    assert main(["train", "ppo", "--env", "textgym/Reverse-v0", "--init", str(run), "--total-steps", "32",
                 "--num-envs", "8", "--out", str(tmp_path / "ppo"), "--quiet", "--recipe", "none", "--device", "cpu",
                 "--set", "eval_episodes=8"]) == 0
    assert main(["eval", str(tmp_path / "ppo"), "--episodes", "8", "--json"]) == 0


def test_eos_is_trained_when_pad_and_eos_are_one_token(tmp_path):
    """The loss mask comes from the env's steps, not from the pad id, so the eos action is learned."""
    tok = char_tokenizer(pad_is_eos=True)
    tok.save_pretrained(tmp_path / "tok")
    envs, view, policy = env_policy("gpt2", tokenizer=str(tmp_path / "tok"))
    assert envs.tokenizer.pad_id == envs.tokenizer.eos_id
    demos = collect(envs, view, expert=envs.expert, seed=0)
    last = demos.mask.sum(1) - 1
    rows = torch.arange(len(last))
    assert bool((demos.actions[rows, last] == envs.tokenizer.eos_id).all())
    logprobs, _, _ = evaluate_logprobs(policy, demos)
    logprobs[rows, last].sum().backward()
    assert policy.lm.get_output_embeddings().weight.grad[envs.tokenizer.eos_id].abs().sum() > 0


def test_lora_trains_adapters_only_and_its_reference_is_the_base_model(tmp_path):
    pytest.importorskip("peft")
    envs, view, base = env_policy("gpt2")
    base_copy = HFPolicy(tiny_lm("gpt2", view.vocab_size, envs.tokenizer.eos_id, envs.tokenizer.pad_id,
                                 positions=max(64, view.max_len)))
    policy = HFPolicy(base.lm, lora_r=4, lora_alpha=8)
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("value_head") for n in trainable)
    frozen = {n: p.detach().clone() for n, p in policy.named_parameters() if not p.requires_grad}
    result = ppo.train(ppo.PPOConfig(env_id="textgym/Reverse-v0", num_envs=8, total_steps=96, eval_episodes=8,
                                     device="cpu", kl_coef=0.1, learning_rate=1e-2), policy=policy, progress=False)
    assert all(torch.equal(p, frozen[n]) for n, p in policy.named_parameters() if n in frozen)
    assert result.history[-1]["ref_kl"] != 0  # the adapters moved the policy away from its reference
    ids = torch.randint(0, view.vocab_size, (2, 5))
    reference = policy.frozen_reference()
    torch.testing.assert_close(reference(ids)[0], base_copy(ids)[0])  # adapters off = the base model, no copy
    assert not torch.allclose(policy(ids)[0], base_copy(ids)[0])
    rollout = collect(envs, view, policy.eval(), seed=3, generator=torch.Generator().manual_seed(3))
    kl = kl_to_reference(reference, rollout, ppo.PPOConfig(kl_coef=0.1))
    assert kl.shape == rollout.rewards.shape
    policy.save(tmp_path)  # merged: transformers loads it with no peft, and it scores as the LoRA policy does
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf_model", local_files_only=True)
    torch.testing.assert_close(merged(ids).logits, policy(ids)[0], atol=1e-5, rtol=1e-5)


def test_cli_lora_setting(tmp_path, model_dir):
    pytest.importorskip("peft")
    run = tmp_path / "run"
    assert main(["train", "reinforce", "--env", "textgym/Reverse-v0", "--init", str(model_dir), "--total-steps", "32",
                 "--num-envs", "8", "--out", str(run), "--quiet", "--recipe", "none", "--device", "cpu",
                 "--set", "lora_r=4", "--set", "eval_episodes=8", "--set", "kl_coef=0.05"]) == 0
    assert json.loads((run / "config.json").read_text())["config"]["lora_r"] == 4
    AutoModelForCausalLM.from_pretrained(run / "hf_model", local_files_only=True)


# -- bad input -----------------------------------------------------------------------------------


def test_a_directory_with_neither_run_nor_model(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match="neither a textgym run .* nor a Hugging Face model"):
        load_policy(tmp_path)
    assert main(["train", "ppo", "--init", str(tmp_path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "neither a textgym run" in capsys.readouterr().err


def test_a_model_whose_vocabulary_is_not_the_envs(tmp_path):
    envs = make_envs("textgym/Reverse-v0", 2, torch.device("cpu"))
    small = HFPolicy(tiny_lm("gpt2", 6, 1, 0))
    with pytest.raises(ValueError, match="vocabulary has 9 tokens but the policy's has only 6"):
        SequenceView(envs).check(small)
    other_eos = HFPolicy(tiny_lm("gpt2", 9, 5, 0))
    with pytest.raises(ValueError, match=r"ends a message with token id 1, but the model's eos ids are \[5\]"):
        SequenceView(envs).check(other_eos)
    with pytest.raises(ValueError, match="the env has 9 actions .* the policy writes 12"):
        SequenceView(envs).check(HFPolicy(tiny_lm("gpt2", 12, 1, 0)))


def test_a_model_with_too_short_a_context(tmp_path):
    envs = make_envs("textgym/Reverse-v0", 2, torch.device("cpu"))
    short = HFPolicy(tiny_lm("gpt2", 9, 1, 0, positions=8))
    with pytest.raises(ValueError, match="reach 14 positions but the policy reads at most 8"):
        SequenceView(envs).check(short)


def test_lora_without_peft_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_peft(name, *args, **kwargs):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("No module named 'peft'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    with pytest.raises(ImportError, match="pip install peft"):
        HFPolicy(tiny_lm("gpt2", 10, 1, 0), lora_r=8)


def test_lora_needs_a_hugging_face_model(tmp_path):
    with pytest.raises(ValueError, match="lora_r > 0 trains LoRA adapters on a Hugging Face model"):
        ppo.PPOConfig(lora_r=8)


# -- classifier rewards --------------------------------------------------------------------------


@pytest.fixture
def classifier_dir(tmp_path):
    """A tiny sentiment classifier: its NEGATIVE/POSITIVE head reads whether the text holds 'a'."""
    from transformers import GPT2ForSequenceClassification

    tok = char_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=16, n_layer=1, n_head=2, num_labels=2,
                     id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
                     pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(cfg)
    model.save_pretrained(tmp_path / "clf")
    tok.save_pretrained(tmp_path / "clf")
    return tmp_path / "clf"


def test_hf_classifier_reward_scores_completions_in_batches(classifier_dir):
    from transformers import AutoModelForSequenceClassification

    from textgym.rewards import EpisodeBatch, make
    from textgym.tokenizers import CharTokenizer

    reward = make("hf_classifier", path=str(classifier_dir), label="POSITIVE", batch_size=2)
    texts = ["abc", "fed", "a", "bbbbbb", "cafe"]
    batch = EpisodeBatch.from_texts(["x="] * 5, texts, [["r"]] * 5, CharTokenizer("abcdefrx="))
    scores = reward(batch)
    model = AutoModelForSequenceClassification.from_pretrained(classifier_dir).eval()
    tok = char_tokenizer()
    with torch.no_grad():
        expected = torch.stack([model(**tok(t, return_tensors="pt")).logits.softmax(-1)[0, 1] for t in texts])
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
    logit = make("hf_classifier", path=str(classifier_dir), label=0, output="logit")(batch)
    assert logit.shape == (5,) and not torch.allclose(logit, scores)
    both = make([(reward, 2.0), ("exact_match", 1.0)])(batch)
    torch.testing.assert_close(both, 2 * scores)


def test_hf_classifier_reward_in_an_env(classifier_dir):
    env = gym.make("textgym/Reverse-v0", reward="hf_classifier",
                   reward_kwargs={"path": str(classifier_dir), "label": "POSITIVE"})
    obs, _ = env.reset(seed=0)
    done, total = False, 0.0
    while not done:
        obs, r, term, trunc, _ = env.step(env.unwrapped.expert(obs))
        total, done = total + r, term or trunc
    assert 0 < total < 1


def test_hf_classifier_label_that_does_not_exist(classifier_dir):
    from textgym.rewards import make

    with pytest.raises(ValueError, match=r"label 'HAPPY' is not one of the classifier's labels: \['NEGATIVE', 'POSITIVE'\]"):
        make("hf_classifier", path=str(classifier_dir), label="HAPPY")
    with pytest.raises(ValueError, match="holds no Hugging Face classifier"):
        make("hf_classifier", path=str(classifier_dir.parent / "missing"), label="POSITIVE")


def test_the_readme_your_own_language_model_works_as_written(tmp_path, monkeypatch, capsys):
    """The README's "Your own language model" commands and Python, with a tiny GPT-2 saved where the
    README downloads one (``models/gpt2``) and CI-sized budgets."""
    import re
    import shlex
    from pathlib import Path

    pytest.importorskip("peft")
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Your own language model"):readme.index("## A learned reward model")]
    monkeypatch.chdir(tmp_path)
    tok = char_tokenizer()
    tiny_lm("gpt2", len(tok), tok.eos_token_id, tok.pad_token_id).save_pretrained("models/gpt2")
    tok.save_pretrained("models/gpt2")
    bash = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(line, comments=True) for line in bash.splitlines() if line.startswith("textgym ")]
    assert [c[1] for c in commands] == ["train", "train", "eval"]
    small = ["--total-steps", "300", "--num-envs", "16", "--quiet", "--set", "eval_episodes=8"]
    for command in commands:
        assert main(command[1:] + (small if command[1] == "train" else ["--episodes", "8"])) == 0
    assert json.loads(Path("runs/gpt2-ppo/config.json").read_text())["config"]["lora_r"] == 8
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "kl_coef=0.05)" in code
    namespace: dict = {}
    exec(code.replace("kl_coef=0.05)", "kl_coef=0.05, total_steps=300, num_envs=16, eval_episodes=8)"), namespace)
    assert namespace["result"].history and "exact_match" in namespace["result"].eval
