"""Stable-Baselines3 support: a transformer features extractor and a VecEnv adapter.

Every textgym env already works with SB3 through ``make_vec_env`` (the GuessNumber env with
``"MlpPolicy"``, the token envs with ``"MultiInputPolicy"``). This module adds two things:

* :class:`TokenTransformerExtractor`: a small transformer over the token observations, for
  ``policy_kwargs=dict(features_extractor_class=TokenTransformerExtractor)``;
* :class:`SB3VecEnv`: runs a textgym torch vector env as an SB3 ``VecEnv``. SB3 does not accept
  Gymnasium vector envs, and it resets a finished sub-env within the same step, storing the last
  observation in ``info["terminal_observation"]``; the adapter does exactly that.

Example:
    >>> from stable_baselines3 import PPO
    >>> from stable_baselines3.common.vec_env import VecMonitor
    >>> venv = VecMonitor(SB3VecEnv("textgym/Reverse-v0", num_envs=8))
    >>> model = PPO("MultiInputPolicy", venv, n_steps=16,
    ...             policy_kwargs=dict(features_extractor_class=TokenTransformerExtractor))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvObs, VecEnvStepReturn
from torch import nn

from textgym.envs.core import TorchVectorEnv, as_numpy


class TokenTransformerExtractor(BaseFeaturesExtractor):
    """Token and position embeddings, a transformer encoder, and the last real token's state.

    Honours ``attention_mask``: padding is never attended to, and the features are the hidden
    state at the last position where the mask is 1 (the token just written).

    Args:
        observation_space: ``Dict(input_ids=Box, attention_mask=Box)`` of a textgym token env.
        d_model: width (the features dimension).
        n_layers: transformer layers.
        n_heads: attention heads (``d_model`` must be divisible by it).
        causal: causal attention (each position sees only the ones before it) or bidirectional.
        dropout: dropout in the encoder layers.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Dict,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        causal: bool = True,
        dropout: float = 0.0,
    ) -> None:
        if not isinstance(observation_space, gym.spaces.Dict) or "input_ids" not in observation_space.spaces:
            raise ValueError(
                "TokenTransformerExtractor needs a Dict observation with 'input_ids' and 'attention_mask', "
                f"got {observation_space}"
            )
        super().__init__(observation_space, features_dim=d_model)
        ids_space = observation_space["input_ids"]
        vocab_size, max_len = int(ids_space.high.max()) + 1, ids_space.shape[0]
        self.causal = causal
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d_model)
        self.register_buffer("causal_mask", torch.triu(torch.ones(max_len, max_len, dtype=torch.bool), 1), persistent=False)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = observations["input_ids"].long()  # (B, T): SB3 hands Box observations over as floats
        mask = observations["attention_mask"] > 0.5  # (B, T)
        mask[:, 0] = True  # an all-padding row would make attention NaN
        T = ids.shape[1]
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(T, device=ids.device))  # (B, T, C)
        h = self.encoder(x, mask=self.causal_mask[:T, :T] if self.causal else None, src_key_padding_mask=~mask)
        last = (mask.long().sum(1) - 1).clamp(min=0)  # (B,) index of the last real token
        return self.ln_f(h[torch.arange(len(ids), device=ids.device), last])  # (B, C)


def _per_env_infos(info: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's vector info (``info[k]`` with mask ``info["_k"]``) as SB3's list of dicts."""
    infos: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in info.items():
        if key.startswith("_") or key.startswith("final"):
            continue
        mask = np.asarray(as_numpy(info.get(f"_{key}", np.ones(num_envs, dtype=bool))))
        values = as_numpy(value)
        for i in np.flatnonzero(mask).tolist():
            infos[i][key] = values[i].item() if isinstance(values, np.ndarray) and values.ndim == 1 else values[i]
    return infos


class SB3VecEnv(VecEnv):
    """A textgym torch vector env as a Stable-Baselines3 ``VecEnv``.

    Each sub-env's ``info`` is passed through, so ``info["is_success"]`` at the end of an episode
    reaches SB3's ``Monitor``, ``VecMonitor`` and ``EvalCallback`` (which report a success rate).

    Args:
        env: a textgym vector env (e.g. from ``gym.make_vec``), or an env id to make one.
        num_envs: number of sub-envs, when ``env`` is an id.
        **kwargs: the env's own arguments, when ``env`` is an id.
    """

    def __init__(self, env: TorchVectorEnv | str, num_envs: int = 8, **kwargs: Any) -> None:
        if isinstance(env, str):
            kwargs.setdefault("device", "cpu")
            env = gym.make_vec(env, num_envs=num_envs, **kwargs)
        if not isinstance(env, TorchVectorEnv):
            raise TypeError(f"SB3VecEnv needs a textgym vector env or an env id, got {type(env).__name__}")
        if env.metadata["autoreset_mode"] != gym.vector.AutoresetMode.NEXT_STEP:
            raise ValueError("SB3VecEnv resets finished sub-envs itself: make the env with autoreset_mode='next_step'")
        self.env = env
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0]  # SB3's seed(s) stores s + i for sub-env i, as our vector env does
        obs, _ = self.env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return as_numpy(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(self._actions, dtype=np.int64))
        terminated, truncated = np.asarray(as_numpy(terminated)), np.asarray(as_numpy(truncated))
        done = terminated | truncated
        obs_np = as_numpy(obs)
        infos = _per_env_infos(info, self.num_envs)
        if done.any():
            # SB3 semantics: reset finished sub-envs now and keep their last observation in info.
            reset_obs, _ = self.env.reset(options={"reset_mask": done})
            reset_np = as_numpy(reset_obs)
            for i in np.flatnonzero(done).tolist():
                last = {k: v[i].copy() for k, v in obs_np.items()} if isinstance(obs_np, dict) else obs_np[i].copy()
                infos[i].update(terminal_observation=last, **{"TimeLimit.truncated": bool(truncated[i] and not terminated[i])})
            obs_np = reset_np
        return obs_np, np.asarray(as_numpy(reward), dtype=np.float32), done, infos
    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.env, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        if method_name == "action_masks":  # one row per sub-env, for sb3-contrib's MaskablePPO
            rows = np.asarray(as_numpy(result))
            return [rows[i] for i in self._get_indices(indices)]
        return [result] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def _get_indices(self, indices: Any) -> Sequence[int]:
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else indices
