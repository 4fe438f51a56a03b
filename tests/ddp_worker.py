"""Run by tests/test_distributed.py under torchrun: trains, then writes this rank's weights."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from textgym.agents import grpo, ppo, reinforce
from textgym.threads import set_threads

if __name__ == "__main__":
    algo, out = sys.argv[1], Path(sys.argv[2])
    set_threads(1)
    module, cls, extra = {"ppo": (ppo, ppo.PPOConfig, {"kl_coef": 0.05}),
                          "reinforce": (reinforce, reinforce.ReinforceConfig, {"baseline": "rloo", "rloo_k": 2}),
                          "grpo": (grpo, grpo.GRPOConfig, {"group_size": 4})}[algo]
    cfg = cls(env_id="textgym/Reverse-v0", num_envs=16, total_steps=400, eval_episodes=8, device="cpu", n_layers=1,
              d_model=32, **extra)
    result = module.train(cfg, out=out / "run", progress=False)
    rank = torch.distributed.get_rank()
    weights = {k: v.detach().clone().contiguous() for k, v in result.policy.state_dict().items()}
    save_file(weights, str(out / f"rank{rank}.safetensors"))
