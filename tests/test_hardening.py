"""Bad input and hostile files: a clear error, nothing silently wrong, nothing lost."""

import json
import os
import struct

import gymnasium as gym
import numpy as np
import pytest
import torch

import textgym  # noqa: F401
from textgym.cli import main
from textgym.policies import Policy

TINY = ["--total-steps", "200", "--num-envs", "16", "--quiet", "--set", "n_layers=1", "--set", "d_model=32",
        "--set", "eval_episodes=8"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "base"
    assert main(["train", "sft", "--out", str(out), *TINY]) == 0
    return out


def _flip_exponent_bit(path, count=5):
    """Set the top exponent bits of a few float32 weights in the data section: inf/NaN."""
    raw = bytearray(path.read_bytes())
    header = struct.unpack("<Q", raw[:8])[0]
    start = 8 + header
    for k in range(count):
        i = start + 4 * (k * 97 + 3) + 3  # the high byte of a little-endian float32
        raw[i] |= 0x7F
        raw[i - 1] |= 0x80
    path.write_bytes(bytes(raw))


# -- 2. --force and a failed start ----------------------------------------------------------------
def test_force_removes_the_old_run_before_the_new_one_writes(run, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["train", "sft", "--out", str(out), *TINY]) == 0
    old_policy = (out / "policy.safetensors").read_bytes()
    # A start that fails (a bad env kwarg) touches nothing, even with --force.
    assert main(["train", "ppo", "--out", str(out), "--force", "--env-kwargs", '{"nope": 1}', *TINY]) == 2
    assert (out / "policy.safetensors").read_bytes() == old_policy
    assert json.loads((out / "config.json").read_text())["algo"] == "sft"
    # A start that succeeds removes every file of the old run first.
    (out / "learning_curve.png").write_bytes(b"old")
    assert main(["train", "ppo", "--env", "textgym/Copy-v0", "--out", str(out), "--force", *TINY]) == 0
    assert json.loads((out / "config.json").read_text())["env_id"] == "textgym/Copy-v0"
    assert (out / "learning_curve.png").read_bytes() != b"old"


def test_a_failed_start_leaves_no_directory_behind(tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["train", "sft", "--env", "textgym/Reverse-v0", "--env-kwargs", '{"task": "nope"}', "--out", str(out),
                 *TINY]) == 2
    assert not out.exists()
    assert main(["train", "sft", "--out", str(out), *TINY]) == 0  # the next attempt is not refused


# -- 3, 4. corrupt and crafted checkpoints --------------------------------------------------------
def test_non_finite_weights_are_refused(run, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("policy.json", "policy.safetensors", "config.json"):
        (bad / name).write_bytes((run / name).read_bytes())
    _flip_exponent_bit(bad / "policy.safetensors")
    with pytest.raises(ValueError, match="hold NaN or infinite values"):
        Policy.load(bad)
    assert main(["eval", str(bad)]) == 2
    assert "NaN or infinite" in capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    ({"d_model": 3072, "n_layers": 8}, "does not match its config"),
    ({"d_model": 10**9, "n_heads": 1}, "does not match its config|is invalid"),
    ({"n_heads": 0}, "not a valid policy config"),
])
def test_a_crafted_policy_json_is_checked_before_anything_is_built(run, tmp_path, change, message):
    bad = tmp_path / "crafted"
    bad.mkdir()
    (bad / "policy.safetensors").write_bytes((run / "policy.safetensors").read_bytes())
    cfg = json.loads((run / "policy.json").read_text())
    cfg["policy"].update(change)
    (bad / "policy.json").write_text(json.dumps(cfg))
    import resource
    import time

    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    with pytest.raises(ValueError, match=message):
        Policy.load(bad)
    assert time.perf_counter() - start < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no model was allocated


# -- 5. no network, no symlink followed ----------------------------------------------------------
def test_a_reward_model_tokenizer_path_outside_its_folder_is_refused(tmp_path):
    from textgym.rewards.model import (
        RewardModel,
        RewardModelConfig,
        load_reward_model,
        save_reward_model,
    )
    from textgym.tokenizers import CharTokenizer

    tok = CharTokenizer("ab")
    save_reward_model(RewardModel(RewardModelConfig(vocab_size=tok.vocab_size, max_len=8, n_layers=1, d_model=8,
                                                    n_heads=2)), tok, tmp_path)
    meta = json.loads((tmp_path / "reward_model.json").read_text())
    meta["tokenizer"] = {"type": "hf", "path": "gpt2"}
    (tmp_path / "reward_model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="the tokenizer path 'gpt2' is not a folder inside"):
        load_reward_model(tmp_path)
    meta["tokenizer"] = {"type": "hf", "path": "../.."}
    (tmp_path / "reward_model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="is not a folder inside"):
        load_reward_model(tmp_path)
    del meta["reward_model"]
    (tmp_path / "reward_model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not a valid reward model config: KeyError"):
        load_reward_model(tmp_path)


def test_run_files_that_are_symlinks_are_replaced_not_followed(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    out = tmp_path / "run"
    out.mkdir()
    for name in ("metrics.jsonl", "learning_curve.png"):
        os.symlink(target, out / name)
    assert main(["train", "sft", "--out", str(out), "--force", *TINY]) == 0
    assert target.read_text() == "keep me"
    assert not (out / "metrics.jsonl").is_symlink() and (out / "metrics.jsonl").read_text().strip()
    from textgym.agents.run import RunLogger  # the Python API writes the same way

    for name in ("metrics.jsonl", "learning_curve.png"):
        (out / name).unlink()
        os.symlink(target, out / name)
    logger = RunLogger(out, 10, "x", progress=False)
    logger.log({"env_steps": 1, "mean_return": 0.0})
    logger.close()
    assert target.read_text() == "keep me" and not (out / "learning_curve.png").is_symlink()


def test_the_out_probe_and_comparison_files_never_write_through_a_link(tmp_path):
    from textgym.agents.compare import write_comparison

    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    out = tmp_path / "run"
    out.mkdir()
    os.symlink(target, out / ".textgym-write-check")  # the name the probe once had
    assert main(["train", "sft", "--out", str(out), *TINY]) == 0
    assert target.read_text() == "keep me" and (out / ".textgym-write-check").is_symlink()
    table = tmp_path / "table"
    table.mkdir()
    for name in ("comparison.csv", "comparison.json", "comparison.png"):
        os.symlink(target, table / name)
    write_comparison([{"run": "a", "success_rate": 0.5}, {"run": "b", "success_rate": 1.0}], table)
    assert target.read_text() == "keep me"
    assert not (table / "comparison.csv").is_symlink() and "success_rate" in (table / "comparison.csv").read_text()
    assert json.loads((table / "comparison.json").read_text())[1]["success_rate"] == 1.0
    assert not list(table.glob("*.tmp")) and not list(table.glob(".*.tmp"))


# -- 7. user mistakes are one line, exit 2 -------------------------------------------------------
BAD_COMMANDS = [
    (["train", "ppo", "--env-kwargs", '{"nope": 1}'], "nope"),
    (["train", "ppo", "--env-kwargs", '{"reward": null}'], "reward"),
    (["train", "ppo", "--env", "textgym/TokenGeneration-v0", "--env-kwargs", '{"task": "/no/such.jsonl"}'], "such.jsonl"),
    (["train", "ppo", "--set", "gamma=abc"], "gamma must be a number in [0, 1], got 'abc'"),
    (["train", "ppo", "--set", "update_epochs=1.5"], "update_epochs must be an integer >= 1"),
    (["train", "sft", "--set", "env_id=foo"], "foo"),
    (["train", "sft", "--env", "textgym/Mastermind-v0", "--env-kwargs", '{"text_env": "nope/Nope-v0"}'], "nope/Nope-v0"),
    (["eval", "RUN", "--env", "textgym/Nope-v0"], "Nope-v0"),
    (["eval", "/no/such/run"], "/no/such/run"),
    (["compare", "RUN", "--env", "textgym/Nope-v0"], "Nope-v0"),
    (["train-rm", "--data", "DIR"], "Is a directory"),
    (["train-rm", "--data", "/no/such.jsonl"], "such.jsonl"),
    (["eval-rm", "/no/such", "--data", "/no/such.jsonl"], "no reward model"),
    (["preferences", "--pairs", "-1"], "n must be a positive integer (--pairs), got -1"),
    (["preferences", "--pairs", "4", "--noise", "2"], "noise"),
    (["demo", "--episodes", "0"], "--episodes must be at least 1"),
    (["bench", "--device", "tpu", "--quick"], "unknown device 'tpu'"),
]


@pytest.mark.parametrize("argv,message", BAD_COMMANDS)
def test_every_subcommand_answers_a_mistake_with_one_line_and_exit_2(run, tmp_path, capsys, argv, message):
    argv = [str(run) if a == "RUN" else str(tmp_path) if a == "DIR" else a for a in argv]
    if argv[0] in ("train", "train-rm", "preferences") and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    if argv[0] == "train":
        argv += TINY
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("textgym: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err


@pytest.mark.parametrize("command", ["train", "train-rm", "preferences", "compare"])
def test_an_out_that_is_a_file_is_one_line(run, tmp_path, capsys, command):
    file = tmp_path / "a_file"
    file.write_text("")
    argv = {"train": ["train", "sft", *TINY], "preferences": ["preferences", "--pairs", "4"],
            "train-rm": ["train-rm", "--data", str(tmp_path / "p.jsonl")],
            "compare": ["compare", str(run), "--env", "textgym/Reverse-v0", "--episodes", "4"]}[command]
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    assert main([*argv, "--out", str(file / "sub") if command == "preferences" else str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("textgym: ") and err.count("\n") == 1, err


def test_debug_shows_the_traceback(tmp_path):
    from textgym.cli import CLIError

    with pytest.raises(CLIError, match="gamma must be"):
        main(["train", "ppo", "--set", "gamma=5", "--out", str(tmp_path / "x"), "--debug", *TINY])


def test_vector_env_bad_reset_options_and_string_actions():
    envs = gym.make_vec("textgym/Reverse-v0", num_envs=2)
    with pytest.raises(ValueError, match="options must be a dict"):
        envs.reset(options="garbage")
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="actions must be integers"):
        envs.step(["a", "b"])
    with pytest.raises(ValueError, match="group_size"):
        envs.reset(seed=0, options={"group_size": "2"})


# -- 8. strict types in env and reward arguments --------------------------------------------------
@pytest.mark.parametrize("env_id,kwargs,message", [
    ("textgym/GuessNumber-v0", {"shaping": "false"}, "shaping must be true or false, got 'false'"),
    ("textgym/Reverse-v0", {"shaping": "no"}, "shaping must be true or false, got 'no'"),
    ("textgym/GuessNumber-v0", {"guess_penalty": float("inf")}, "guess_penalty must be a finite number >= 0"),
    ("textgym/GuessNumberText-v0", {"guess_penalty": "0.1"}, "guess_penalty must be a finite number >= 0"),
])
def test_env_arguments_have_strict_types(env_id, kwargs, message):
    for make in (lambda: gym.make(env_id, **kwargs), lambda: gym.make_vec(env_id, num_envs=2, **kwargs)):
        with pytest.raises(ValueError, match=message):
            make()


def test_reward_arguments_have_strict_types():
    from textgym import rewards
    from textgym.rewards import EpisodeBatch
    from textgym.tokenizers import CharTokenizer

    with pytest.raises(ValueError, match="weight of reward 'f1' must be a finite number, got '0.5'"):
        rewards.make([("f1", "0.5")])
    batch = EpisodeBatch.from_texts(["a", "b"], ["a", "b"], [["a"], ["b"]], CharTokenizer("ab"))
    with pytest.raises(ValueError, match="must return 2 numbers, got a dict"):
        rewards.make(lambda p, c, r: {0: 1.0, 1: 1.0})(batch)


def test_a_tokenizer_whose_ids_reach_past_its_vocabulary_is_refused():
    class Bad:
        pad_id, eos_id, vocab_size = 0, 7, 5

        def encode(self, text):
            return [2 for _ in text]

        def decode(self, ids):
            return "a" * len(list(ids))

    with pytest.raises(ValueError, match="eos_id 7 is outside its vocabulary of 5"):
        gym.make("textgym/TokenGeneration-v0", task=[("a", ["a"])], tokenizer=Bad())


# -- 11. data files ---------------------------------------------------------------------------------
def test_a_latin1_jsonl_names_its_file_and_line(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"prompt": "a", "references": ["b"]}\n{"prompt": "caf\xe9", "references": ["b"]}\n')
    with pytest.raises(ValueError, match=r"latin.jsonl, line 2: not UTF-8"):
        gym.make("textgym/TokenGeneration-v0", task=str(path))


def test_one_huge_prompt_is_refused_before_it_costs_memory(tmp_path):
    path = tmp_path / "huge.jsonl"
    rows = [{"prompt": "ab", "references": ["a"]}] * 4000 + [{"prompt": "a" * 100_000, "references": ["a"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"huge.jsonl: a prompt is 100000 tokens long \(the 4001th\), and padding all 4001"):
        gym.make("textgym/TokenGeneration-v0", task=str(path))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[-11:]))  # a few long prompts are fine
    env = gym.make("textgym/TokenGeneration-v0", task=str(path))
    assert env.observation_space["input_ids"].shape[0] > 100_000


# -- 12. reproducibility -----------------------------------------------------------------------------
def test_the_readme_says_what_must_match_for_the_same_metrics():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "same device, the same number of torch threads" in readme
    assert np.isfinite(torch.get_num_threads())


# -- 9. train-rm checks --out first and saves as it goes -----------------------------------------
def test_train_rm_saves_after_every_epoch(tmp_path, monkeypatch):
    from textgym.rewards import model as rm

    rows = [{"prompt": "a", "chosen": "aa", "rejected": "b"}] * 20
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    saved = []
    real = rm.save_reward_model
    monkeypatch.setattr(rm, "save_reward_model", lambda m, t, d: (saved.append(d), real(m, t, d)))
    data = rm.load_reward_data(tmp_path / "p.jsonl")
    cfg = rm.RewardModelTrainConfig(epochs=3, n_layers=1, d_model=8, n_heads=2)
    rm.train_reward_model(data, cfg, out=tmp_path / "rm")
    assert saved == [tmp_path / "rm"] * 3 and (tmp_path / "rm" / "reward_model.safetensors").is_file()


def test_train_rm_refuses_a_bad_out_before_training(tmp_path, capsys, monkeypatch):
    from textgym.rewards import model as rm

    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "a", "chosen": "aa", "rejected": "b"}) + "\n")
    monkeypatch.setattr(rm, "train_reward_model", lambda *a, **k: pytest.fail("trained before checking --out"))
    (tmp_path / "file").write_text("")
    assert main(["train-rm", "--data", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "file" / "rm")]) == 2
    assert "textgym: " in capsys.readouterr().err


# -- 10. paths that cost more than they need ---------------------------------------------------------
def test_single_env_resets_encode_their_examples_in_blocks(monkeypatch):
    env = gym.make("textgym/Reverse-v0").unwrapped
    calls = []
    real = env.setup.encode
    monkeypatch.setattr(env.setup, "encode", lambda keys: (calls.append(len(keys)), real(keys))[1])
    prompts = []
    for episode in range(300):
        env.reset(seed=0 if episode == 0 else None)
        prompts.append(env.current_example.prompt)
    assert len(calls) <= 10 and sum(calls) >= 300  # blocks of 1, 2, 4, ... 256 keys
    # The same episodes as the vector env's sub-env 0, which makes one key per episode.
    vec = gym.make_vec("textgym/Reverse-v0", num_envs=1, device="cpu", autoreset_mode="disabled")
    expected = []
    for episode in range(300):
        vec.reset(seed=0 if episode == 0 else None)
        expected.append(vec.episode_texts()[0][0].prompt)
    assert prompts == expected


def test_a_vector_env_encodes_only_the_sub_envs_that_restart(monkeypatch):
    envs = gym.make_vec("textgym/Review-v0", num_envs=50, device="cpu")
    envs.reset(seed=0)
    sizes = []
    real = envs.setup.encode
    monkeypatch.setattr(envs.setup, "encode", lambda keys: (sizes.append(len(keys)), real(keys))[1])
    actions = torch.full((50,), 5)
    actions[:3] = envs.tokenizer.eos_id  # three episodes end now and restart at the next step
    envs.step(actions)
    envs.step(torch.full((50,), 5))
    assert sizes == [3]


def test_eval_of_a_run_with_a_garbage_config_is_one_line(run, tmp_path, capsys):
    bad = tmp_path / "garbage"
    bad.mkdir()
    for name in ("policy.json", "policy.safetensors"):
        (bad / name).write_bytes((run / name).read_bytes())
    (bad / "config.json").write_text("{not json")
    assert main(["eval", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("textgym: ") and err.count("\n") == 1 and "config.json" in err, err


# -- 10. one line, not a traceback ----------------------------------------------------------------
RAISING_GAME = '''
import gymnasium as gym

class Broken(gym.Env):
    def __init__(self, where="step", flag=False):
        self.observation_space = gym.spaces.Text(max_length=2, charset="ab\\n")
        self.action_space = gym.spaces.Text(max_length=1, charset="ab")
        self.where, self.flag, self.max_turns = where, flag, 2

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.where == "reset":
            raise KeyError("no board")
        return "a\\n", {}

    def step(self, message):
        if self.where == "step":
            raise ZeroDivisionError("division by zero")
        return "a\\n", 1.0, self.flag, False, {}

    def expert(self):
        raise IndexError("no move")
'''


@pytest.mark.parametrize("kwargs, algo, message", [
    ({"where": "reset"}, "ppo", "text_env broken_game_10:Broken: raised KeyError in reset(): 'no board'"),
    ({"where": "step"}, "ppo", "text_env broken_game_10:Broken: raised ZeroDivisionError in step("),
    ({"where": "none"}, "sft", "text_env broken_game_10:Broken: raised IndexError in expert(): no move"),
    ({"where": "none", "flag": "no"}, "ppo", "returned terminated='no'; expected True or False"),
])
def test_a_text_env_that_raises_or_answers_wrong_is_one_line(tmp_path, capsys, monkeypatch, kwargs, algo, message):
    (tmp_path / "broken_game_10.py").write_text(RAISING_GAME)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    env_kwargs = json.dumps({"text_env": "broken_game_10:Broken", "text_env_kwargs": kwargs})
    assert main(["train", algo, "--env", "textgym/MultiTurn-v0", "--env-kwargs", env_kwargs, "--out",
                 str(tmp_path / "out"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("textgym: ") and err.count("\n") == 1 and message in err, err


def test_deeply_nested_json_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 50_000 + "]" * 50_000 + "\n")
    assert main(["train", "sft", "--data", str(deep), "--out", str(tmp_path / "a"), *TINY]) == 2
    assert f"{deep}, line 1: JSON nested too deeply to read" in capsys.readouterr().err
    assert main(["train", "sft", "--env-kwargs", '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}", "--out",
                 str(tmp_path / "b"), *TINY]) == 2
    assert "--env-kwargs: JSON nested too deeply to read" in capsys.readouterr().err


def test_a_vector_env_takes_the_seeds_the_single_env_takes():
    envs = gym.make_vec("textgym/Reverse-v0", num_envs=2, device="cpu")
    for seed in (1.5, -5, True, "3"):
        with pytest.raises(gym.error.Error, match="Seed must be a non-negative python integer"):
            envs.reset(seed=seed)
    envs.reset(seed=np.int64(3))
    envs.reset(seed=2**70)  # any Python int, as Gymnasium's single envs take


def test_a_recorded_row_with_a_huge_num_envs_replays_in_a_window(run, tmp_path, capsys):
    saved = tmp_path / "t.jsonl"
    assert main(["eval", str(run), "--save", str(saved), "--episodes", "4"]) == 0
    row = json.loads(saved.read_text().splitlines()[2])
    row.update(num_envs=1_000_000_000, index=row["index"] + 999_999_990, seed=row["seed"] - 999_999_990)
    saved.write_text(json.dumps(row) + "\n")  # the same episode, named as sub-env 999,999,992 of a billion
    from textgym.agents import sft

    cfg = sft.SFTConfig(total_steps=10, num_envs=8, n_layers=1, d_model=32)
    [replay] = sft.replays([row], cfg, torch.device("cpu"))
    assert replay.envs.num_envs <= sft.REPLAY_WINDOW and int(replay.keep.sum()) == 1
    assert main(["train", "sft", "--data", str(saved), "--out", str(tmp_path / "out"), *TINY]) == 0
