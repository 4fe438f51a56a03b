"""The ``textgym`` command: ``list``, ``demo``, ``train``, ``eval``, ``play``, ``bench``, ``preferences``, ``train-rm``,
``eval-rm`` and ``compare``.

What a command runs (the trainers, policies and evaluation, which import torch) is imported inside
that command's function; the module itself imports only textgym's torch-free parts, so
``textgym --help`` and ``textgym list`` start at once (a test checks that torch is not loaded).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np

import textgym
from textgym.errors import TextEnvError
from textgym.files import (
    LOCK_FILE,
    acquire_run,
    clear_run,
    holds_run,
    parse_json,
    release_run,
    usable_run_dir,
    write_jsonl,
)
from textgym.names import (
    code_names,
    import_env_module,
    import_user_module,
    resolve,
    split_name,
    vector_env_class,
)
from textgym.recipes import all_recipes, find_recipe
from textgym.registry import ENV_INSTANCE_FIELDS, ENV_PROTOCOL, TRAINERS, TrainerInfo
from textgym.tables import text_table
from textgym.threads import CpuLoad, set_threads, usable_cpus


def _space(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Dict):
        return "Dict(" + ", ".join(f"{k}: {v.dtype}{tuple(v.shape)}" for k, v in space.spaces.items()) + ")"
    if isinstance(space, gym.spaces.Box):
        return f"Box({space.dtype}, {tuple(space.shape)})"
    return str(space)


def cmd_list(args: argparse.Namespace) -> int:
    """Print every registered env: id, spaces, default reward, description."""
    rows = []
    for info in textgym.ENVS:
        env = gym.make(info.id)
        rows.append([info.id, _space(env.action_space), _space(env.observation_space), info.default_reward, info.description])
        env.close()
    print(text_table(["id", "action space", "observation space", "default reward", "description"], rows))
    return 0


def play(env: gym.Env, policy, episodes: int, seed: int) -> tuple[float, float, float]:
    """Mean return, success rate and mean length of ``episodes`` episodes of ``policy``."""
    returns, wins, lengths = [], [], []
    for ep in range(episodes):
        obs, info = env.reset(seed=seed + ep)
        total, steps, done = 0.0, 0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
        returns.append(total)
        wins.append(bool(info.get("is_success", False)))
        lengths.append(steps)
    return float(np.mean(returns)), float(np.mean(wins)), float(np.mean(lengths))


def cmd_demo(args: argparse.Namespace) -> int:
    """Play every env with a random agent and with its scripted player; print a table."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents import scripted_policy

    rows = []
    for info in textgym.ENVS:
        env = gym.make(info.id)
        env.action_space.seed(args.seed)
        agents = {"random": lambda obs, env=env: env.action_space.sample(), "scripted": scripted_policy(env)}
        for name, policy in agents.items():
            ret, win, length = play(env, policy, args.episodes, args.seed)
            rows.append([info.id, name, str(args.episodes), f"{ret:.3f}", f"{win:.1%}", f"{length:.2f}"])
    print(text_table(["env", "agent", "episodes", "mean return", "success", "mean length"], rows))
    print("\nscripted: binary search for the guessing games, the reference answer for the token tasks "
          "(for Review-v0, a reference review: grammatical, with no preference for positive words).")
    return 0


TRAIN_DEFAULTS = {"env": "textgym/Reverse-v0", "env_kwargs": "{}", "seed": 0, "device": "auto"}
"""What ``textgym train`` uses for a flag not given (a resumed run uses its own settings instead)."""
RUN_FLAGS = {"env": "env_id", "env_kwargs": "env_kwargs", "seed": "seed", "device": "device", "init": "init",
             "total_steps": "total_steps", "num_envs": "num_envs"}
"""The flags of ``textgym train`` that set a config field, and the field."""
TRUST_HELP = ("let the run's config.json import the code it names (a text env, task, reward or tokenizer as "
              "MODULE:NAME): only for a run you trust")


class CLIError(Exception):
    """Bad input to the CLI: printed as ``textgym: <message>`` with exit status 2."""


def _json_arg(text: str, what: str) -> dict:
    try:
        value = parse_json(text, what)
    except ValueError as e:
        raise CLIError(f"{e}; expected a JSON object such as '{{\"key\": 1}}', got {text!r}") from None
    if not isinstance(value, dict):
        raise CLIError(f"{what} must be a JSON object, got {text!r}")
    return value


def _trainer(algo: str) -> tuple[TrainerInfo, object, type]:
    """The registered trainer ``algo``, its train function and its config class. ``"module:name"``
    imports ``module`` first (which registers the trainer ``name``), as env ids do."""
    parts = split_name(algo)
    if parts is not None:
        import_user_module(parts[0], f"trainer {algo!r}")
    name = parts[1] if parts is not None else algo
    if name not in TRAINERS:
        raise CLIError(f"unknown trainer {algo!r}: expected one of {list(TRAINERS)}, or MODULE:NAME for a trainer "
                       "that your module registers with textgym.registry.register_trainer")
    info = TRAINERS[name]
    return info, resolve(info.train, f"trainer {name!r}"), resolve(info.config, f"trainer {name!r}'s config")


def _config(algo: str, args: argparse.Namespace):
    """The trainer's config from the command line: the defaults, then the env's recipe for ``algo``
    (unless ``--recipe none``), then the common flags, then ``--set KEY=VALUE``."""
    info, train, cls = _trainer(algo)
    recipe = None if args.recipe == "none" else find_recipe(args.env, algo, required=args.recipe == "require")
    env_kwargs = {**(recipe.env_kwargs if recipe else {}), **_json_arg(args.env_kwargs, "--env-kwargs")}
    values = {**(recipe.config if recipe else {}), "env_id": args.env, "env_kwargs": env_kwargs, "seed": args.seed,
              "device": args.device, "init": args.init}
    if args.total_steps is not None:
        values["total_steps"] = args.total_steps
    if args.num_envs is not None:
        values["num_envs"] = args.num_envs
    if recipe is not None and not args.quiet:
        print(f"textgym: {algo} on {args.env} starts from its recipe ({recipe.result}); "
              "flags and --set override it, --recipe none turns it off", file=sys.stderr)
    return info, train, _build_config(cls, values, args.set)


def _build_config(cls, values: dict, settings: list[str] | None):
    """``cls(**values)`` with each ``--set KEY=VALUE`` applied (VALUE read as JSON, else as a string)."""
    names = {f.name for f in dataclasses.fields(cls)}
    for item in settings or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in names:
            raise CLIError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(names)}")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise CLIError(str(e)) from None


def _check_env_id(env_id: str) -> None:
    """A registered env id (``module:id`` imports the module first, as ``gym.make`` does)."""
    if split_name(env_id) is not None:
        import_env_module(env_id)
        env_id = env_id.partition(":")[2]
    known = [info.id for info in textgym.ENVS]
    if env_id not in gym.registry:
        raise CLIError(f"unknown env {env_id!r}: expected one of {known}, or an id your own module registers "
                       "(MODULE:ID imports it first)")
    entry = vector_env_class(env_id)
    if not all(hasattr(entry, name) for name in ENV_PROTOCOL if name not in ENV_INSTANCE_FIELDS):
        raise CLIError(f"{env_id!r} is not a textgym env (its vector env does not follow the env -> trainer "
                       f"protocol of textgym's vector env base class): expected one of {known}, "
                       "or textgym/MultiTurn-v0 with your text env")


def _make_env(env_id: str, env_kwargs: dict) -> gym.Env:
    _check_env_id(env_id)
    try:
        return gym.make(env_id, **env_kwargs)
    except (TypeError, ValueError) as e:
        raise CLIError(f"{env_id}: {e}") from None


def _check_start(trainer: TrainerInfo, cfg, policy) -> None:
    """Everything a run needs before it starts, checked on one env: the env and its kwargs, the
    device, the policy's fit and, for a trainer that imitates (SFT), an expert. A start that fails
    here touches no file."""
    import torch

    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents.common import resolve_device
    from textgym.agents.rollout import SequenceView, make_envs

    resolve_device(cfg.device)
    envs = make_envs(cfg.env_id, 1, torch.device("cpu"), **cfg.env_kwargs)
    if policy is not None:
        SequenceView(envs).check(policy)
    if trainer.needs_expert and not envs.has_expert:
        raise CLIError(f"{cfg.env_id} has no expert to imitate, so {trainer.name} cannot train on it")


def _saved_threads(out: Path) -> int | None:
    """The torch threads the run in ``out`` was started with (``config.json``), if it says."""
    try:
        threads = json.loads((out / "config.json").read_text()).get("threads")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return None
    fits = isinstance(threads, int) and 0 < threads <= usable_cpus()  # else chosen for this machine
    return threads if fits else None


def _resumed_config(out: Path, args: argparse.Namespace):
    """The trainer and config of the run in ``out`` (``--resume``), from its ``config.json``: a flag
    given that differs from the run's setting is refused, ``--set KEY=VALUE`` changes one on purpose."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents.evaluate import read_run_config, rebase_paths
    from textgym.agents.state import STATE_FILE

    if out.is_dir() and not (out / STATE_FILE).is_file():
        raise CLIError(f"--resume: {out} holds no training state ({STATE_FILE}) to continue; start a run with --out")
    try:
        saved = read_run_config(out)
        saved_algo, values = saved["algo"], dict(saved["config"])
        if not isinstance(saved_algo, str) or not isinstance(values, dict):
            raise KeyError("algo")
    except FileNotFoundError as e:
        raise CLIError(f"--resume: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise CLIError(f"--resume: {out / 'config.json'} is not a textgym training run's config ({e})") from None
    if args.algo is not None and args.algo != saved_algo:
        raise CLIError(f"--resume: {out} is a {saved_algo} run, not {args.algo}")
    args.algo = saved_algo
    untrusted = code_names(values.get("env_id"), values.get("env_kwargs"))
    if split_name(saved_algo) is not None:
        untrusted.append(f"trainer {saved_algo!r}")
    if untrusted and not args.trust_code:
        raise CLIError(f"--resume: {out / 'config.json'} names code that making its env would import "
                       f"({'; '.join(untrusted)}). A run folder is data: pass --trust-code if you trust this run")
    overridden = {item.partition("=")[0] for item in args.set or []}
    differ = []
    for flag, key in RUN_FLAGS.items():
        given = getattr(args, flag)
        if flag == "env_kwargs" and given is not None:
            given = _json_arg(given, "--env-kwargs")
        if given is not None and given != values.get(key) and key not in overridden:
            differ.append((f"--{flag.replace('_', '-')} {given!r} differs from the run's {key} {values.get(key)!r}", key))
    if differ:
        raise CLIError(f"--resume: {'; '.join(d for d, _ in differ)}. Drop the flags to continue the run as it was, "
                       f"or change a setting on purpose with {' '.join(f'--set {key}=...' for _, key in differ)}")
    args.env, args.init = values.get("env_id"), values.get("init")
    values = rebase_paths(values, saved.get("cwd"))
    info, train, cls = _trainer(saved_algo)
    return info, train, _build_config(cls, values, args.set)


def _check_resume(out: Path, algo: str, cfg) -> None:
    """``out`` holds a training state of a run started with this algorithm and these settings."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents.run import config_dict
    from textgym.agents.state import STATE_FILE

    if not (out / STATE_FILE).is_file():
        raise CLIError(f"--resume: {out} holds no training state ({STATE_FILE}) to continue; start a run with --out")
    try:
        saved = json.loads((out / "config.json").read_text())
        saved_algo, saved_cfg = saved["algo"], saved["config"]
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise CLIError(f"--resume: {out / 'config.json'} is not a textgym run config ({e})") from None
    if saved_algo != algo:
        raise CLIError(f"--resume: {out} is a {saved_algo} run, not {algo}")
    now = config_dict(cfg)
    differ = [f"{k}: {saved_cfg.get(k)!r} in the run, {now.get(k)!r} in this command"
              for k in sorted(set(saved_cfg) | set(now)) if saved_cfg.get(k) != now.get(k)]
    if differ:
        raise CLIError(f"--resume: the run in {out} was started with other settings ({'; '.join(differ)}); "
                       "resume with the command that started it")


def _started_by(out: Path, algo: str, cfg) -> bool:
    """Whether ``out/config.json`` is that of a run of ``algo`` with exactly ``cfg``'s settings."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents.run import config_dict

    try:
        saved = json.loads((out / "config.json").read_text())
        return saved["algo"] == algo and saved["config"] == config_dict(cfg)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return False


def cmd_train(args: argparse.Namespace) -> int:
    """Train a policy and write the run directory.

    The run directory is claimed only once the run can start: bad arguments leave an existing run
    untouched, ``--force`` removes the old run's files before the new run writes any, and a start
    that fails leaves nothing behind.
    """
    load = CpuLoad()  # measured while torch loads, for the thread count
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents.common import TrainingError, resolve_device
    from textgym.agents.run import write_run_config
    from textgym.agents.state import STATE_FILE, TrainingAborted, TrainingInterrupted
    from textgym.distributed import is_main_process
    from textgym.policies import load_policy

    if args.save_every < 1:
        raise CLIError(f"--save-every must be at least 1 iteration, got {args.save_every}")
    if args.resume is not None:
        if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
            raise CLIError(f"--resume {args.resume} continues that run in its own directory; drop --out {args.out}")
        trainer, train, cfg = _resumed_config(Path(args.resume), args)
        out, resume, restart = Path(args.resume), True, False
    else:
        if args.algo is None:
            raise CLIError(f"train needs the algorithm: textgym train {{{','.join(TRAINERS)}}} ... (or --resume DIR)")
        for flag, default in TRAIN_DEFAULTS.items():
            if getattr(args, flag) is None:
                setattr(args, flag, default)
        _check_env_id(args.env)
        trainer, train, cfg = _config(args.algo, args)
        if args.out is None:
            raise CLIError("train needs --out DIR (a new run) or --resume DIR (a run to continue)")
        out = Path(args.out)
        resume = args.auto_resume and (out / STATE_FILE).is_file()
        if resume:  # --auto-resume: the command line describes the run, and must match it
            _check_resume(out, args.algo, cfg)
        restart = args.auto_resume and not resume and _started_by(out, args.algo, cfg)  # killed before its first state
    main_rank = is_main_process()  # under torchrun, rank 0 alone claims and writes the run
    if (not resume and main_rank and out.is_dir() and holds_run(out)
            and not args.force and not restart):
        raise CLIError(f"{out} holds another run; choose another --out, pass --force to overwrite it, "
                       "or --resume it")
    saved_threads = _saved_threads(out) if resume and args.threads is None else None
    requested = args.threads if args.threads is not None else saved_threads
    threads = set_threads(requested, others=load.busy_elsewhere() if requested is None else None)
    if not args.quiet and main_rank:
        how = ("as the run was saved with" if saved_threads else "set with --threads" if args.threads
               else "chosen from the CPUs free for it")
        print(f"textgym: {threads} torch thread{'s' if threads > 1 else ''} per process ({how})", file=sys.stderr)
    policy = None
    if cfg.init is not None:
        try:
            policy = load_policy(cfg.init, resolve_device(cfg.device), **cfg.policy_options())
        except (FileNotFoundError, ValueError, ImportError) as e:
            raise CLIError(f"--init: {e}") from None
    extra = {}
    if args.data is not None:
        if not trainer.takes_data:
            takes = [name for name, t in TRAINERS.items() if t.takes_data]
            raise CLIError(f"--data trains on recorded episodes, which {args.algo} does not: use textgym train "
                           f"{' or '.join(takes)}")
        from textgym.agents.sft import load_trajectories

        extra = {"data": load_trajectories(args.data), "min_return": args.min_reward}
    elif args.min_reward is not None:
        raise CLIError("--min-reward filters the episodes of --data: pass --data FILE.jsonl too")
    _check_start(trainer, cfg, policy)
    existed = out.exists()
    if main_rank:
        if not resume:
            usable_run_dir(out)
        acquire_run(out)  # one writer: a live run writing this folder makes this one refuse, before any file changes
    try:
        if not resume and main_rank:
            clear_run(out)
            write_run_config(out, args.algo, cfg, recipe=args.recipe, threads=threads)
        result = train(cfg, policy=policy, out=out, progress=not args.quiet, save_every=args.save_every,
                              resume=resume, **extra)
    except (TrainingInterrupted, TrainingAborted) as e:
        print(f"textgym: {e}", file=sys.stderr)
        return 130 if "SIGINT" in str(e) else 143
    except TrainingError as e:
        kept = (f"the last good checkpoint is kept in {out}" if (out / "policy.safetensors").exists()
                else "no checkpoint was saved before it")
        print(f"textgym: {e}; {kept}", file=sys.stderr)
        return 1
    except BaseException:
        metrics = out / "metrics.jsonl"
        if main_rank and not resume and (not metrics.exists() or metrics.stat().st_size == 0):  # never started: leave nothing
            clear_run(out)
            if not existed:
                (out / LOCK_FILE).unlink(missing_ok=True)
                if not any(out.iterdir()):
                    out.rmdir()
        raise
    finally:
        if main_rank:
            release_run(out)
    final = {"run": str(out), **result.eval}
    if not main_rank:
        return 0
    if args.json:
        print(json.dumps(final))
    else:
        print(f"\ngreedy evaluation of {out} ({result.eval.get('episodes', 0):.0f} episodes):")
        print(_metrics_table(result.eval))
    return 0


def _metrics_table(metrics: dict) -> str:
    """A two-column table of metrics, as ``eval`` prints it."""
    return text_table(["metric", "value"], [[k, _number(k, v)] for k, v in metrics.items()])


COUNTS = ("episodes", "iteration", "env_steps")
"""Metrics that count things, printed as whole numbers."""


def _number(key: str, v) -> str:
    """A metric as the tables print it: a count as a whole number (``episodes 1000``), else 4 decimals."""
    if isinstance(v, str):
        return v
    return f"{v:.0f}" if key in COUNTS else f"{v:.4f}"


def cmd_recipes(args: argparse.Namespace) -> int:
    """Print the shipped recipes: env, algorithm, settings and what they reached."""
    recipes = [r for r in all_recipes() if args.env in (None, r.env_id)]
    if args.env is not None and not recipes:
        raise CLIError(f"no recipe for {args.env!r}: the envs with recipes are {sorted({r.env_id for r in all_recipes()})}")
    rows = []
    for r in recipes:
        settings = [*(f"{k}={v}" for k, v in r.config.items()), *(f"env {k}={v}" for k, v in r.env_kwargs.items())]
        rows.append([r.env_id, r.algo, " ".join(settings), r.result])
    print(text_table(["env", "algo", "settings", "result"], rows))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Greedy evaluation of a saved policy."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents.common import resolve_device
    from textgym.agents.evaluate import combine_metrics, play_chunks, run_env, sampled_metrics
    from textgym.policies import load_policy

    run = Path(args.run)
    env_kwargs = _json_arg(args.env_kwargs, "--env-kwargs") if args.env_kwargs is not None else None
    where = run_env(run, args.env, env_kwargs, trust_code=args.trust_code)
    env_id, env_kwargs = where.env_id, where.env_kwargs
    try:
        device = resolve_device(args.device)
        policy = load_policy(run, device)
        chunks = play_chunks(policy, env_id, env_kwargs, args.episodes, device, args.seed, args.sample)
        parts = []

        def rows():  # each chunk's rows as it is played, its metrics kept: memory stays flat in the episodes
            for chunk_metrics, chunk_rows in chunks:
                parts.append(chunk_metrics)
                yield from chunk_rows

        if args.save:
            write_jsonl(Path(args.save), rows())
            print(f"wrote {args.episodes} episodes to {args.save}", file=sys.stderr)
        else:
            parts = [chunk_metrics for chunk_metrics, _ in chunks]
        metrics = {"env": env_id, **combine_metrics(parts)}
        if args.samples is not None:
            metrics.update(sampled_metrics(policy, env_id, env_kwargs, args.episodes, args.samples, device, args.seed))
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    if args.json:
        print(json.dumps(metrics))
    else:
        print(_metrics_table(metrics))
    return 0


def cmd_import_gguf(args: argparse.Namespace) -> int:
    """Write a GGUF file's model and tokenizer as a model directory ``--init`` trains from."""
    from textgym.policies.gguf import import_gguf

    out = import_gguf(args.file, args.out, dtype=args.dtype, overwrite=args.overwrite)
    print(f"wrote {out}: train from it with textgym train ... --init {out}")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    """Show a saved policy playing a few episodes, as the env renders them."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents.common import resolve_device
    from textgym.agents.evaluate import play

    env_kwargs = _json_arg(args.env_kwargs, "--env-kwargs") if args.env_kwargs is not None else None
    play(args.run, args.env, env_kwargs, args.episodes, args.seed, args.sample, resolve_device(args.device),
         trust_code=args.trust_code)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Throughput benchmarks: PPO against SB3, the vector env against SyncVectorEnv, generation scaling."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym import bench

    cfg = bench.BenchConfig.quick() if args.quick else bench.BenchConfig()
    cfg = dataclasses.replace(cfg, device=args.device)
    try:
        results = bench.run(cfg)
    except ValueError as e:
        raise CLIError(str(e)) from None
    print(json.dumps(results) if args.json else bench.report(cfg, results))
    return 0


def cmd_train_rm(args: argparse.Namespace) -> int:
    """Train a reward model on a preference or score JSONL file."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents.common import resolve_device
    from textgym.distributed import is_main_process
    from textgym.rewards import model as rm

    out = Path(args.out)
    if out.is_dir() and (out / "reward_model.safetensors").exists() and not args.force:
        raise CLIError(f"{out} holds another reward model; choose another --out or pass --force to overwrite it")
    tokenizer, max_len = None, None
    if args.env is not None:  # read the env's tokens, and anything it can write
        env = _make_env(args.env, _json_arg(args.env_kwargs, "--env-kwargs"))
        if not hasattr(env.unwrapped, "setup"):
            raise CLIError(f"--env {args.env}: a reward model scores text, so it needs a token env")
        tokenizer, max_len = env.unwrapped.tokenizer, env.unwrapped.setup.max_len + 1  # + the eos it scores
    cfg = _build_config(rm.RewardModelTrainConfig, {"epochs": args.epochs, "center_coef": args.center_coef,
                                                    "seed": args.seed, "max_len": max_len}, args.set)
    data = rm.load_reward_data(args.data)
    device = resolve_device(args.device)
    usable_run_dir(out)  # before training: a bad --out costs nothing
    model, tokenizer, metrics = rm.train_reward_model(data, cfg, tokenizer, device=device, out=out)
    if is_main_process():  # under torchrun, rank 0 reports
        print(json.dumps({"out": str(out), **metrics}))
    return 0


def cmd_preferences(args: argparse.Namespace) -> int:
    """Write preference pairs for textgym/Review-v0, labelled by its hidden rule with label noise."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.review import iter_preference_pairs, labelled_right

    try:
        pairs = iter_preference_pairs(args.pairs, args.noise, args.seed, args.corrupt)
    except ValueError as e:
        raise CLIError(str(e)) from None
    right = 0

    def counted():  # written as they are made: memory stays flat
        nonlocal right
        for pair in pairs:
            right += labelled_right(pair)
            yield pair

    write_jsonl(Path(args.out), counted())
    print(json.dumps({"out": args.out, "pairs": args.pairs, "labels_right": right / args.pairs}))
    return 0


def cmd_eval_rm(args: argparse.Namespace) -> int:
    """Evaluate a reward model on a JSONL file: pairwise accuracy, or MSE and correlation."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents.common import resolve_device
    from textgym.rewards import model as rm

    try:
        device = resolve_device(args.device)
        model, tokenizer = rm.load_reward_model(args.run, device)
        data = rm.load_reward_data(args.data)
        enc = rm.encode_rows(data, tokenizer, model.cfg.max_len, device)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    metrics = {**rm.evaluate_reward_model(model, enc, data.kind), "skipped_identical": data.skipped_identical,
               "too_long": len(data.too_long)}
    if args.json:
        print(json.dumps(metrics))
    else:
        print(text_table(["metric", "value"], [[k, _number(k, v)] for k, v in metrics.items()]))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Evaluate several saved policies on the same held-out episodes; print one table."""
    # imported here, not above: it loads torch (see the module docstring)
    from textgym.agents.common import resolve_device
    from textgym.agents.compare import compare_policies, format_comparison, write_comparison

    env_kwargs = _json_arg(args.env_kwargs, "--env-kwargs")
    try:
        rows = compare_policies(args.runs, args.env, env_kwargs, args.episodes, args.seed, args.reference,
                                args.reward_model, resolve_device(args.device), args.sample, args.show, args.samples)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    print(format_comparison(rows))
    if args.out:
        write_comparison(rows, args.out)
        print(f"wrote {args.out}/comparison.csv, comparison.json and comparison.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="textgym", description="Gymnasium environments for text generation.")
    parser.add_argument("--version", action="version", version=f"textgym {textgym.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list the registered envs")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("demo", help="play every env with a random and a scripted agent")
    p.add_argument("--episodes", type=int, default=100, help="episodes per env and agent (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a policy with PPO, REINFORCE, GRPO or SFT")
    p.add_argument("algo", nargs="?", metavar="TRAINER",
                   help=f"the trainer: {', '.join(TRAINERS)}, or MODULE:NAME for one your module registers "
                        "(with --resume: the run's)")
    p.add_argument("--env", help=f"env id (default {TRAIN_DEFAULTS['env']})")
    p.add_argument("--env-kwargs", help="the env's arguments as JSON, e.g. '{\"shaping\": true}'")
    p.add_argument("--total-steps", type=int, help="env steps to train for")
    p.add_argument("--num-envs", type=int, help="episodes per iteration")
    p.add_argument("--device", help="auto (CUDA when present, the default), cpu or cuda")
    p.add_argument("--seed", type=int, help="seeds the policy, the envs and the sampling (default 0)")
    p.add_argument("--init", help="start from this policy: a textgym run directory (SFT-then-RL) or a Hugging Face "
                   "causal LM's directory (config.json and weights; the env then tokenizes with its tokenizer)")
    p.add_argument("--out", help="run directory to write")
    p.add_argument("--force", action="store_true", help="overwrite a run already in --out")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its training state, with its own "
                   "settings (a flag that differs is refused; --set KEY=VALUE changes one on purpose)")
    p.add_argument("--trust-code", action="store_true", help=f"with --resume: {TRUST_HELP}")
    p.add_argument("--auto-resume", action="store_true",
                   help="continue the run in --out when it holds a training state, else start it, again if it is this "
                        "command's run killed before its first state (torchrun --max-restarts)")
    p.add_argument("--save-every", type=int, default=10, help="iterations between saves of the policy and training state")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the CPUs this process may use, shared "
                   "among torchrun's local processes)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other config field, e.g. --set learning_rate=1e-3")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="end with one JSON line of the final evaluation, not a table")
    p.add_argument("--data", help="SFT on the episodes of this file (from textgym eval --save) instead of the env's expert")
    p.add_argument("--min-reward", type=float, help="with --data, learn only from episodes whose return is at least this")
    p.add_argument("--recipe", choices=("auto", "require", "none"), default="auto",
                   help="start from the env's recipe for ALGO when it has one (auto, the default), insist on one "
                        "(require), or use the plain defaults (none); see textgym recipes")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("recipes", help="list the tuned settings of each env and algorithm, with what they reached")
    p.add_argument("--env", help="only this env's")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("eval", help="evaluate a saved policy greedily")
    p.add_argument("run", help="run directory (from textgym train)")
    p.add_argument("--env", help="env id (default: the run's)")
    p.add_argument("--env-kwargs", help="the env's arguments as JSON (default: the run's)")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--sample", action="store_true", help="sample at temperature 1 (seeded) instead of greedy decoding")
    p.add_argument("--trust-code", action="store_true", help=TRUST_HELP)
    p.add_argument("--save", metavar="FILE.jsonl", help="write every episode (prompt, completion or transcript, "
                                                        "actions, return, success) for textgym train sft --data")
    p.add_argument("--samples", type=int, metavar="N", help="also sample N episodes (temperature 1) of each of the "
                   "--episodes examples: pass@1, pass@2, ... pass@N (the unbiased estimator) and best-of-N return")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("import-gguf", help="turn a GGUF model file into a model directory for --init")
    p.add_argument("file", help="the .gguf file (e.g. SmolLM2-135M-Instruct.Q4_1.gguf)")
    p.add_argument("--out", required=True, help="the model directory to write")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="the weights' type in the directory (default float32)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_import_gguf)

    p = sub.add_parser("play", help="watch a saved policy play a few episodes, as text")
    p.add_argument("run", help="run directory (from textgym train)")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--env", help="env id (default: the run's)")
    p.add_argument("--env-kwargs", help="the env's arguments as JSON (default: the run's)")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--sample", action="store_true", help="sample at temperature 1 (seeded) instead of greedy decoding")
    p.add_argument("--device", default="auto")
    p.add_argument("--trust-code", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=cmd_play)

    p = sub.add_parser("bench", help="throughput benchmarks (a few minutes; --quick for a smoke run)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("train-rm", help="train a reward model on preferences or scores (JSONL)")
    p.add_argument("--data", required=True, help='JSONL: {"prompt","chosen","rejected","margin"?} or {"prompt","completion","score"}')
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--center-coef", type=float, default=0.0, help="weight of the reward-centering term")
    p.add_argument("--env", help="use this env's tokenizer and context, so the model scores anything the env's "
                                 "policies write (e.g. textgym/Review-v0)")
    p.add_argument("--env-kwargs", default="{}", help="the env's arguments as JSON")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other field of RewardModelTrainConfig, e.g. --set learning_rate=1e-3 --set n_layers=1")
    p.set_defaults(func=cmd_train_rm)

    p = sub.add_parser("preferences", help="write preference pairs for textgym/Review-v0, labelled by its hidden rule")
    p.add_argument("--pairs", type=int, default=20_000)
    p.add_argument("--noise", type=float, default=0.1, help="fraction of labels flipped (default 0.1)")
    p.add_argument("--corrupt", type=float, default=0.25, help="probability that a review has a mistake (default 0.25)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same pairs at any --noise")
    p.add_argument("--out", required=True, help="JSONL file to write")
    p.set_defaults(func=cmd_preferences)

    p = sub.add_parser("eval-rm", help="evaluate a reward model on a JSONL file")
    p.add_argument("run", help="directory written by train-rm")
    p.add_argument("--data", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval_rm)

    p = sub.add_parser("compare", help="evaluate several saved policies on the same held-out episodes")
    p.add_argument("runs", nargs="+", help="run directories (from textgym train)")
    p.add_argument("--env", required=True)
    p.add_argument("--env-kwargs", default="{}")
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--reference", help="a run whose policy is the KL reference (e.g. the SFT run)")
    p.add_argument("--reward-model", help="a reward model directory (from textgym train-rm) to score with")
    p.add_argument("--sample", action="store_true", help="sample at temperature 1 (seeded) instead of greedy decoding")
    p.add_argument("--show", type=int, default=0, metavar="N", help="also print the first N completions of each policy")
    p.add_argument("--samples", type=int, metavar="N", help="also pass@1 ... pass@N and the best-of-N return, from N "
                   "samples of each example")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", help="write comparison.csv, comparison.json and comparison.png here")
    p.set_defaults(func=cmd_compare)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return parser


USER_ERRORS = (CLIError, ValueError, TypeError, OSError, ImportError, gym.error.Error, TextEnvError)
"""What a user's input (or a user's own text env) can cause: each is one line on stderr and exit
status 2 (``--debug`` shows the traceback)."""


def _quiet_libraries() -> None:
    """No progress bars or info lines from transformers and the Hugging Face hub (``--quiet``)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # already imported: its settings were read then
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):
        _quiet_libraries()
    try:
        if getattr(args, "episodes", 1) < 1:
            raise CLIError(f"--episodes must be at least 1, got {args.episodes}")
        return args.func(args)
    except USER_ERRORS as e:
        if getattr(args, "debug", False):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in message:
            message += f": {e.filename}"
        print(f"textgym: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            raise
        print("textgym: interrupted (Ctrl-C); files being written were left as they were", file=sys.stderr)
        return 130


def command() -> int:
    """The ``textgym`` console script and ``python -m textgym``: :func:`main` on the command line.

    What exists when it returns is frozen out of the garbage collector (``gc.freeze``): the
    interpreter's last collection would walk every object torch and its compiler stack made, about
    half a second at exit, for memory the process hands back anyway (files, logs and checkpoints
    are closed by then)."""
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(command())
