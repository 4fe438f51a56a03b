"""Counter-based random numbers, shared by the single and the vector envs.

A vector env of ``B`` episodes cannot keep ``B`` ``numpy`` generators and stay on the device, yet a
single env seeded with ``s + i`` must play exactly the episodes that sub-env ``i`` of a vector env
seeded with ``s`` plays (Gymnasium's seeding convention). Both are achieved by deriving every random
number from integers instead of a stateful generator:

* a *stream* per env: the seed it was reset with (sub-env ``i`` of a vector env: ``seed + i``);
* an *episode key* per episode: ``episode_key(stream, episode_index)``;
* the ``j``-th random number of an episode: ``draws(key, count)[j]``.

All of it is one integer hash applied element-wise to int64 tensors, so a batch of any size is one
tensor expression on any device. The hash is ``lowbias32`` from Chris Wellons' hash-prospector
(https://github.com/skeeto/hash-prospector), computed on the low 32 bits held in int64 lanes.
"""

from __future__ import annotations

import torch

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def hash32(x: torch.Tensor) -> torch.Tensor:
    """Mix the low 32 bits of an int64 tensor into a uniform value in ``[0, 2**32)``."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32  # the product may wrap past 2**63; its low 32 bits stay exact
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def episode_key(stream: torch.Tensor, episode: torch.Tensor) -> torch.Tensor:
    """The key of episode number ``episode`` of the env seeded ``stream`` (int64 tensors)."""
    return hash32(hash32(stream) + hash32(episode * _GOLDEN + 1))


def draws(keys: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` independent uniform integers in ``[0, 2**32)`` per key: shape ``(*keys.shape, count)``."""
    j = torch.arange(count, device=keys.device, dtype=torch.int64)
    return hash32(hash32(keys).unsqueeze(-1) + (j + 1) * _GOLDEN)


def as_stream(seed: int) -> int:
    """A seed as a stream id: any Python int, folded to 32 bits."""
    return int(seed) & _M32
