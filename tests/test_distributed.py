"""torchrun with 2 CPU processes (gloo): the ranks stay identical, and their update is one process's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
FIXED = '{"task_kwargs": {"min_length": 4, "max_length": 4}}'  # every episode 5 steps: equal steps per rank


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("algo", ["ppo", "reinforce", "grpo"])
def test_the_ranks_weights_stay_identical(algo, tmp_path):
    _run([*TORCHRUN, str(Path(__file__).parent / "ddp_worker.py"), algo, str(tmp_path)])
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["env_steps"] > 8 * 2  # env steps are summed over both ranks' episodes
    assert (tmp_path / "run" / "policy.safetensors").is_file()


def test_one_update_on_two_ranks_is_one_process_update_on_the_same_episodes(tmp_path):
    """SFT, one iteration: 2 ranks of 8 sub-envs play the 16 episodes one process plays (the same
    seeds), each averages its loss over its 40 steps, and the averaged gradient is the global one."""
    args = ["train", "sft", "--env", "textgym/Reverse-v0", "--env-kwargs", FIXED, "--num-envs", "16",
            "--total-steps", "80", "--recipe", "none", "--device", "cpu", "--threads", "1", "--quiet",
            "--set", "eval_episodes=8", "--set", "n_layers=1", "--set", "d_model=32"]
    _run([*TORCHRUN, "-m", "textgym", *args, "--out", str(tmp_path / "two")])
    _run([sys.executable, "-m", "textgym", *args, "--out", str(tmp_path / "one")])
    two, one = load_file(tmp_path / "two" / "policy.safetensors"), load_file(tmp_path / "one" / "policy.safetensors")
    lines = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["env_steps"] == 80
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-6, rtol=1e-5)
    # the step moved the weights: this compares two updates, not two copies of the starting policy
    from textgym.agents.common import seed_everything
    from textgym.agents.rollout import SequenceView, make_envs
    from textgym.policies import make_policy

    seed_everything(0)
    view = SequenceView(make_envs("textgym/Reverse-v0", 1, torch.device("cpu"), **json.loads(FIXED)))
    start = make_policy(**view.policy_spec(), n_layers=1, d_model=32).state_dict()
    assert max(float((one[k] - start[k]).abs().max()) for k in one) > 1e-4


def test_a_world_size_that_does_not_divide_num_envs(tmp_path):
    done = subprocess.run([*TORCHRUN, "-m", "textgym", "train", "sft", "--num-envs", "15", "--out", str(tmp_path / "r"),
                           "--quiet", "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "num_envs=15 must be a multiple of the world size 2" in done.stderr


def test_nccl_without_cuda_is_refused(monkeypatch):
    from textgym.distributed import init_ranks

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ValueError, match="dist_backend='nccl' needs CUDA GPUs"):
        init_ranks("nccl", 16, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"dist_backend must be one of \['auto', 'gloo', 'nccl'\]"):
        init_ranks("mpi", 16, torch.device("cpu"))


def test_the_reward_model_on_two_ranks_takes_one_process_steps(tmp_path):
    """200 pairs, 20 held out, minibatches of 60: each rank scores 30 of every minibatch."""
    pairs = tmp_path / "pairs.jsonl"
    _run([sys.executable, "-m", "textgym", "preferences", "--pairs", "200", "--out", str(pairs)])
    args = ["train-rm", "--data", str(pairs), "--epochs", "2", "--set", "batch_size=60", "--set", "n_layers=1",
            "--set", "d_model=16", "--set", "warmup_steps=1", "--device", "cpu"]
    two = _run([*TORCHRUN, "-m", "textgym", *args, "--out", str(tmp_path / "two")])
    _run([sys.executable, "-m", "textgym", *args, "--out", str(tmp_path / "one")])
    assert two.stdout.count('"out"') == 1  # rank 0 alone reports
    a = load_file(tmp_path / "two" / "reward_model.safetensors")
    b = load_file(tmp_path / "one" / "reward_model.safetensors")
    for k in b:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-3)  # 6 Adam steps of float sums in another order


def test_joining_the_process_group_has_a_timeout(monkeypatch):
    """A restarted rank whose peers never come fails after the timeout instead of waiting for good."""
    import datetime

    from textgym import distributed

    seen = {}
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: seen.update(kw))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    distributed.init_ranks("gloo", 16, torch.device("cpu"))
    assert seen == {"backend": "gloo", "timeout": datetime.timedelta(seconds=distributed.DIST_TIMEOUT)}
    monkeypatch.setenv("TEXTGYM_DIST_TIMEOUT", "30")
    distributed.init_ranks("gloo", 16, torch.device("cpu"))
    assert seen["timeout"] == datetime.timedelta(seconds=30)
    monkeypatch.setenv("TEXTGYM_DIST_TIMEOUT", "forever")
    with pytest.raises(ValueError, match="TEXTGYM_DIST_TIMEOUT must be a positive number of seconds, got 'forever'"):
        distributed.init_ranks("gloo", 16, torch.device("cpu"))


def test_a_torchrun_restart_joins_with_keys_of_its_own(monkeypatch):
    """After a restart the store still holds the dead round's addresses: the new round's group is
    built on a prefix of its own, or its ranks try to connect to the dead ones."""
    from textgym import distributed

    seen = {}
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda **kw: seen.update(kw))
    monkeypatch.setattr(distributed.dist, "TCPStore", lambda *a, **kw: ("store", a, kw))
    monkeypatch.setattr(distributed.dist, "PrefixStore", lambda prefix, store: (prefix, store))
    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
                        "TORCHELASTIC_USE_AGENT_STORE": "True", "TORCHELASTIC_RESTART_COUNT": "2"}.items():
        monkeypatch.setenv(name, value)
    distributed.init_ranks("gloo", 16, torch.device("cpu"))
    prefix, (_, args, kwargs) = seen["store"]
    assert prefix == "textgym/restart-2/" and args == ("127.0.0.1", 29500, 2) and kwargs["is_master"] is False
    assert (seen["rank"], seen["world_size"], seen["backend"]) == (1, 2, "gloo")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")  # the first round: torch's own rendezvous
    seen.clear()
    distributed.init_ranks("gloo", 16, torch.device("cpu"))
    assert "store" not in seen
