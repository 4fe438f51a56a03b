"""Exact resume: a run stopped (by a signal, or killed) and resumed ends as the run never stopped."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from textgym.agents import grpo, ppo, reinforce, sft
from textgym.agents.state import STATE_FILE, same_weights
from textgym.agents.state import run_history as metrics
from textgym.cli import main

TRAINERS = {
    "ppo": (ppo, ppo.PPOConfig, {"kl_coef": 0.05, "adaptive_kl_target": 1.0}),
    "reinforce": (reinforce, reinforce.ReinforceConfig, {"baseline": "moving_average", "kl_coef": 0.05}),
    "grpo": (grpo, grpo.GRPOConfig, {"group_size": 4, "kl_coef": 0.05}),
    "sft": (sft, sft.SFTConfig, {"eval_every": 2}),
}


@pytest.mark.parametrize("name", list(TRAINERS))
def test_a_stopped_and_resumed_run_ends_as_the_uninterrupted_one(name, tmp_path, stop_at):
    module, cls, extra = TRAINERS[name]
    env_id = "textgym/Mastermind-v0" if name == "reinforce" else "textgym/Reverse-v0"  # a text game's own RNGs too
    total = 1500 if name == "reinforce" else 300
    cfg = cls(env_id=env_id, num_envs=8, total_steps=total, eval_episodes=8, device="cpu", n_layers=1, d_model=32, **extra)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    module.train(cfg, out=whole, progress=False, save_every=100)

    stopped = stop_at(3, module.train, cfg, out=parts, progress=False, save_every=100)
    assert re.search("SIGTERM stopped training after iteration 3; .* --resume", str(stopped))
    assert len(metrics(parts)) == 3
    module.train(cfg, out=parts, progress=False, save_every=100, resume=True)
    assert len(metrics(whole)) > 4
    assert metrics(parts) == metrics(whole)
    assert same_weights(parts, whole)


def _cli(run: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "textgym", "train", "ppo", "--env", "textgym/Reverse-v0", "--num-envs", "128",
            "--total-steps", "12000", "--recipe", "none", "--device", "cpu", "--threads", "1", "--quiet",
            "--save-every", "1", "--set", "eval_episodes=8", "--set", "kl_coef=0.05", *more]


def _wait_for_lines(run: Path, proc: subprocess.Popen, n: int) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        path = run / "metrics.jsonl"
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise TimeoutError(f"{run} did not reach {n} iterations")


def test_a_killed_run_resumes_to_the_same_metrics_and_bit_identical_weights(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(_cli(whole, "--out", str(whole)), check=True, capture_output=True)
    proc = subprocess.Popen(_cli(killed, "--out", str(killed)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_lines(killed, proc, 4)
    proc.send_signal(signal.SIGKILL)  # no handler runs: whatever was on disk is all there is
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert (killed / STATE_FILE).is_file() and not (killed / "learning_curve.png").exists()
    done = subprocess.run(_cli(killed, "--resume", str(killed)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(metrics(whole)) > 6
    assert metrics(killed) == metrics(whole)
    assert same_weights(killed, whole)


def test_sigterm_saves_at_the_end_of_the_iteration_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli(run, "--out", str(run), "--save-every", "1000"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_lines(run, proc, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert f"continue with `textgym train --resume {run}`" in err
    state = torch.load(run / STATE_FILE, weights_only=True)
    assert state["iteration"] == len(metrics(run))  # the iteration it was in finished, and was saved


def test_auto_resume_starts_a_new_run_and_continues_a_saved_one(tmp_path):
    run = tmp_path / "run"
    args = ["train", "sft", "--out", str(run), "--auto-resume", "--total-steps", "200", "--num-envs", "8", "--quiet",
            "--recipe", "none", "--set", "eval_episodes=8", "--device", "cpu"]
    assert main(args) == 0
    first = metrics(run)
    assert main(args) == 0  # the state is at the end: it resumes, has nothing left to train, evaluates
    assert metrics(run) == first


# -- bad input -----------------------------------------------------------------------------------


def test_resume_without_a_state(tmp_path, capsys):
    assert main(["train", "ppo", "--resume", str(tmp_path), "--quiet"]) == 2
    assert f"{tmp_path} holds no training state" in capsys.readouterr().err


def test_resume_with_other_settings_names_the_fields(tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "sft", "--total-steps", "100", "--num-envs", "8", "--quiet", "--recipe", "none", "--set",
            "eval_episodes=8", "--device", "cpu"]
    assert main([*base, "--out", str(run)]) == 0
    capsys.readouterr()
    changed = [*base[:3], "200", *base[4:], "--seed", "3", "--resume", str(run)]
    assert main(changed) == 2
    err = capsys.readouterr().err
    assert "--seed 3 differs from the run's seed 0" in err and "--total-steps 200 differs from the run's total_steps 100" in err
    assert "--set seed=... --set total_steps=..." in err
    assert main(["train", "ppo", "--resume", str(run), "--quiet"]) == 2
    assert "is a sft run, not ppo" in capsys.readouterr().err


def test_threads_must_be_positive(tmp_path, capsys):
    assert main(["train", "sft", "--out", str(tmp_path / "r"), "--threads", "0"]) == 2
    assert "threads must be a positive integer, got 0" in capsys.readouterr().err
    assert main(["train", "sft", "--out", str(tmp_path / "r"), "--threads", "100000"]) == 2
    err = capsys.readouterr().err
    assert "threads must be at most the" in err and "CPUs this process may use, got 100000" in err
    assert not (tmp_path / "r").exists()


def test_the_thread_policy_reads_affinity_omp_and_torchrun(monkeypatch):
    from textgym import threads

    monkeypatch.setattr(threads, "usable_cpus", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.choose_threads(others=0.0) == 8
    assert threads.choose_threads(others=2.9) == 5  # three cores busy elsewhere
    assert threads.choose_threads(others=8.0) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads(others=0.0) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads.choose_threads(others=0.0) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.choose_threads(others=0.0) == 4
    assert threads.choose_threads(others=4.0) == 2  # the free cores shared between the two ranks
    assert threads.choose_threads(5) == 5
    if hasattr(os, "sched_getaffinity"):
        monkeypatch.undo()
        assert threads.usable_cpus() == len(os.sched_getaffinity(0))


def test_a_busy_neighbour_is_seen():
    from textgym import threads

    if threads.busy_elsewhere(0.05) is None:
        pytest.skip("no /proc/stat on this system")
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert threads.busy_elsewhere(0.3) > 0.5  # the spinning process holds about one core
    finally:
        spin.kill()


def test_the_cpu_load_counts_what_passes_while_the_command_starts_less_its_own_time(monkeypatch):
    """CpuLoad measures from its creation: with the start already longer than the window it does not
    wait, and this process's own CPU time is not counted as other processes' load."""
    from textgym import threads

    clock, ticks, own = [100.0], [(1000, 10_000)], [0.0]
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(threads.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr(threads, "_cpu_ticks", lambda: ticks[0])
    monkeypatch.setattr(threads.os, "times", lambda: os.times_result((own[0], 0.0, 0.0, 0.0, 0.0)))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    load = threads.CpuLoad()
    clock[0], ticks[0], own[0] = 101.0, (1150, 10_200), 0.5  # 1 s of start: 1.5 cores busy, 0.5 of them ours
    assert load.busy_elsewhere(0.25) == pytest.approx(1.0)
    assert clock[0] == 101.0  # the start was longer than the window: no waiting
    short = threads.CpuLoad()
    clock[0] += 0.1
    short.busy_elsewhere(0.25)
    assert clock[0] == pytest.approx(101.25)  # waits out the rest of the window
    ticks[0] = None
    assert threads.CpuLoad().busy_elsewhere() is None  # no /proc/stat: unknown


def test_torchrun_restarts_a_killed_worker_and_auto_resume_continues_it(tmp_path):
    """torchrun --max-restarts=1 runs the same command again after a worker dies; --auto-resume
    makes that second start continue the run, which ends as the run that never died."""
    psutil = pytest.importorskip("psutil")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", "--max-restarts=1"]
    whole, restarted = tmp_path / "whole", tmp_path / "restarted"
    subprocess.run(_cli(whole, "--out", str(whole)), check=True, capture_output=True)
    cmd = [*torchrun, *_cli(restarted, "--out", str(restarted), "--auto-resume")[1:]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_lines(restarted, proc, 4)
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "textgym" in " ".join(p.cmdline())]
    assert len(workers) == 1
    workers[0].send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert metrics(restarted) == metrics(whole)
    assert same_weights(restarted, whole)
