"""Standard agents on GuessNumber-v0: Stable-Baselines3 PPO, a CleanRL-style PPO and torchrl's PPO,
against random play and textgym's own PPO at the same budget.

Every standard agent plays the env with ``possible_mask=True`` (the observation gains a 0/1 entry
per number, 1 where the secret may still be: the flat form an MLP learns binary search from) and
``shaping=True``, with the same settings: an MLP of 2 x 128 tanh units for the policy and for the
value, batches of 8 envs x 256 steps, 4 epochs of 4 minibatches, step size 3e-3 annealed to 0,
gamma 1, GAE lambda 0.95, clip 0.2, entropy bonus 0.01. Each is evaluated greedily on the same
1,000 held-out games, all played at once on a vector env.

    python benchmarks/standard_agents.py                       # 3 seeds, 1M steps: about 95 minutes of one core
    python benchmarks/standard_agents.py --only sb3 --seeds 0  # one agent, one seed
    python benchmarks/standard_agents.py --quick               # tiny budgets, to check that it runs
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import textgym  # noqa: F401  (registers the envs)

ENV = "textgym/GuessNumber-v0"
ROOT = Path(__file__).parent.parent
LR, HIDDEN = 3e-3, [128, 128]


def evaluate(act, episodes: int, possible_mask: bool = True) -> dict:
    """Greedy success rate and mean guesses of ``act(obs (B, D) array) -> actions (B,)`` on held-out games."""
    envs = gym.make_vec(ENV, num_envs=episodes, autoreset_mode="disabled", possible_mask=possible_mask)
    obs, _ = envs.reset(seed=10_000)
    done = np.zeros(episodes, dtype=bool)
    success, guesses = np.zeros(episodes, dtype=bool), np.zeros(episodes)
    while not done.all():
        obs, _, terminated, truncated, info = envs.step(np.asarray(act(obs), dtype=np.int64))
        ended = (terminated | truncated) & ~done
        success[ended], guesses[ended] = info["is_success"][ended], info["guesses"][ended]
        done |= ended
    return {"success": float(success.mean()), "mean_guesses": float(guesses.mean())}


def random_play(steps: int, seed: int, episodes: int) -> dict:
    rng = np.random.default_rng(seed)
    return evaluate(lambda obs: rng.integers(0, 100, len(obs)), episodes)


def sb3(steps: int, seed: int, episodes: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(ENV, n_envs=8, seed=seed, env_kwargs={"shaping": True, "possible_mask": True})
    model = PPO("MlpPolicy", venv, learning_rate=lambda progress: LR * progress, n_steps=256, batch_size=512,
                n_epochs=4, gamma=1.0, gae_lambda=0.95, clip_range=0.2, ent_coef=0.01, seed=seed,
                policy_kwargs={"net_arch": HIDDEN})
    model.learn(steps)
    return evaluate(lambda obs: model.predict(obs, deterministic=True)[0], episodes)


def cleanrl(steps: int, seed: int, episodes: int) -> dict:
    spec = importlib.util.spec_from_file_location("cleanrl_ppo", ROOT / "examples" / "10_cleanrl_ppo.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = example.Args(total_steps=steps, seed=seed, learning_rate=LR, eval_episodes=episodes)
    agent = example.train(args)
    with torch.no_grad():
        return evaluate(lambda obs: agent.actor(torch.as_tensor(obs)).argmax(-1).numpy(), episodes)


def torchrl(steps: int, seed: int, episodes: int) -> dict:
    """torchrl's ``ClipPPOLoss``, ``GAE`` and collector on the vector env through ``GymWrapper``."""
    from tensordict.nn import TensorDictModule
    from torch import nn
    from torch.distributions import Categorical
    from torchrl.collectors import Collector
    from torchrl.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement
    from torchrl.envs.libs.gym import GymWrapper
    from torchrl.modules import MLP, ProbabilisticActor, ValueOperator
    from torchrl.objectives import ClipPPOLoss
    from torchrl.objectives.value import GAE

    torch.manual_seed(seed)
    env = GymWrapper(gym.make_vec(ENV, num_envs=8, autoreset_mode="same_step", shaping=True, possible_mask=True),
                     categorical_action_encoding=True)
    env.set_seed(seed)
    obs_dim = env.observation_spec["observation"].shape[-1]
    actor_net = MLP(in_features=obs_dim, out_features=100, num_cells=HIDDEN, activation_class=nn.Tanh)
    actor = ProbabilisticActor(TensorDictModule(actor_net, in_keys=["observation"], out_keys=["logits"]),
                               in_keys=["logits"], distribution_class=Categorical, return_log_prob=True,
                               spec=env.action_spec)
    value = ValueOperator(MLP(in_features=obs_dim, out_features=1, num_cells=HIDDEN, activation_class=nn.Tanh),
                          in_keys=["observation"])
    frames = 8 * 256
    collector = Collector(env, actor, frames_per_batch=frames, total_frames=steps)
    buffer = ReplayBuffer(storage=LazyTensorStorage(frames), sampler=SamplerWithoutReplacement())
    gae = GAE(gamma=1.0, lmbda=0.95, value_network=value)
    loss_fn = ClipPPOLoss(actor, value, clip_epsilon=0.2, entropy_coeff=0.01, normalize_advantage=True)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=LR)
    iterations = max(1, steps // frames)
    for i, data in enumerate(collector):
        optimizer.param_groups[0]["lr"] = LR * (1 - i / iterations)
        for _ in range(4):
            with torch.no_grad():
                gae(data)
            buffer.extend(data.reshape(-1))
            for _ in range(4):
                out = loss_fn(buffer.sample(frames // 4))
                loss = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(loss_fn.parameters(), 0.5)
                optimizer.step()
    collector.shutdown()
    with torch.no_grad():
        return evaluate(lambda obs: actor_net(torch.as_tensor(obs)).argmax(-1).numpy(), episodes)


def textgym_ppo(steps: int, seed: int, episodes: int) -> dict:
    """textgym's PPO at the same budget (its own transformer reads the game as a sequence)."""
    from textgym.agents import ppo

    result = ppo.train(ppo.PPOConfig(env_id=ENV, env_kwargs={"shaping": True}, total_steps=steps, seed=seed,
                                     eval_episodes=episodes, device="cpu"), progress=False)
    return {"success": result.eval["success_rate"], "mean_guesses": result.eval["mean_guesses"]}


AGENTS = {"random": ("random play", random_play), "sb3": ("Stable-Baselines3 PPO, MlpPolicy", sb3),
          "cleanrl": ("CleanRL-style PPO (examples/10_cleanrl_ppo.py)", cleanrl),
          "torchrl": ("torchrl ClipPPOLoss + GAE + Collector", torchrl),
          "textgym": ("textgym PPO (its own transformer, no possible_mask)", textgym_ppo)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(AGENTS), help="these agents only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="tiny budgets")
    parser.add_argument("--json", help="append one JSON line per run to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, episodes = (4096, 16) if args.quick else (args.steps, args.episodes)
    for key in args.only or AGENTS:
        name, fn = AGENTS[key]
        rows = []
        for seed in args.seeds:
            start = time.time()
            row = {"agent": key, "seed": seed, "steps": steps, **fn(steps, seed, episodes),
                   "seconds": time.time() - start}
            rows.append(row)
            print(f"{name:<52} seed {seed}: success {row['success']:.3f}, mean guesses {row['mean_guesses']:.2f}, "
                  f"{row['seconds']:.0f} s", flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
        wins = [r["success"] for r in rows]
        print(f"{name:<52} {steps:,} steps: success {np.mean(wins):.3f} ± {np.std(wins):.3f} over {len(rows)} seeds, "
              f"{np.mean([r['seconds'] for r in rows]):.0f} s each", flush=True)


if __name__ == "__main__":
    main()
