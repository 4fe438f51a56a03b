"""textgym's agents: a policy/value transformer trained with PPO, REINFORCE or SFT.

    from textgym.agents import ppo, reinforce, sft
    result = ppo.train(ppo.PPOConfig(env_id="textgym/GuessNumber-v0", env_kwargs={"shaping": True}))
    result.policy.save("runs/guess")
"""

from textgym.agents.evaluate import TrainResult, evaluate_policy
from textgym.agents.model import Policy, PolicyConfig
from textgym.agents.scripted import scripted_policy, vector_expert

__all__ = ["Policy", "PolicyConfig", "TrainResult", "evaluate_policy", "scripted_policy", "vector_expert"]
