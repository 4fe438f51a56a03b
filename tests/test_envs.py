import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

import textgym
from textgym.envs import (
    GuessNumberEnv,
    GuessNumberTextEnv,
    GuessNumberTextVectorEnv,
    TokenGenerationEnv,
)

IDS = [info.id for info in textgym.ENVS]


@pytest.mark.parametrize("env_id", IDS)
def test_gymnasium_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=False)


@pytest.mark.parametrize("env_id", IDS)
def test_sb3_check_env(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    sb3_check_env(gym.make(env_id), warn=True)


def test_make_without_importing_textgym_first():
    import subprocess
    import sys

    code = "import gymnasium as gym; env = gym.make('textgym:textgym/GuessNumber-v0'); print(env.action_space)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Discrete(100)"


def test_registration_is_idempotent():
    textgym.register_envs()
    textgym.register_envs()
    assert gym.make("textgym/Reverse-v0") is not None


@pytest.mark.parametrize("env_id", IDS)
def test_docstring_is_a_manual(env_id):
    doc = gym.make(env_id).unwrapped.__doc__
    for section in ("Description", "Action Space", "Observation Space", "Rewards", "Episode End",
                    "Arguments", "Version History"):
        assert f"## {section}" in doc, section


@pytest.mark.parametrize("env_id", IDS)
def test_observations_are_fresh_arrays(env_id):
    env = gym.make(env_id)
    obs1, _ = env.reset(seed=0)
    obs2, *_ = env.step(env.action_space.sample())
    a1 = obs1["input_ids"] if isinstance(obs1, dict) else obs1
    a2 = obs2["input_ids"] if isinstance(obs2, dict) else obs2
    assert a1 is not a2 and not np.shares_memory(a1, a2)


# -- GuessNumber ---------------------------------------------------------------------------------


def binary_search(env):
    """Play one game of env (reset already done) by bisection; return (guesses, success)."""
    lo, hi = env.low, env.high
    while True:
        guess = (lo + hi) // 2
        obs, reward, term, trunc, info = env.step(guess - env.low)
        if term:
            return info["guesses"], info["success"]
        if obs[4 + 2 * (info["guesses"] - 1)] > 0:
            lo = guess + 1
        else:
            hi = guess - 1


def test_binary_search_is_optimal_from_the_observation():
    env = GuessNumberEnv()
    guesses_by_secret = {}
    for seed in range(2000):
        env.reset(seed=seed)
        guesses, success = binary_search(env)
        assert success
        guesses_by_secret[env._secret] = guesses
    assert sorted(guesses_by_secret) == list(range(1, 101))  # every secret came up
    assert max(guesses_by_secret.values()) == 7
    assert np.mean(list(guesses_by_secret.values())) == pytest.approx(5.80)


def test_guess_number_every_secret_is_drawn():
    env = GuessNumberEnv(low=1, high=10)
    secrets = set()
    for seed in range(300):
        env.reset(seed=seed)
        *_, info = env.step(0)
        while "secret" not in info:
            *_, info = env.step(0)
        secrets.add(info["secret"])
    assert secrets == set(range(1, 11))


def test_guess_number_rewards_and_interval():
    env = GuessNumberEnv(low=1, high=100, max_guesses=3)
    env.reset(seed=0)
    secret = env.unwrapped._secret
    wrong = 0 if secret != 1 else 1
    obs, r, term, trunc, info = env.step(wrong)
    assert r == pytest.approx(-0.1) and not term and info == {"guesses": 1, "success": False}
    assert obs[0] == pytest.approx((wrong + 1) / 99) if secret > wrong + 1 else True
    obs, r, term, trunc, info = env.step(secret - 1)
    assert r == 1.0 and term and not trunc and info["success"] and info["secret"] == secret
    assert obs[0] == obs[1] == pytest.approx((secret - 1) / 99)


def test_guess_number_loses_after_max_guesses():
    env = GuessNumberEnv(low=1, high=100, max_guesses=2)
    env.reset(seed=0)
    secret = env.unwrapped._secret
    wrong = 0 if secret != 1 else 1
    env.step(wrong)
    *_, r, term, trunc, info = env.step(wrong)
    assert term and not info["success"] and info["secret"] == secret and r == pytest.approx(-0.1)


def test_shaping_keeps_the_return_of_a_won_game():
    plain, shaped = GuessNumberEnv(), GuessNumberEnv(shaping=True)
    for seed in range(40):
        returns = []
        for env in (plain, shaped):
            env.reset(seed=seed)
            total, done = 0.0, False
            lo, hi = 1, 100
            while not done:  # bisection, tracking the interval from the secret we peek at
                guess = (lo + hi) // 2
                _, r, done, _, info = env.step(guess - 1)
                total += r
                lo, hi = (guess + 1, hi) if env._secret > guess else (lo, guess - 1)
            returns.append(total)
        assert info["success"]
        assert returns[1] == pytest.approx(returns[0]) == pytest.approx(1 - 0.1 * (info["guesses"] - 1))


def test_shaping_pays_for_narrowing_and_nothing_for_a_wasted_guess():
    env = GuessNumberEnv(shaping=True)
    env.reset(seed=0)
    secret = env._secret
    first = 50 if secret != 50 else 49
    _, r, *_ = env.step(first - 1)
    size = 100 - first if secret > first else first - 1
    assert r == pytest.approx(math.log2(100 / size) / math.log2(100) - 0.1)
    wasted = 1 if secret > first else 100  # outside the interval still possible
    _, r, *_ = env.step(wasted - 1)
    assert r == pytest.approx(-0.1)


# -- GuessNumberText -----------------------------------------------------------------------------


def write(env, text, eos=True):
    tok = env.unwrapped.tokenizer
    out = None
    for t in tok.encode(text) + ([tok.eos_id] if eos else []):
        out = env.step(t)
    return out


def test_text_game_transcript_and_feedback():
    env = GuessNumberTextEnv(render_mode="ansi")
    env.reset(seed=3)
    secret = env._secret
    low_guess = 1 if secret != 1 else 2
    _, r, term, _, info = write(env, str(low_guess))
    assert r == pytest.approx(-0.1) and not term and info["guesses"] == 1
    _, r, term, _, info = write(env, str(secret))
    assert r == 1.0 and term and info["success"] and info["secret"] == secret
    word = "higher" if secret > low_guess else "lower"
    assert env.render() == f"guess 1-100\n{low_guess}: {word}\n{secret}: correct\n"


@pytest.mark.parametrize("text,eos,valid", [("100", True, True), ("1", True, True), ("101", True, False),
                                            ("0", True, False), ("1000", False, False), ("", True, False),
                                            ("5h", False, False)])
def test_text_game_valid_and_invalid_guesses_in_both_forms(text, eos, valid):
    single = GuessNumberTextEnv(max_guesses=5, render_mode="ansi")
    vec = GuessNumberTextVectorEnv(num_envs=2, max_guesses=5)
    single.reset(seed=11)
    vec.reset(seed=11)
    tok = single.tokenizer
    for t in tok.encode(text) + ([tok.eos_id] if eos else []):
        obs, r, term, trunc, info = single.step(t)
        vobs, vr, vterm, *_ = vec.step(np.array([t, t]))
        np.testing.assert_array_equal(obs["input_ids"], vobs["input_ids"][0])
    assert info["guesses"] == 1
    assert info["invalid"] == (0 if valid else 1)
    transcript = single.render()
    assert transcript.endswith(": invalid\n") != valid


def test_text_game_action_mask_declares_the_digits_and_eos_in_both_forms():
    single = GuessNumberTextEnv(action_mask=True)
    vec = GuessNumberTextVectorEnv(num_envs=3, action_mask=True, device="cpu")
    tok = single.tokenizer
    expected = np.zeros(tok.vocab_size, dtype=bool)
    expected[tok.encode("0123456789") + [tok.eos_id]] = True
    np.testing.assert_array_equal(single.action_masks(), expected)
    np.testing.assert_array_equal(vec.allowed_actions.numpy(), expected)
    np.testing.assert_array_equal(vec.action_masks().numpy(), np.tile(expected, (3, 1)))
    assert GuessNumberTextEnv().action_masks().all()  # off by default: every token may be written
    assert GuessNumberTextVectorEnv(num_envs=2).allowed_actions is None
    # the rules stay: an out-of-range number written with allowed tokens is still invalid
    single.reset(seed=0)
    _, _, _, _, info = write(single, "101")
    assert info["invalid"] == 1
    with pytest.raises(ValueError, match="action_mask must be true or false, got 'yes'"):
        GuessNumberTextEnv(action_mask="yes")


def test_text_game_binary_search_wins_in_text():
    env = gym.make("textgym/GuessNumberText-v0")
    for seed in range(50):
        env.reset(seed=seed)
        lo, hi = 1, 100
        while True:
            guess = (lo + hi) // 2
            _, _, term, _, info = write(env, str(guess))
            if term:
                assert info["success"] and info["guesses"] <= 7
                break
            text = env.unwrapped.tokenizer.decode(env.unwrapped._transcript)
            if text.endswith("higher\n"):
                lo = guess + 1
            else:
                hi = guess - 1


# -- TokenGeneration -----------------------------------------------------------------------------


def test_reverse_oracle_scores_one_and_render():
    env = gym.make("textgym/Reverse-v0", render_mode="ansi")
    env.reset(seed=5)
    ex = env.unwrapped.task.example(env.unwrapped._key)
    tok = env.unwrapped.tokenizer
    for t in tok.encode(ex.references[0]):
        _, r, term, trunc, _ = env.step(t)
        assert r == 0.0 and not term
    obs, r, term, trunc, info = env.step(tok.eos_id)
    assert r == 1.0 and term and not trunc
    assert info == {"score": 1.0, "completion": ex.references[0], "references": list(ex.references), "is_success": True}
    text = env.render()
    assert ex.prompt in text and "return:     1.000" in text


def test_truncation_at_max_new_tokens_and_partial_credit():
    env = gym.make("textgym/Reverse-v0", max_new_tokens=3)
    env.reset(seed=1)
    tok = env.unwrapped.tokenizer
    ref = env.unwrapped.task.example(env.unwrapped._key).references[0]
    ids = tok.encode(ref[:3].ljust(3, "a"))
    for t in ids[:2]:
        env.step(t)
    _, r, term, trunc, info = env.step(ids[2])
    assert trunc and not term
    matches = sum(a == b for a, b in zip(ref[:3].ljust(3, "a"), ref))
    assert r == pytest.approx(matches / max(3, len(ref)))


def test_observation_layout():
    env = TokenGenerationEnv(task=[("ab", ["ba"])], reward="exact_match")
    obs, _ = env.reset(seed=0)
    tok = env.tokenizer
    assert obs["input_ids"].tolist() == tok.encode("ab") + [tok.pad_id] * 3
    assert obs["attention_mask"].tolist() == [1, 1, 0, 0, 0]
    obs, *_ = env.step(tok.encode("b")[0])
    assert obs["input_ids"].tolist()[:3] == tok.encode("abb") and obs["attention_mask"].sum() == 3


def test_shaping_rewards_add_up_to_the_final_score():
    env = gym.make("textgym/Reverse-v0", shaping=True)
    for seed in range(20):
        env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, info = env.step(env.action_space.sample())
            total += r
            done = term or trunc
        assert total == pytest.approx(info["score"], abs=1e-6)


def test_hf_tokenizer_works_in_the_env():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, "hello": 3, "world": 4, "hi": 5, "there": 6}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    env = gym.make("textgym/TokenGeneration-v0", task=[("hello", ["world"]), ("hi", ["there"])], tokenizer=hf, reward="f1")
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    prompt = env.unwrapped.task.example(env.unwrapped._key).prompt
    answer = {"hello": 4, "hi": 6}[prompt]
    env.step(answer)
    _, r, term, _, info = env.step(1)
    assert r == 1.0 and term and info["completion"] == {"hello": "world", "hi": "there"}[prompt]


def test_vector_env_accepts_a_device_and_numpy_or_tensor_actions():
    vec = gym.make_vec("textgym/Copy-v0", num_envs=4, device="cpu")
    vec.reset(seed=0)
    vec.step(np.zeros(4, dtype=np.int64))
    obs, *_ = vec.step(torch.zeros(4, dtype=torch.int64))
    assert obs["input_ids"].device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("env_id", IDS)
def test_vector_env_on_cuda(env_id):
    vec = gym.make_vec(env_id, num_envs=64, device="cuda")
    obs, _ = vec.reset(seed=0)
    for _ in range(20):
        obs, r, term, trunc, _ = vec.step(torch.as_tensor(vec.action_space.sample(), device="cuda"))
    assert r.device.type == "cuda"


def test_unsupported_render_mode_warns_at_make_and_fails_at_render():
    with pytest.warns(UserWarning, match="not in the possible render_modes"):
        env = gym.make("textgym/GuessNumber-v0", render_mode="rgb_video")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"render_mode 'rgb_video' is not supported: use one of \['ansi', 'human', 'rgb_array'\]"):
        env.unwrapped.render()


def test_human_render_prints(capsys):
    env = gym.make("textgym/GuessNumberText-v0", render_mode="human")
    env.reset(seed=0)
    write(env, "50")
    out = capsys.readouterr().out  # the transcript is printed after every step
    assert out.startswith("guess 1-100\n5\n") and "guess 1-100\n50: " in out


# -- Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", IDS)
def test_step_before_reset_is_an_error(env_id):
    env = gym.make(env_id).unwrapped
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(0)
    vec = gym.make_vec(env_id, num_envs=2)
    with pytest.raises(ResetNeeded, match="reset"):
        vec.step(np.zeros(2, dtype=np.int64))


def test_step_after_the_episode_ended_is_an_error():
    env = GuessNumberEnv(max_guesses=1)
    env.reset(seed=0)
    env.step(0)
    with pytest.raises(ResetNeeded, match="ended"):
        env.step(0)


@pytest.mark.parametrize("action,match", [(100, r"action 100 is outside the action space: expected an integer in \[0, 100\)"),
                                          (-1, "outside the action space"),
                                          (float("nan"), "got NaN"),
                                          (3.0, "got the float 3.0"),
                                          ("5", "got str"),
                                          (np.array([1, 2]), "array of shape")])
def test_bad_actions_single_env(action, match):
    env = GuessNumberEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


def test_bad_actions_vector_env():
    vec = gym.make_vec("textgym/Reverse-v0", num_envs=2)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"action 99 of sub-env 1 is outside the action space"):
        vec.step(np.array([0, 99]))
    with pytest.raises(ValueError, match="integers"):
        vec.step(np.array([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        vec.step(np.array([0, 1, 2]))


def test_prompt_longer_than_max_prompt_len_is_an_error():
    with pytest.raises(ValueError, match=r"prompt 'abcdef' is 6 tokens long, longer than max_prompt_len=4"):
        TokenGenerationEnv(task=[("abcdef", ["x"]), ("ab", ["y"])], max_prompt_len=4).reset(seed=0)


def test_unknown_task_and_reward_names_list_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task 'revers'.*\['addition', 'arithmetic', 'copy', 'countdown', 'hanoi', 'lights_out', 'maze', 'reasoning_gym', 'reverse', 'review', 'sort', 'sudoku'\]"):
        gym.make("textgym/TokenGeneration-v0", task="revers")
    with pytest.raises(ValueError, match=r"unknown reward 'blue'.*'bleu'"):
        gym.make("textgym/TokenGeneration-v0", reward="blue")


@pytest.mark.parametrize("kwargs,match", [({"low": 5, "high": 5}, "low must be smaller than high"),
                                          ({"max_guesses": 0}, "max_guesses must be at least 1"),
                                          ({"low": 1.5}, "low must be an integer")])
def test_bad_game_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GuessNumberEnv(**kwargs)


@pytest.mark.parametrize("info", textgym.ENVS, ids=IDS)
def test_help_of_a_made_env_is_the_manual_of_its_id(info):
    import pydoc

    env = gym.make(info.id)
    page = pydoc.render_doc(env, renderer=pydoc.plaintext)
    first = page.splitlines()[0]
    assert type(env).__module__.startswith("textgym") and "Wrapper" not in first and "OrderEnforcing" not in first
    assert "Args" in page or "Arguments" in page or "`render_mode`" in page  # the env's own manual
    if info.id not in textgym.envs.GENERAL and info.kwargs:
        assert f"{info.id}: {info.description}" in page
        for key, value in info.kwargs.items():
            assert f"{key}={value!r}" in page
        vector = gym.make_vec(info.id, num_envs=2)
        assert f"{info.id}: {info.description}" in pydoc.render_doc(vector, renderer=pydoc.plaintext)
    with pytest.raises(ResetNeeded):  # the env keeps the order itself, with no OrderEnforcing wrapper
        env.step(env.action_space.sample())


@pytest.mark.parametrize("env_id", IDS)
def test_rgb_array_render_is_a_fixed_size_image_of_the_text(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frames = [env.render()]
    env.step(env.action_space.sample())
    frames.append(env.render())
    for frame in frames:
        assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.shape == (360, 640, 3)
    assert (frames[1] < 128).any()  # some text is drawn


def test_sb3_make_vec_env_does_not_warn_about_the_render_mode():
    import warnings

    from stable_baselines3.common.env_util import make_vec_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_vec_env("textgym/GuessNumber-v0", n_envs=2).close()
    assert not [w for w in caught if "render_mode" in str(w.message)]


def test_possible_mask_marks_the_interval_in_single_and_vector_envs_alike():
    single = gym.make("textgym/GuessNumber-v0", possible_mask=True)
    vector = gym.make_vec("textgym/GuessNumber-v0", num_envs=4, possible_mask=True, device="cpu")
    plain = gym.make_vec("textgym/GuessNumber-v0", num_envs=4, device="cpu")
    assert single.observation_space.shape == (123,) and vector.single_observation_space.shape == (123,)
    obs_v, _ = vector.reset(seed=7)
    obs_p, _ = plain.reset(seed=7)
    rng = np.random.default_rng(0)
    for _ in range(4):
        actions = torch.as_tensor(rng.integers(0, 100, 4))
        obs_v, *_ = vector.step(actions)
        obs_p, *_ = plain.step(actions)
        assert torch.equal(obs_v[:, :23], obs_p)  # the history is unchanged, the mask follows it
        seq_v, len_v = vector.unwrapped.sequence(obs_v)
        seq_p, len_p = plain.unwrapped.sequence(obs_p)
        assert torch.equal(seq_v, seq_p) and torch.equal(len_v, len_p)
        for i in range(4):
            lo, hi = int(vector.unwrapped.lo[i]), int(vector.unwrapped.hi[i])
            expected = [lo <= n <= hi for n in range(1, 101)]
            assert obs_v[i, 23:].tolist() == [float(x) for x in expected]
    obs, _ = single.reset(seed=7)
    obs, *_ = single.step(49)
    assert obs[23:].sum() in (49, 50, 1) and obs[23:].min() == 0
    with pytest.raises(ValueError, match="possible_mask must be true or false"):
        gym.make("textgym/GuessNumber-v0", possible_mask="yes")
