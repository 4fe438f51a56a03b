"""A pretrained chat model's pieces, on a tiny model built here: GGUF import, chat-template prompts,
answer extraction and the format reward, the arithmetic task's held-out split, pass@k."""

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401  (registers the envs)
from textgym.agents.evaluate import _play, evaluate_policy, pass_at_k, sampled_metrics
from textgym.cli import main
from textgym.policies import load_policy
from textgym.policies.gguf import CHATML_TEMPLATE, import_gguf, write_tiny_gguf
from textgym.rewards import EpisodeBatch, FormatReward, TaskScore
from textgym.tasks import ArithmeticTask, ChatTask, Example, extract_answer, make_task
from textgym.tasks.arithmetic import number_words

pytest.importorskip("gguf")
pytest.importorskip("transformers")

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The tiny GGUF model, imported once into a model directory."""
    tmp = tmp_path_factory.mktemp("gguf")
    return import_gguf(write_tiny_gguf(tmp / "tiny.gguf"), tmp / "model")


def chat_env(model_dir, vector=False, **kwargs):
    args = {"task": "arithmetic", "tokenizer": str(model_dir), "reward": [["task", 1.0], ["format", 0.1]],
            "chat": {"instruction": "{prompt} Answer with the number only."}, "max_new_tokens": 8, **kwargs}
    if vector:
        return gym.make_vec("textgym/TokenGeneration-v0", num_envs=4, vectorization_mode="vector_entry_point", **args)
    return gym.make("textgym/TokenGeneration-v0", **args)


# --- GGUF import ---------------------------------------------------------------------------------

def test_import_gguf_gives_the_same_model_as_transformers_reading_the_file(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    direct = AutoModelForCausalLM.from_pretrained(str(model_dir.parent), gguf_file="tiny.gguf")
    imported = AutoModelForCausalLM.from_pretrained(str(model_dir))
    assert not getattr(imported.config, "quantization_config", None)
    ids = torch.tensor([[1, 40, 41, 42, 2]])
    torch.testing.assert_close(imported(ids).logits, direct(ids).logits)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    assert tok.chat_template == CHATML_TEMPLATE  # the chat template travels with the tokenizer
    assert tok.eos_token == "<|im_end|>"
    policy = load_policy(model_dir)
    assert type(policy).__name__ == "HFPolicy"


def test_import_gguf_refuses_what_it_cannot_read(tmp_path, model_dir):
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="not a GGUF file"):
        import_gguf(text, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not a file"):
        import_gguf(tmp_path / "missing.gguf", tmp_path / "out")
    odd = write_tiny_gguf(tmp_path / "odd.gguf", arch="nosucharch")
    with pytest.raises(ValueError, match="could not read the 'nosucharch' model"):
        import_gguf(odd, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    with pytest.raises(ValueError, match="exists already"):
        import_gguf(model_dir.parent / "tiny.gguf", model_dir)
    with pytest.raises(ValueError, match="textgym import-gguf"):
        load_policy(model_dir.parent / "tiny.gguf")


def test_cli_imports_a_gguf_file_and_evaluates_it_with_pass_at_k(tmp_path, capsys):
    src = write_tiny_gguf(tmp_path / "m.gguf")
    assert main(["import-gguf", str(src), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "model.safetensors").is_file()
    capsys.readouterr()
    kwargs = {"task": "arithmetic", "chat": True, "reward": "task", "max_new_tokens": 4}
    assert main(["eval", str(tmp_path / "m"), "--env", "textgym/TokenGeneration-v0", "--env-kwargs", json.dumps(kwargs),
                 "--episodes", "3", "--samples", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"pass@1", "pass@2", "pass@4", "best_of_4_return", "format_ok"} <= set(out)
    assert 0.0 <= out["pass@1"] <= out["pass@2"] <= out["pass@4"] <= 1.0
    assert main(["import-gguf", str(src), "--out", str(tmp_path / "m")]) == 2  # exists: refused, kept
    assert "exists already" in capsys.readouterr().err


# --- chat prompts ---------------------------------------------------------------------------------

def test_chat_prompt_is_the_templates_rendering_and_the_observation_holds_the_ids_written(model_dir):
    from transformers import AutoTokenizer

    env = chat_env(model_dir)
    obs, _ = env.reset(seed=3)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    example = env.unwrapped.current_example
    question = ArithmeticTask().examples_for([env.unwrapped._key])[0].prompt
    messages = [{"role": "user", "content": f"{question} Answer with the number only."}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert example.prompt == rendered
    n = int(obs["attention_mask"].sum())
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids  # a BatchEncoding in transformers 5
    assert obs["input_ids"][:n].tolist() == list(ids)
    # two single spaces, which the tokenizer would merge into one token if the text were tokenized again
    space = tok.convert_tokens_to_ids("Ġ")
    assert tok.encode("  ", add_special_tokens=False) == [tok.convert_tokens_to_ids("ĠĠ")]
    written = [tok.convert_tokens_to_ids(c) for c in "4"] + [space, space] + [tok.convert_tokens_to_ids("2")]
    for t in written:
        obs, *_ = env.step(t)
    assert obs["input_ids"][n: n + len(written)].tolist() == written  # no turn is re-tokenised
    obs, reward, terminated, _, info = env.step(tok.eos_token_id)
    assert terminated and info["completion"] == "4  2"


@pytest.mark.parametrize("completion, answer, right", [
    ("The answer is 57.", "57", True), ("51 + 6 = 57", "57", True), ("57.0", "57.0", True),
    ("-3 degrees", "-3", False), ("1,057", "1057", False), ("fifty-seven", None, False), ("", None, False),
])
def test_the_judge_reads_the_last_number_and_never_raises(completion, answer, right):
    task = ChatTask(ArithmeticTask(), _FakeChatTokenizer())
    example = Example(task.render("What is 51 + 6?"), ("57",))
    assert extract_answer(completion) == answer
    assert task.score(example, completion) == float(right)
    assert task.format_ok(completion) == (answer is not None)


def test_answer_formats():
    assert extract_answer("so <answer>7</answer> and <answer> 8 </answer>", "tag") == "8"
    assert extract_answer("7 without tags", "tag") is None
    assert extract_answer("  Paris \n", "text") == "Paris"
    assert extract_answer("   ", "text") is None
    with pytest.raises(ValueError, match="last_number"):
        extract_answer("7", "boxed")


def test_format_reward_and_judge_score_a_batch_and_count_format_failures():
    task = ChatTask(ArithmeticTask(), _FakeChatTokenizer(), answer="tag")
    from textgym.tokenizers import CharTokenizer

    tok = CharTokenizer("abcdefghijklmnopqrstuvwxyz0123456789 <>/?+", unk=True)
    prompts = [task.render("What is 1 + 2?")] * 3
    completions = ["<answer>3</answer>", "<answer>4</answer>", "3"]
    batch = EpisodeBatch.from_texts(prompts, completions, [["3"]] * 3, tok)
    assert TaskScore(task)(batch).tolist() == [1.0, 0.0, 0.0]
    assert FormatReward(task)(batch).tolist() == [1.0, 1.0, 0.0]
    assert task.text_metrics(prompts, completions) == {"format_ok": pytest.approx(2 / 3)}


def test_chat_task_uses_the_wrapped_tasks_own_judge_on_its_own_prompt():
    countdown = make_task("countdown")
    task = ChatTask(countdown, _FakeChatTokenizer(), answer="tag")
    inner = countdown.example(5)
    example = task.example(5)
    assert task.inner_prompt(example.prompt) == inner.prompt
    solution = inner.references[0]
    assert task.score(example, f"I try <answer>{solution}</answer>") == countdown.score(inner, solution) == 1.0
    assert task.score(example, "no tags") == 0.0


def test_chat_vector_env_plays_the_single_envs_episodes(model_dir):
    envs = chat_env(model_dir, vector=True)
    obs, _ = envs.reset(seed=11)
    for i in range(4):
        single = chat_env(model_dir)
        o, _ = single.reset(seed=11 + i)
        assert np.array_equal(obs["input_ids"][i], o["input_ids"])


def test_chat_refuses_what_it_cannot_do(model_dir, tmp_path):
    from transformers import AutoTokenizer

    with pytest.raises(ValueError, match="chat template"):
        chat_env(model_dir, tokenizer=None)  # the task's character tokenizer has no template
    plain = AutoTokenizer.from_pretrained(str(model_dir))
    plain.chat_template = None
    plain.save_pretrained(tmp_path / "plain")
    (tmp_path / "plain" / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="has none"):
        chat_env(model_dir, tokenizer=str(tmp_path / "plain"))
    with pytest.raises(ValueError, match="max_new_tokens"):
        chat_env(model_dir, max_new_tokens=None)
    with pytest.raises(ValueError, match="answer must be one of"):
        chat_env(model_dir, chat={"answer": "boxed"})
    with pytest.raises(ValueError, match=r"\{prompt\}"):
        chat_env(model_dir, chat={"instruction": "Solve it."})
    with pytest.raises(ValueError, match="its keys are system, instruction and answer"):
        chat_env(model_dir, chat={"sytem": "x"})
    with pytest.raises(ValueError, match="chat must be"):
        chat_env(model_dir, chat="yes")
    with pytest.raises(ValueError, match="reward 'format'"):
        gym.make("textgym/TokenGeneration-v0", task="arithmetic", reward="format")


def test_a_prompt_longer_than_the_models_context_is_refused(tmp_path):
    short = import_gguf(write_tiny_gguf(tmp_path / "short.gguf", context=32), tmp_path / "short")
    policy = load_policy(short)
    kwargs = {"task": "arithmetic", "tokenizer": str(short), "chat": True, "reward": "task", "max_new_tokens": 8}
    with pytest.raises(ValueError, match="context"):
        evaluate_policy(policy, "textgym/TokenGeneration-v0", kwargs, episodes=2)


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_rl_with_lora_trains_a_chat_model_and_keeps_the_base_weights(algo, model_dir, tmp_path):
    pytest.importorskip("peft")
    from textgym.agents import grpo, ppo

    kwargs = {"task": "arithmetic", "task_kwargs": {"split": "train"}, "tokenizer": str(model_dir), "chat": True,
              "reward": [["task", 1.0], ["format", 0.1]], "max_new_tokens": 4}
    policy = load_policy(model_dir, lora_r=4)  # PPO: and a value head on the last hidden states
    base = {k: v.clone() for k, v in policy.lm.named_parameters() if "lora" not in k}
    common = {"env_id": "textgym/TokenGeneration-v0", "env_kwargs": kwargs, "num_envs": 8, "total_steps": 64,
              "eval_episodes": 4, "learning_rate": 1e-2, "device": "cpu", "seed": 0}
    if algo == "grpo":
        result = grpo.train(grpo.GRPOConfig(group_size=4, **common), policy=policy, out=tmp_path / "run", progress=False)
    else:
        result = ppo.train(ppo.PPOConfig(num_minibatches=2, **common), policy=policy, out=tmp_path / "run",
                           progress=False)
    assert result.history and "format_ok" in result.history[0]
    changed = [k for k, v in result.policy.lm.named_parameters() if "lora" in k and v.abs().sum() > 0]
    assert changed
    for k, v in result.policy.lm.named_parameters():
        if k in base:
            assert torch.equal(v, base[k]), k
    assert (tmp_path / "run" / "hf_model" / "chat_template.jinja").is_file() or \
        "chat_template" in (tmp_path / "run" / "hf_model" / "tokenizer_config.json").read_text()


# --- the arithmetic task ------------------------------------------------------------------------

def test_arithmetic_splits_partition_the_problems_and_answers_are_right():
    test, train = ArithmeticTask(split="test"), ArithmeticTask(split="train")
    assert len(test) + len(train) == len(ArithmeticTask()) == 90 * 10
    assert len(test) == 180
    seen_test = {test.problems([k])[0] for k in range(2000)}
    seen_train = {train.problems([k])[0] for k in range(4000)}
    assert not seen_test & seen_train
    assert len(seen_test) > 150  # keys cover the split
    for ex, (a, op, b) in zip(train.examples_for(range(50)), train.problems(range(50))):
        assert ex.prompt == f"What is {a} {op} {b}?" and ex.references == (str(a + b),)
    assert ArithmeticTask(split="test").examples_for(range(20)) == test.examples_for(range(20))  # fixed everywhere


def test_arithmetic_in_words_and_with_subtraction():
    task = ArithmeticTask(a=(20, 20), b=(7, 7), operations="-", words=True)
    ex = task.example(0)
    assert ex == Example("What is twenty minus seven?", ("13",))
    assert [number_words(n) for n in (0, 13, 45, 100, 307, 999)] == [
        "zero", "thirteen", "forty-five", "one hundred", "three hundred seven", "nine hundred ninety-nine"]
    tok_free = ArithmeticTask(a=(0, 9), b=(10, 12), operations="-")
    assert tok_free.max_reference_tokens(None) == 3  # "-12"
    env = gym.make("textgym/TokenGeneration-v0", task="arithmetic", task_kwargs={"words": True, "operations": "+-*"})
    env.reset(seed=0)  # the character tokenizer covers every question


@pytest.mark.parametrize("kwargs, match", [
    ({"a": (5, 1)}, "0 <= low <= high <= 999"), ({"b": (0, 1000)}, "0 <= low <= high <= 999"),
    ({"operations": "/"}, "operations"), ({"operations": "++"}, "operations"), ({"split": "dev"}, "split"),
    ({"test_fraction": 1.0}, "test_fraction"), ({"words": "yes"}, "words"),
])
def test_arithmetic_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ArithmeticTask(**kwargs)


# --- pass@k ---------------------------------------------------------------------------------------

def test_pass_at_k_matches_the_combinatorial_formula():
    assert pass_at_k(8, 2, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 5, 1) == 1.0 and pass_at_k(5, 3, 3) == 1.0
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)


def test_sampled_groups_play_the_greedy_episodes_examples():
    from textgym.agents.rollout import SequenceView, make_envs
    from textgym.policies import make_policy

    env_id, kwargs = "textgym/Reverse-v0", {}
    policy = make_policy(**SequenceView(make_envs(env_id, 1, torch.device("cpu"))).policy_spec(), n_layers=1, d_model=32)
    greedy, _ = _play(policy, env_id, kwargs, 3, "cpu", 7, False)
    grouped, _ = _play(policy, env_id, kwargs, 12, "cpu", 7, True, group_size=4)
    prompts = [ex.prompt for ex, _ in greedy.episode_texts()]
    sampled = [ex.prompt for ex, _ in grouped.episode_texts()]
    assert sampled == [p for p in prompts for _ in range(4)]
    metrics = sampled_metrics(policy, env_id, kwargs, problems=3, samples=4, seed=7)
    assert set(metrics) == {"pass@1", "pass@2", "pass@4", "best_of_4_return"}
    assert metrics["pass@1"] <= metrics["pass@2"] <= metrics["pass@4"]
    with pytest.raises(ValueError, match="samples must be"):
        sampled_metrics(policy, env_id, kwargs, samples=0)


class _FakeChatTokenizer:
    """The smallest thing with a chat template: renders ChatML by hand."""

    chat_template = "chatml"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def test_compare_reports_pass_at_k_of_each_policy(model_dir):
    from textgym.agents.compare import compare_policies, format_comparison

    kwargs = {"task": "arithmetic", "tokenizer": str(model_dir), "chat": True, "reward": "task", "max_new_tokens": 4}
    rows = compare_policies([model_dir], "textgym/TokenGeneration-v0", kwargs, episodes=3, samples=2)
    assert 0.0 <= rows[0]["pass@1"] <= rows[0]["pass@2"] <= 1.0 and "best_of_2_return" in rows[0]
    assert "pass@2" in format_comparison(rows)


def test_multi_turn_chat_transcript_is_the_templates_rendering_with_the_agents_own_ids(model_dir):
    from transformers import AutoTokenizer

    from textgym.envs.code_games import Mastermind

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    env = gym.make("textgym/Mastermind-v0", tokenizer=str(model_dir), chat={"system": "Play well."})
    obs, _ = env.reset(seed=0)
    game = Mastermind()  # the same game, played in text alongside
    opening, _ = game.reset(seed=0)
    reply = game.step("1122")[0]
    system = {"role": "system", "content": "Play well."}
    n = int(obs["attention_mask"].sum())
    start = obs["input_ids"][:n].tolist()
    first = [system, {"role": "user", "content": opening}]
    assert tok.decode(start, skip_special_tokens=False) == tok.apply_chat_template(first, tokenize=False,
                                                                                    add_generation_prompt=True)
    message = [tok.convert_tokens_to_ids(c) for c in "1122"] + [tok.eos_token_id]  # one id per digit, then eos
    for t in message:
        obs, *_ = env.step(t)
    ids = obs["input_ids"][: int(obs["attention_mask"].sum())].tolist()
    assert ids[: n + len(message)] == start + message  # the agent's ids, as it wrote them
    whole = first + [{"role": "assistant", "content": "1122"}, {"role": "user", "content": reply}]
    assert tok.decode(ids, skip_special_tokens=False) == tok.apply_chat_template(whole, tokenize=False,
                                                                                  add_generation_prompt=True)
    vec = gym.make_vec("textgym/Mastermind-v0", num_envs=2, vectorization_mode="vector_entry_point",
                       tokenizer=str(model_dir), chat={"system": "Play well."})
    vobs, _ = vec.reset(seed=0)
    assert vobs["input_ids"][0][:n].tolist() == start
    with pytest.raises(ValueError, match="its one key is system"):
        gym.make("textgym/Mastermind-v0", tokenizer=str(model_dir), chat={"instruction": "{prompt}"})
    with pytest.raises(ValueError, match="chat template"):
        gym.make("textgym/Mastermind-v0", chat=True)
