"""Greedy evaluation of a policy on a textgym env, with the env's own metrics."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from torch import nn

from textgym.agents.rollout import Rollout, SequenceView, collect, make_envs
from textgym.names import code_names, vector_env_class
from textgym.policies import load_policy, tokenizer_dir
from textgym.tokenizers import TOKENIZER_DIR


@dataclass
class TrainResult:
    """What a trainer returns: the trained policy, one metrics dict per iteration, a greedy evaluation."""

    policy: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    eval: dict[str, float] = field(default_factory=dict)


def episode_metrics(envs, rollout: Rollout) -> dict[str, float]:
    """Mean return, success rate, mean episode length, and the env's own metrics.

    The env's own come from ``envs.episode_metrics()`` (the env -> trainer protocol): guessing
    games add ``mean_guesses``; token envs add ``exact_match`` and ``f1`` of the completions
    against the references and the task's own metrics (Review-v0: ``grammatical`` and
    ``positive_words``); multi-turn games add their turns and what their text env reports.
    """
    return {
        "episodes": float(envs.num_envs),
        "mean_return": float(rollout.returns.mean()),
        "success_rate": float(rollout.success.float().mean()),
        "mean_length": float(rollout.lengths.float().mean()),
        **envs.episode_metrics(),
    }


@torch.no_grad()
def _play(policy: nn.Module, env_id: str, env_kwargs: dict | None, episodes: int, device: str | torch.device,
          seed: int, sample: bool, group_size: int = 1) -> tuple[Any, Rollout]:
    """One episode per sub-env of a fresh vector env: the envs (which hold the episodes' ends) and the
    rollout. With ``group_size`` k, sub-envs come in groups of k that play the same examples."""
    device = torch.device(device)
    envs = make_envs(env_id, episodes, device, **(env_kwargs or {}))
    view = SequenceView(envs)
    view.check(policy)
    was_training = policy.training
    policy.eval()
    generator = torch.Generator(device=device).manual_seed(seed) if sample else None
    options = {"group_size": group_size} if group_size > 1 else None
    rollout = collect(envs, view, policy.to(device), seed=seed, reset_options=options, greedy=not sample,
                      generator=generator)
    policy.train(was_training)
    return envs, rollout


EVAL_CHUNK = 4096
"""Episodes played at once by :func:`evaluate_policy` and :func:`play_policy`: more are played in
chunks of this many, so memory stays flat in the number of episodes."""


def play_chunks(policy: nn.Module, env_id: str, env_kwargs: dict | None = None, episodes: int = 256,
                device: str | torch.device = "cpu", seed: int = 12345, sample: bool = False,
                chunk: int = EVAL_CHUNK) -> Iterator[tuple[dict[str, float], list[dict[str, Any]]]]:
    """Play ``episodes`` episodes in chunks of at most ``chunk``; for each chunk, its
    :func:`episode_metrics` and one :func:`trajectories` row per episode.

    Chunk ``k`` is a vector env reset with ``seed + k * chunk``: its sub-env ``j`` plays the episode
    that sub-env ``k * chunk + j`` of one big vector env reset with ``seed`` would, so the episodes
    do not depend on the chunk size (greedy play gives the same results; sampled play draws from
    one generator per chunk). Each row names its own chunk (``seed``, ``num_envs``, ``index``).
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes!r}")
    for lo in range(0, episodes, chunk):
        envs, rollout = _play(policy, env_id, env_kwargs, min(chunk, episodes - lo), device, seed + lo, sample)
        yield episode_metrics(envs, rollout), trajectories(envs, rollout, env_id, env_kwargs or {}, seed + lo)


def combine_metrics(parts: list[dict[str, float]]) -> dict[str, float]:
    """The metrics of several chunks of episodes as those of all of them: each metric (a mean over
    episodes) weighted by its chunk's episodes; a metric that some chunk lacks is left out."""
    if len(parts) == 1:
        return parts[0]
    total = sum(p["episodes"] for p in parts)
    keys = [k for k in parts[0] if all(k in p for p in parts)]
    return {k: total if k == "episodes" else sum(p[k] * p["episodes"] for p in parts) / total for k in keys}


def play_policy(policy: nn.Module, env_id: str, env_kwargs: dict | None = None, episodes: int = 256,
                device: str | torch.device = "cpu", seed: int = 12345,
                sample: bool = False) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Play ``episodes`` episodes: :func:`episode_metrics` and one :func:`trajectories` row each.

    Args:
        policy: the policy (its config must fit the env).
        env_id, env_kwargs: the env.
        episodes: how many (played in parallel, in chunks of :data:`EVAL_CHUNK`; see :func:`play_chunks`).
        device: where to run.
        seed: the envs' seed; the same seed gives the same examples to every policy compared.
        sample: sample at temperature 1 (from a generator seeded with ``seed``) instead of greedy.
    """
    parts, rows = [], []
    for metrics, chunk_rows in play_chunks(policy, env_id, env_kwargs, episodes, device, seed, sample):
        parts.append(metrics)
        rows += chunk_rows
    return combine_metrics(parts), rows


def evaluate_policy(policy: nn.Module, env_id: str, env_kwargs: dict | None = None, episodes: int = 256,
                    device: str | torch.device = "cpu", seed: int = 12345, sample: bool = False) -> dict[str, float]:
    """Play ``episodes`` episodes (greedy unless ``sample``) and return :func:`episode_metrics`;
    arguments as :func:`play_policy`, which also gives each episode's row."""
    return combine_metrics([m for m, _ in play_chunks(policy, env_id, env_kwargs, episodes, device, seed, sample)])


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of ``k`` samples drawn without replacement from ``n``, of which
    ``c`` are right, is right: ``1 - C(n-c, k) / C(n, k)``, the unbiased pass@k estimator of Chen et
    al. (2021), "Evaluating Large Language Models Trained on Code", computed as a stable product.

    Example:
        >>> pass_at_k(8, 2, 1)
        0.25
        >>> round(pass_at_k(4, 1, 2), 4)
        0.5
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def sampled_metrics(policy: nn.Module, env_id: str, env_kwargs: dict | None = None, problems: int = 256,
                    samples: int = 8, device: str | torch.device = "cpu", seed: int = 12345) -> dict[str, float]:
    """pass@k and best-of-n: ``samples`` episodes sampled (temperature 1) on each of ``problems``
    examples, the same examples greedy :func:`evaluate_policy` plays with the same ``seed``.

    Returns ``pass@k`` for k = 1, 2, 4, ... up to ``samples`` (and ``samples`` itself), each the
    mean over problems of :func:`pass_at_k` with ``c`` the episodes that succeeded, and
    ``best_of_n_return``: the mean over problems of the best return among the ``samples``.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if isinstance(problems, bool) or not isinstance(problems, int) or problems < 1:
        raise ValueError(f"problems must be a positive integer, got {problems!r}")
    ks = sorted({2**i for i in range(samples.bit_length()) if 2**i <= samples} | {samples})
    per_chunk = max(1, EVAL_CHUNK // samples)  # problems played at once
    totals = dict.fromkeys(ks, 0.0)
    best = 0.0
    for lo in range(0, problems, per_chunk):
        count = min(per_chunk, problems - lo)
        # group i of chunk lo plays stream seed + lo + i: the example greedy sub-env lo + i plays
        _, rollout = _play(policy, env_id, env_kwargs, count * samples, device, seed + lo, True, samples)
        wins = rollout.success.view(count, samples).sum(1).tolist()
        best += float(rollout.returns.view(count, samples).max(1).values.sum())
        for k in ks:
            totals[k] += sum(pass_at_k(samples, int(c), k) for c in wins)
    return {**{f"pass@{k}": totals[k] / problems for k in ks}, f"best_of_{samples}_return": best / problems}


def trajectories(envs, rollout: Rollout, env_id: str, env_kwargs: dict, seed: int) -> list[dict[str, Any]]:
    """One row per episode, as ``textgym eval --save`` writes them and ``textgym train sft --data`` reads them.

    Each row holds where the episode was played (``env_id``, ``env_kwargs``, ``seed``, ``num_envs``,
    ``index``: sub-env ``index`` of a vector env reset with ``seed`` replays it), its ``actions``,
    ``return``, ``success`` and ``length``, and its text: ``prompt``, ``completion`` and
    ``references`` for token envs, or the whole ``transcript`` where the env has a tokenizer.
    """
    texts = envs.episode_texts() if hasattr(envs, "episode_texts") else None
    tokenizer = getattr(envs, "tokenizer", None)
    lengths = rollout.lengths.tolist()
    rows = []
    for i, (actions, ret, won) in enumerate(zip(rollout.actions.tolist(), rollout.returns.tolist(), rollout.success.tolist())):
        row: dict[str, Any] = {"env_id": env_id, "env_kwargs": env_kwargs, "seed": seed, "num_envs": envs.num_envs,
                               "index": i, "return": ret, "success": bool(won), "length": lengths[i],
                               "actions": actions[: lengths[i]]}
        if texts is not None:
            example, completion = texts[i]
            row.update(prompt=example.prompt, completion=completion, references=list(example.references))
        elif tokenizer is not None:
            row["transcript"] = tokenizer.decode(rollout.inputs[i].tolist())
        rows.append(row)
    return rows


class UntrustedRun(ValueError):
    """A run's ``config.json`` names code (``"module:name"``) that loading the run would import."""


@dataclass
class RunEnv:
    """The env a saved run is played on: its id and arguments, and the run's ``config.json`` (empty
    when it has none)."""

    env_id: str
    env_kwargs: dict
    config: dict


def read_run_config(run: str | Path) -> dict:
    """The ``config.json`` of the run folder ``run``.

    Raises:
        FileNotFoundError: ``run`` is not a folder, or holds no ``config.json`` (each named).
        ValueError: a ``config.json`` that is not a textgym run config.
    """
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    path = run / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run} has no config.json (what the run was trained on): a run from textgym before "
                                "0.1 or a policy saved with policy.save(); pass the env (--env)")
    try:
        config = json.loads(path.read_text())
        if not isinstance(config, dict) or not isinstance(config.get("env_id"), str) \
                or not isinstance(config.get("env_kwargs", {}), dict):
            raise ValueError("no env_id string and env_kwargs object at its top")
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path} is not a textgym run config ({type(e).__name__}: {e})") from None
    return config


def rebase_paths(value: Any, cwd: str | None) -> Any:
    """``value`` (a run config's field) with each relative path that names a file or folder in
    ``cwd`` (the folder the run was started in) but none here made absolute, so a run's data and
    models are found from any folder."""
    if isinstance(value, dict):
        return {k: rebase_paths(v, cwd) for k, v in value.items()}
    if isinstance(value, list):
        return [rebase_paths(v, cwd) for v in value]
    if isinstance(value, str) and cwd and value and not Path(value).is_absolute() and not Path(value).exists():
        there = Path(cwd) / value
        if there.exists():
            return str(there)
    return value


def _takes(env_id: str, kwarg: str) -> bool:
    """Whether the env ``env_id`` (its vector env) takes the argument ``kwarg``."""
    try:
        params = inspect.signature(vector_env_class(env_id)).parameters
    except (TypeError, ValueError):
        return False
    return kwarg in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def run_env(run: str | Path, env_id: str | None = None, env_kwargs: dict | None = None,
            trust_code: bool = False) -> RunEnv:
    """The env to play the run in ``run`` on: the run's own (``config.json``) unless ``env_id`` or
    ``env_kwargs`` say otherwise. Where the env takes a tokenizer, it is the one the run saved
    (``run/tokenizer``, or the model's in ``run/hf_model``) in place of one the run's arguments name
    (a path relative to where it was trained), and for other arguments that name none, so a run
    evaluates from any folder and on other data (``{"task": "test.jsonl"}``) with its own ids.

    Args:
        run: a run folder.
        env_id: another env (then ``env_kwargs`` default to none).
        env_kwargs: other arguments for the env.
        trust_code: allow the run's ``config.json`` to name code (``"module:name"``: a text env,
            task, reward or tokenizer of a user's module) that making its env imports. Off by
            default: a run folder is data (see :mod:`textgym.names`).

    Raises:
        FileNotFoundError: no such folder, or no ``config.json`` and no ``env_id``.
        UntrustedRun: the env would import code the run's config names, and ``trust_code`` is off.
    """
    run = Path(run)
    config: dict = {}
    if env_id is None or env_kwargs is None:
        try:
            config = read_run_config(run)
        except FileNotFoundError:
            if env_id is None:
                raise
    from_run = {}
    if env_id is None:
        env_id = from_run["env_id"] = config["env_id"]
    if env_kwargs is None:
        env_kwargs = config.get("env_kwargs", {}) if env_id == config.get("env_id") else {}
        env_kwargs = from_run["env_kwargs"] = rebase_paths(env_kwargs, config.get("cwd"))
    untrusted = code_names(from_run.get("env_id"), from_run.get("env_kwargs"))
    if untrusted and not trust_code:
        raise UntrustedRun(
            f"{run / 'config.json'} names code that making its env would import ({'; '.join(untrusted)}). A run folder is "
            "data: pass --trust-code (trust_code=True) if you trust this run, or name the env yourself (--env, --env-kwargs)")
    env_kwargs = dict(env_kwargs)
    saved = run / TOKENIZER_DIR if (run / TOKENIZER_DIR).is_dir() else tokenizer_dir(run)
    # the run's own arguments and no tokenizer named: the env builds the run's tokenizer again, as in training
    own = "env_kwargs" in from_run
    if saved is not None and own == ("tokenizer" in env_kwargs) and _takes(env_id, "tokenizer"):
        env_kwargs["tokenizer"] = str(saved.resolve())
    return RunEnv(env_id, env_kwargs, config)


def replay_text(env: gym.Env, seed: int, actions: list[int]) -> str:
    """The text of one episode as ``env`` (a single env made with ``render_mode="ansi"``) renders
    it: reset with ``seed`` and stepped with ``actions`` (sub-env ``i`` of a vector env reset with
    ``s`` plays the episode of the single env reset with ``s + i``)."""
    env.reset(seed=seed)
    for action in actions:
        env.step(action)
    return env.render()


def play(policy: nn.Module | str | Path, env_id: str | None = None, env_kwargs: dict | None = None, episodes: int = 3,
         seed: int = 12345, sample: bool = False, device: str | torch.device = "cpu", trust_code: bool = False,
         show: bool = True) -> list[dict[str, Any]]:
    """Watch a policy play: ``episodes`` episodes, each printed as the env renders it, with its return.

    Args:
        policy: a policy, or a run folder (its env is then the run's, see :func:`run_env`).
        env_id, env_kwargs: the env (needed for a policy; for a run, other than the run's).
        episodes, seed, sample, device: as :func:`play_policy` (greedy unless ``sample``).
        trust_code: for a run folder, as :func:`run_env`.
        show: print the episodes.

    Returns:
        One row per episode (:func:`trajectories`), with its rendered ``text``.

    Example:
        >>> from textgym.agents.evaluate import play
        >>> rows = play("runs/reverse", episodes=2)  # doctest: +SKIP
    """
    if isinstance(policy, (str, Path)):
        where = run_env(policy, env_id, env_kwargs, trust_code=trust_code)
        env_id, env_kwargs = where.env_id, where.env_kwargs
        policy = load_policy(policy, device)
    elif env_id is None:
        raise ValueError("play needs env_id for a policy object (or pass a run folder)")
    env_kwargs = env_kwargs or {}
    _, rows = play_policy(policy, env_id, env_kwargs, episodes, device, seed, sample)
    env = gym.make(env_id, render_mode="ansi", **env_kwargs)
    for n, row in enumerate(rows, 1):
        row["text"] = replay_text(env, row["seed"] + row["index"], row["actions"])
        if show:
            outcome = "success" if row["success"] else "failure"
            print(f"--- episode {n} of {episodes}: return {row['return']:.3f}, {outcome}, "
                  f"{row['length']} steps\n{row['text'].rstrip()}\n")
    env.close()
    return rows
