"""The env -> trainer protocol: textgym's agents, CLI and benchmarks never name an env class."""

import ast
import inspect
import re
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import textgym
from textgym.agents.rollout import PROTOCOL, SequenceView, check_protocol, make_envs

ROOT = Path(textgym.__file__).parent
IDS = [info.id for info in textgym.ENVS]


def env_classes() -> set[str]:
    """Every Gymnasium env or vector env class defined in textgym.envs."""
    import textgym.envs as envs_pkg

    names = set()
    for path in (ROOT / "envs").glob("*.py"):
        module = __import__(f"textgym.envs.{path.stem}", fromlist=["_"])
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__.startswith("textgym.envs") and \
                    issubclass(obj, (gym.Env, gym.vector.VectorEnv)):
                names.add(name)
    assert {"GuessNumberVectorEnv", "TokenGenerationEnv", "TorchVectorEnv"} <= names, envs_pkg
    return names


def agent_sources() -> dict[str, str]:
    files = [*(ROOT / "agents").glob("*.py"), ROOT / "cli.py", ROOT / "bench.py"]
    return {str(p.relative_to(ROOT)): p.read_text() for p in files}


def identifiers(code: str) -> set[str]:
    """Every name, attribute and imported name the code uses (not its strings or comments)."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.name.split(".")[-1])
    return names


def isinstance_types(code: str) -> set[str]:
    """The names of the types that ``isinstance`` calls in the code test against."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
            names |= identifiers(ast.unparse(node.args[1]))
    return names


def test_no_env_class_is_named_in_the_agents_cli_or_bench():
    classes = env_classes()
    for path, text in agent_sources().items():
        named = sorted(classes & identifiers(text))
        assert not named, f"{path} names env classes {named}"
        tested = sorted(n for n in isinstance_types(text) if n.endswith("Env"))
        assert not tested, f"{path} branches on an env type: isinstance(..., {tested})"


def test_the_grep_would_catch_a_branch_on_an_env_class():
    code = "from textgym.envs import GuessNumberVectorEnv\nif isinstance(envs, (int, GuessNumberVectorEnv)): pass\n"
    assert env_classes() & identifiers(code) == {"GuessNumberVectorEnv"}
    assert isinstance_types(code) == {"int", "GuessNumberVectorEnv"}


def test_the_agents_import_nothing_from_textgym_envs():
    for path, text in agent_sources().items():
        if path.startswith("agents"):
            assert "textgym.envs" not in re.sub(r'""".*?"""', "", text, flags=re.S), path


@pytest.mark.parametrize("env_id", IDS)
def test_every_vector_env_declares_the_protocol(env_id):
    envs = make_envs(env_id, 4, torch.device("cpu"))
    check_protocol(envs)
    view = SequenceView(envs)
    obs, _ = envs.reset(seed=0)
    inputs, lengths = view.sequence(obs)
    assert inputs.shape[:2] == (4, envs.sequence_spec.max_len)
    assert bool((lengths >= 1).all()) and bool((lengths <= envs.sequence_spec.max_len).all())
    assert envs.max_episode_length >= 1 and envs.tokens_per_step >= 1


def test_a_plain_gymnasium_vector_env_is_refused_with_what_it_lacks():
    envs = gym.make_vec("CartPole-v1", num_envs=2)
    with pytest.raises(TypeError, match=r"is not a textgym vector env: it lacks \['max_episode_length'"):
        check_protocol(envs)
    assert "sequence" in PROTOCOL


# -- the trainer -> policy seam ------------------------------------------------------------------


def model_classes() -> set[str]:
    """Every nn.Module class defined in textgym.policies and textgym.transformer."""
    import importlib

    names = set()
    for module_name in ("textgym.policies.native", "textgym.policies.hf", "textgym.transformer"):
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module_name and issubclass(obj, torch.nn.Module):
                names.add(name)
    assert {"Policy", "HFPolicy", "Transformer"} <= names
    return names | {"PolicyConfig"}


def test_no_model_class_is_named_in_the_agents():
    classes = model_classes()
    for path, text in agent_sources().items():
        if path.startswith("agents"):
            named = sorted(classes & identifiers(text))
            assert not named, f"{path} names model classes {named}"
            assert not isinstance_types(text) & classes, path


def test_the_transformer_module_imports_nothing_from_textgym():
    tree = ast.parse((ROOT / "transformer.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
               [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert imported and not [m for m in imported if m and m.startswith("textgym")]


def test_the_rewards_import_nothing_from_the_agents():
    for path in (ROOT / "rewards").glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] + \
                   [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m.startswith("textgym.agents")], path.name


def test_a_policy_without_the_protocol_is_refused():
    from textgym.agents.rollout import check_policy

    with pytest.raises(TypeError, match=r"lacks \['vocab_size', 'n_actions'"):
        check_policy(torch.nn.Linear(2, 2))
