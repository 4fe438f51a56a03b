"""textgym's Adam: the steps and state of ``torch.optim.Adam``/``AdamW``, without importing ``torch._dynamo``."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from textgym.agents.optim import Adam


def a_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 3))


def loss_of(model, step):
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(step))
    return model(x).square().mean()


def train(model, optimizer, steps, skip_first_layer=()):
    """``steps`` steps; on the steps in ``skip_first_layer`` the first layer has no gradient
    (as PPO's critic warm-up leaves the policy's parameters), so Adam must leave it and its state alone."""
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_of(model, step).backward()
        if step in skip_first_layer:
            for p in model[0].parameters():
                p.grad = None
        optimizer.step()


KINDS = {
    "adam": (dict(lr=3e-2, eps=1e-5), lambda params: torch.optim.Adam(params, lr=3e-2, eps=1e-5)),
    "adamw": (dict(lr=3e-2, weight_decay=0.01, decoupled_weight_decay=True),
              lambda params: torch.optim.AdamW(params, lr=3e-2, weight_decay=0.01)),
    "l2": (dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1),
           lambda params: torch.optim.Adam(params, lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)),
}


def assert_same(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


def assert_same_state(ours, theirs):
    a, b = ours.state_dict(), theirs.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i, state in a["state"].items():
        assert state.keys() == b["state"][i].keys()
        for key, value in state.items():
            assert value.dtype == b["state"][i][key].dtype and torch.equal(value, b["state"][i][key]), (i, key)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_steps_and_state_are_torch_optims_bit_for_bit(kind):
    kwargs, theirs_of = KINDS[kind]
    ours_model, theirs_model = a_model(), a_model()
    ours, theirs = Adam(ours_model.parameters(), **kwargs), theirs_of(theirs_model.parameters())
    train(ours_model, ours, 6, skip_first_layer={0, 3})
    train(theirs_model, theirs, 6, skip_first_layer={0, 3})
    assert_same(ours_model, theirs_model)
    assert_same_state(ours, theirs)
    assert not torch.equal(ours_model[0].weight, a_model()[0].weight)  # it did train


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_state_saved_by_either_resumes_in_the_other(kind):
    """A run saved by torch.optim goes on in textgym's Adam, and the other way round, as if never stopped."""
    kwargs, theirs_of = KINDS[kind]
    straight = a_model()
    optimizer = theirs_of(straight.parameters())
    train(straight, optimizer, 6)
    for first, second in ((theirs_of, lambda params: Adam(params, **kwargs)),
                          (lambda params: Adam(params, **kwargs), theirs_of)):
        model = a_model()
        before = first(model.parameters())
        train(model, before, 3)
        saved = before.state_dict()
        after = second(model.parameters())
        after.load_state_dict(saved)
        for step in range(3, 6):
            after.zero_grad()
            loss_of(model, step).backward()
            after.step()
        assert_same(model, straight)


def test_the_step_size_is_read_from_the_group_each_step():
    """anneal() sets ``param_groups[0]["lr"]``: a step size of 0 leaves the parameters as they are."""
    model = a_model()
    optimizer = Adam(model.parameters(), lr=0.1)
    before = [p.clone() for p in model.parameters()]
    optimizer.param_groups[0]["lr"] = 0.0
    train(model, optimizer, 2)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_zero_grad_keeps_or_drops_the_gradients():
    model = a_model()
    optimizer = Adam(model.parameters())
    loss_of(model, 0).backward()
    optimizer.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1.0), "lr=-1.0 is out of range"),
    (dict(eps=-1e-8), "eps=-1e-08 is out of range"),
    (dict(betas=(1.0, 0.999)), r"betas\[0\]=1.0 is out of range"),
    (dict(betas=(0.9, -0.1)), r"betas\[1\]=-0.1 is out of range"),
    (dict(weight_decay=-0.1), "weight_decay=-0.1 is out of range"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Adam(a_model().parameters(), **kwargs)
    with pytest.raises(ValueError, match="empty parameter list"):
        Adam([])


def test_a_state_of_other_parameters_is_refused_and_nothing_changes():
    model = a_model()
    optimizer = Adam(model.parameters())
    train(model, optimizer, 1)
    good = optimizer.state_dict()
    other = nn.Linear(6, 8)
    wrong_count = Adam(other.parameters())
    other(torch.randn(2, 6)).sum().backward()
    wrong_count.step()
    with pytest.raises(ValueError, match=r"parameter groups of \[2\] parameters, this optimizer \[6\]"):
        optimizer.load_state_dict(wrong_count.state_dict())
    swapped = Adam(reversed(list(a_model().parameters())))
    for p in swapped.param_groups[0]["params"]:
        p.grad = torch.zeros_like(p)
    swapped.step()
    with pytest.raises(ValueError, match=r"exp_avg of parameter 0 has shape \(3,\), the parameter \(8, 6\)"):
        optimizer.load_state_dict(swapped.state_dict())
    assert_same_state(optimizer, _loaded(model, good))


def _loaded(model, state):
    optimizer = Adam(model.parameters())
    optimizer.load_state_dict(state)
    return optimizer


def test_a_training_run_does_not_import_torch_dynamo():
    """What the optimizer saves: a PPO run and an SFT run, each saved to a run folder, never load
    torch.compile's machinery (about a second of imports), unless compiling is asked for."""
    code = """
import sys, tempfile
from textgym.agents import ppo, sft
tiny = dict(num_envs=8, n_layers=1, d_model=16, n_heads=2, eval_episodes=8, total_steps=100)
with tempfile.TemporaryDirectory() as tmp:
    ppo.train(ppo.PPOConfig(env_id="textgym/Reverse-v0", **tiny), out=tmp + "/ppo", progress=False)
    sft.train(sft.SFTConfig(env_id="textgym/Reverse-v0", **tiny), out=tmp + "/sft", progress=False)
print(sorted(m for m in sys.modules if m.startswith("torch._dynamo")))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
