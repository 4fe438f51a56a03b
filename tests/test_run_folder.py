"""A run folder has one writer, every file in it is replaced whole, a damaged state is refused, and
a stop always stops."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from textgym.agents import sft
from textgym.agents.state import STATE_FILE, Checkpointer, TrainingAborted, checksum, run_history
from textgym.cli import main
from textgym.files import (
    LOCK_FILE,
    RunFolderBusy,
    acquire_run,
    clear_run,
    holds_run,
    release_run,
    replacing,
    usable_run_dir,
    write_text,
)

TINY = ["--total-steps", "200", "--num-envs", "16", "--quiet", "--set", "n_layers=1", "--set", "d_model=32",
        "--set", "eval_episodes=8", "--recipe", "none", "--device", "cpu"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "base"
    assert main(["train", "sft", "--out", str(out), *TINY]) == 0
    return out


# -- one safe write ------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "state.pt"
    path.write_text("good")
    with pytest.raises(KeyboardInterrupt), replacing(path) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert path.read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def test_a_link_is_replaced_not_written_through(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    os.symlink(target, tmp_path / "config.json")
    write_text(tmp_path / "config.json", "{}")
    assert target.read_text() == "keep me"
    assert not (tmp_path / "config.json").is_symlink() and (tmp_path / "config.json").read_text() == "{}"


# -- one writer ----------------------------------------------------------------------------------
def _hold_lock(folder: Path) -> subprocess.Popen:
    """Another process that holds ``folder``'s lock until it is killed."""
    code = f"from textgym.files import acquire_run; import sys, time; acquire_run({str(folder)!r}); print('held'); " \
           "sys.stdout.flush(); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_folder_is_claimed_and_cleared_with_its_files_only(tmp_path):
    out = tmp_path / "run"
    usable_run_dir(out)
    assert out.is_dir() and not holds_run(out) and list(out.iterdir()) == []  # the write check leaves nothing
    for name in ("config.json", "metrics.jsonl", "notes.txt", "events.out.tfevents.1.host"):
        (out / name).write_text("x")
    (out / "tokenizer").mkdir()
    assert holds_run(out)
    clear_run(out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # the user's own file stays
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
        usable_run_dir(tmp_path / "file")


def test_a_second_writer_is_refused_and_a_killed_writers_lock_is_taken_over(run, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "sft", "--out", str(out), *TINY]) == 0
    files = lambda: {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != LOCK_FILE}  # noqa: E731
    before = files()
    holder = _hold_lock(out)
    try:
        for extra in (["--force"], ["--auto-resume"]):
            assert main(["train", "sft", "--out", str(out), *TINY, *extra]) == 2
            err = capsys.readouterr().err
            assert f"is being written by another textgym process (pid {holder.pid})" in err, err
            assert err.count("\n") == 1
        assert main(["train", "--resume", str(out), "--quiet"]) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err
        with pytest.raises(RunFolderBusy, match=f"pid {holder.pid}"):  # from Python too
            sft.train(sft.SFTConfig(total_steps=100, num_envs=8, n_layers=1, d_model=32, eval_episodes=4),
                      out=out, progress=False)
        assert files() == before  # nothing was touched
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", "sft", "--out", str(out), "--force", *TINY]) == 0  # the dead writer's lock is taken over


def test_the_lock_is_counted_within_a_process_and_refuses_a_link(tmp_path):
    acquire_run(tmp_path)
    acquire_run(tmp_path)  # the CLI and the trainer in one process
    release_run(tmp_path)
    proc = subprocess.run([sys.executable, "-c", f"from textgym.files import acquire_run; acquire_run({str(tmp_path)!r})"],
                          capture_output=True, text=True)
    assert "RunFolderBusy" in proc.stderr  # still held once
    release_run(tmp_path)
    proc = subprocess.run([sys.executable, "-c", f"from textgym.files import acquire_run; acquire_run({str(tmp_path)!r})"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(tmp_path / "elsewhere", linked / LOCK_FILE)
    with pytest.raises(OSError):
        acquire_run(linked)
    assert not (tmp_path / "elsewhere").exists()


def test_a_killed_writers_temporary_files_are_removed_when_the_run_goes_on(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "sft", "--out", str(out), *TINY, "--total-steps", "100"]) == 0
    leftover = out / ".policy.safetensors.x1y2.tmp"
    leftover.write_bytes(b"half a checkpoint")
    assert main(["train", "--resume", str(out), "--quiet", "--set", "total_steps=200"]) == 0
    assert not leftover.exists()
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


# -- a damaged state -----------------------------------------------------------------------------
def _state_copy(run: Path, tmp_path: Path, change) -> Path:
    out = tmp_path / "copy"
    out.mkdir()
    for p in run.iterdir():
        if p.is_file() and p.name != LOCK_FILE:
            (out / p.name).write_bytes(p.read_bytes())
    state = torch.load(out / STATE_FILE, weights_only=True)
    change(state)
    torch.save(state, out / STATE_FILE)
    return out


def _nan_weight(state):
    next(iter(state["policy"].values())).view(-1)[0] = float("nan")
    state["checksum"] = checksum(state)  # a state crafted to pass the checksum


def _flip_a_bit(state):
    moment = next(v for v in state["optimizer"]["state"].values())["exp_avg"]
    moment.view(-1).view(torch.int32)[0] ^= 1 << 20  # one bit of one Adam moment; the checksum is the old one


@pytest.mark.parametrize("change, message", [
    (_nan_weight, "holds non-finite values (NaN or inf) at /policy/"),
    (_flip_a_bit, "is damaged: its checksum does not match"),
    (lambda s: s.pop("threads"), "field 'threads' should be int, got NoneType"),
    (lambda s: s.update(ranks=[[1, 2]]), "field 'ranks' should hold each rank's streams"),
    (lambda s: s.update(iteration="7"), "field 'iteration' should be int, got str"),
])
def test_a_damaged_or_crafted_state_is_refused(run, tmp_path, capsys, change, message):
    out = _state_copy(run, tmp_path, change)
    assert main(["train", "--resume", str(out), "--quiet", "--set", "total_steps=400"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_state_of_another_textgym_version_resumes_with_a_warning(run, tmp_path):
    def older(state):
        state["textgym"] = "0.0.1"
        state["checksum"] = checksum(state)

    out = _state_copy(run, tmp_path, older)
    with pytest.warns(UserWarning, match="written by textgym 0.0.1 and this is"):
        assert main(["train", "--resume", str(out), "--quiet", "--set", "total_steps=400"]) == 0


# -- a stop that always stops --------------------------------------------------------------------
def test_sigterm_stops_at_once_when_the_iteration_does_not_end_in_its_grace(tmp_path):
    checkpointer = Checkpointer(tmp_path, 1, None, None, None, None)
    start = time.monotonic()
    with pytest.raises(TrainingAborted, match="0.3 s after SIGTERM stopped training at once"), \
            checkpointer.stop_on_signals(grace=0.3):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # an iteration that never ends
    assert time.monotonic() - start < 10
    assert signal.getsignal(signal.SIGTERM) is not None and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


STUCK_GAME = textwrap.dedent('''
    import time
    from pathlib import Path
    import gymnasium as gym

    class Stuck(gym.Env):
        """Echo a letter; every step hangs for good once the file STUCK exists."""
        def __init__(self):
            self.observation_space = gym.spaces.Text(max_length=2, charset="ab\\n")
            self.action_space = gym.spaces.Text(max_length=1, charset="ab")
            self.max_turns = 2

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.turn = 0
            return "a\\n", {}

        def step(self, message):
            while Path("STUCK").exists():
                time.sleep(0.05)
            self.turn += 1
            return "a\\n", float(message == "a"), self.turn == 2, False, {}
''')


def test_a_second_sigint_stops_a_stuck_run_at_once_keeping_the_last_state(tmp_path):
    (tmp_path / "stuck_game.py").write_text(STUCK_GAME)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "textgym", "train", "ppo", "--env", "textgym/MultiTurn-v0", "--env-kwargs",
           '{"text_env": "stuck_game:Stuck"}', "--out", str(out), "--save-every", "1", "--total-steps", "100000",
           "--num-envs", "8", "--quiet", "--set", "n_layers=1", "--set", "d_model=32", "--device", "cpu",
           "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / STATE_FILE).exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    (tmp_path / "STUCK").touch()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)  # asks for the end of an iteration that never comes
    time.sleep(1.0)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "a second SIGINT stopped training at once; the last state saved in" in err, err
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state["iteration"] >= 1 and state["checksum"] == checksum(state)
    assert not list(out.glob(".*.tmp"))


def test_a_damaged_metrics_line_is_named_not_dropped(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "sft", "--out", str(out), *TINY, "--save-every", "1000"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) >= 3
    (out / "metrics.jsonl").write_text("\n".join([lines[0], "{not json", *lines[2:]]) + "\n")
    assert main(["train", "--resume", str(out), "--quiet", "--set", "total_steps=400"]) == 2
    assert f"line 2 of {len(lines)} is not a JSON object" in capsys.readouterr().err
    (out / "metrics.jsonl").write_text("\n".join(lines) + '\n{"iteration": 9, "env_st')  # cut by a crash: left out
    assert main(["train", "--resume", str(out), "--quiet", "--set", "total_steps=400"]) == 0


def test_auto_resume_starts_over_a_run_killed_before_its_first_state(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "sft", "--out", str(out), "--auto-resume", *TINY]
    assert main(args) == 0
    whole = (out / "metrics.jsonl").read_text()
    for name in (STATE_FILE, "policy.safetensors", "policy.json"):  # as if killed before the first save
        (out / name).unlink()
    (out / "metrics.jsonl").write_text(whole.splitlines()[0] + "\n")
    assert main(["train", "sft", "--out", str(out), "--auto-resume", *TINY, "--seed", "1"]) == 2  # not this run
    assert "holds another run" in capsys.readouterr().err
    assert main(args) == 0
    assert [{k: v for k, v in json.loads(x).items() if k != "time"} for x in whole.splitlines()] == run_history(out)


# -- bounded memory ------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["textgym/Reverse-v0", "textgym/GuessNumber-v0", "textgym/Mastermind-v0"])
def test_evaluation_in_chunks_plays_the_same_episodes_as_one_batch(env_id, monkeypatch):
    from textgym.agents import evaluate
    from textgym.agents.rollout import SequenceView, make_envs
    from textgym.policies import make_policy

    torch.manual_seed(0)
    policy = make_policy(**SequenceView(make_envs(env_id, 1, torch.device("cpu"))).policy_spec(), n_layers=1, d_model=32)
    whole = list(evaluate.play_chunks(policy, env_id, {}, 23, seed=5, chunk=64))
    sizes = []
    real = evaluate.make_envs
    monkeypatch.setattr(evaluate, "make_envs", lambda env_id, n, *a, **k: sizes.append(n) or real(env_id, n, *a, **k))
    chunks = list(evaluate.play_chunks(policy, env_id, {}, 23, seed=5, chunk=7))
    assert sizes == [7, 7, 7, 2]  # never more than a chunk at once
    rows = [row for _, part in chunks for row in part]
    assert [r["actions"] for r in rows] == [r["actions"] for r in whole[0][1]]
    assert [(r["seed"], r["num_envs"], r["index"]) for r in rows[7:9]] == [(12, 7, 0), (12, 7, 1)]
    combined = evaluate.combine_metrics([m for m, _ in chunks])
    assert combined.keys() == whole[0][0].keys() and combined["episodes"] == 23
    assert all(combined[k] == pytest.approx(v, abs=1e-6) for k, v in whole[0][0].items())


def test_compare_in_chunks_gives_the_metrics_of_one_batch(monkeypatch, tmp_path):
    from textgym.agents import compare, evaluate

    out = tmp_path / "run"
    assert main(["train", "sft", "--out", str(out), *TINY]) == 0
    whole = compare.compare_policies([out], "textgym/Reverse-v0", episodes=20, reference=out, show=2)
    monkeypatch.setattr(compare, "EVAL_CHUNK", 6)
    sizes = []
    real = compare.make_envs
    monkeypatch.setattr(compare, "make_envs", lambda env_id, n, *a, **k: sizes.append(n) or real(env_id, n, *a, **k))
    chunked = compare.compare_policies([out], "textgym/Reverse-v0", episodes=20, reference=out, show=2)
    assert sizes == [6, 6, 6, 2] and evaluate.EVAL_CHUNK >= 1024
    assert list(chunked[0]) == list(whole[0]) and chunked[0]["samples"] == whole[0]["samples"]
    assert all(chunked[0][k] == pytest.approx(v, abs=1e-6) for k, v in whole[0].items() if k not in ("run", "samples"))


def test_sizes_that_would_not_fit_are_refused_before_anything_is_built(tmp_path, capsys):
    assert main(["train", "ppo", "--out", str(tmp_path / "a"), *TINY, "--set", "n_layers=100000", "--set",
                 "d_model=128"]) == 2
    err = capsys.readouterr().err
    assert "a policy of n_layers=100000, d_model=128" in err and "GiB" in err and err.count("\n") == 1, err
    assert main(["train", "ppo", "--out", str(tmp_path / "b"), *TINY, "--env-kwargs", '{"max_new_tokens": 1000000000}']) == 2
    assert "an episode holds at most 1,048,576" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_preference_pairs_are_made_as_they_are_written():
    from textgym.review import iter_preference_pairs, preference_pairs

    start = time.monotonic()
    pairs = iter_preference_pairs(10**12, seed=3)  # nothing is made before it is asked for
    first = [next(pairs) for _ in range(5)]
    assert time.monotonic() - start < 5 and first == preference_pairs(5, seed=3)
    with pytest.raises(ValueError, match="noise must be in"):
        iter_preference_pairs(5, noise=0.7)  # checked at once, not at the first pair


def test_a_stuck_text_env_is_stopped_by_its_call_timeout(tmp_path, capsys, monkeypatch):
    (tmp_path / "stuck_game_2.py").write_text(STUCK_GAME)
    (tmp_path / "STUCK").touch()
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    start = time.monotonic()
    assert main(["train", "ppo", "--env", "textgym/MultiTurn-v0", "--env-kwargs",
                 '{"text_env": "stuck_game_2:Stuck", "call_timeout": 0.5}', "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "text_env stuck_game_2:Stuck: step('" in err and "did not return within call_timeout=0.5 s" in err, err
    assert err.count("\n") == 1 and time.monotonic() - start < 60
    import gymnasium as gym

    with pytest.raises(ValueError, match="call_timeout must be a positive number of seconds or None"):
        gym.make("textgym/Mastermind-v0", call_timeout=0)


def test_a_state_from_before_checksums_resumes_with_a_warning(run, tmp_path):
    def older(state):
        del state["checksum"], state["textgym"]

    out = _state_copy(run, tmp_path, older)
    with pytest.warns(UserWarning, match="written by an earlier textgym, with no checksum"):
        assert main(["train", "--resume", str(out), "--quiet", "--set", "total_steps=400"]) == 0


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    from textgym import files

    path = tmp_path / "policy.safetensors"
    path.write_bytes(b"the good one")
    monkeypatch.setattr(files, "_disk_full", lambda folder: True)
    with pytest.raises(OSError, match="no space left on the device while writing .*policy.safetensors"), \
            replacing(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")  # as torch.save says
    assert path.read_bytes() == b"the good one" and sorted(p.name for p in tmp_path.iterdir()) == ["policy.safetensors"]


def test_a_metrics_line_without_its_counts_is_named(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "sft", "--out", str(out), *TINY, "--save-every", "1000"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join([lines[0], '{"mean_return": 1.0}', *lines[2:]]) + "\n")
    assert main(["train", "--resume", str(out), "--quiet", "--set", "total_steps=400"]) == 2
    assert "line 2 has no whole-number 'iteration' and 'env_steps'" in capsys.readouterr().err


def test_a_num_envs_that_is_a_typo_is_refused(tmp_path, capsys):
    assert main(["train", "ppo", "--out", str(tmp_path / "a"), *TINY, "--num-envs", "100000000"]) == 2
    assert "num_envs must be at most 16,777,216 sub-envs per vector env, got 100,000,000" in capsys.readouterr().err
