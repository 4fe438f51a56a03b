"""textgym's agents: SFT, PPO, REINFORCE and GRPO, for any policy of the trainer -> policy
protocol (textgym's own transformer or a Hugging Face causal LM, see :mod:`textgym.policies`).

    from textgym.agents import ppo, reinforce, sft
    result = ppo.train(ppo.PPOConfig(env_id="textgym/GuessNumber-v0", env_kwargs={"shaping": True}))
    result.policy.save("runs/guess")
"""

from textgym.agents.evaluate import TrainResult, evaluate_policy
from textgym.agents.scripted import scripted_policy, vector_expert

__all__ = ["TrainResult", "evaluate_policy", "scripted_policy", "vector_expert"]
