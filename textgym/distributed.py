"""Training on several processes: torchrun starts them, each rank takes its share of the batch.

``torchrun --nproc-per-node=N -m textgym train ...`` runs N copies of the same command; torchrun
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in each one's
environment. :func:`init_ranks` reads them and joins the process group: gloo on CPUs, NCCL on
CUDA GPUs (one per local rank). Without torchrun there is one rank and every call below is a no-op.

The design is CleanRL's ``ppo_atari_multigpu.py``: data parallel, no model sharding.

* ``num_envs`` is the **global** batch: each rank plays ``num_envs / world_size`` episodes per
  iteration (the world size must divide it), so a run's budget, its metrics and its learning do not
  change with the number of processes.
* Rank ``r``'s sub-envs are seeded ``seed + r * num_envs / world_size + i``: together the ranks
  play exactly the episodes that one process with all ``num_envs`` sub-envs plays. Sampling draws
  from a generator seeded per rank.
* Every rank starts from rank 0's weights, computes its loss on its own episodes (normalised by its
  own steps, as DDP does), and the gradients are averaged with one all-reduce before clipping, so
  every rank takes the same step and the weights stay identical.
* Metrics are averaged over ranks; env steps are summed; only rank 0 writes the run directory.

The reward model (:func:`textgym.rewards.model.train_reward_model`) splits each minibatch of
pairs the same way: rank ``r`` scores every ``N``-th pair of it, from the ``r``-th.
"""

from __future__ import annotations

import datetime
import io
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

BACKENDS = ("auto", "gloo", "nccl")


@dataclass
class Ranks:
    """This process's place among the ranks, and the collectives a trainer needs."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run directory."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def envs_per_rank(self, num_envs: int) -> int:
        return num_envs // self.world

    def env_seed(self, seed: int, num_envs: int) -> int:
        """The seed of this rank's first sub-env: the ranks' sub-envs are one process's, split."""
        return seed + self.rank * self.envs_per_rank(num_envs)

    def sum(self, value: int) -> int:
        """``value`` summed over the ranks."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=self._device())
        dist.all_reduce(t)
        return int(t.item())

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank."""
        return self.sum(int(flag)) > 0 if self.active else flag

    def mean(self, metrics: dict) -> dict:
        """Every float of ``metrics`` averaged over the ranks (ints and strings as rank 0 has them)."""
        if not self.active:
            return metrics
        keys = [k for k, v in metrics.items() if isinstance(v, float)]
        t = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=self._device())
        dist.all_reduce(t)
        return {**metrics, **dict(zip(keys, (t / self.world).tolist()))}

    def mean_of(self, value: float) -> float:
        """One float averaged over the ranks."""
        return self.mean({"value": float(value)})["value"]

    def average_gradients(self, module: nn.Module) -> None:
        """Average the gradients of ``module``'s trainable parameters over the ranks, in one all-reduce."""
        if not self.active:
            return
        params = [p for p in module.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Give every rank rank 0's weights."""
        if not self.active:
            return
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def gather(self, obj: object) -> list[object]:
        """``obj`` of every rank, in rank order (on every rank)."""
        if not self.active:
            return [obj]
        buffer = io.BytesIO()
        torch.save(obj, buffer)  # tensors inside: sent as torch.save's bytes, read back with weights_only
        out: list[bytes | None] = [None] * self.world
        dist.all_gather_object(out, buffer.getvalue())
        return [torch.load(io.BytesIO(b), weights_only=True) for b in out]

    def _device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")



DIST_TIMEOUT = 600.0
"""Seconds a rank waits for the others (to join, or in a collective) before it fails, so that a
torchrun restart after a rank died ends in an error it can restart from, never a wait without end.
The environment variable ``TEXTGYM_DIST_TIMEOUT`` changes it."""


def dist_timeout() -> datetime.timedelta:
    """:data:`DIST_TIMEOUT`, or ``TEXTGYM_DIST_TIMEOUT`` when it is set."""
    raw = os.environ.get("TEXTGYM_DIST_TIMEOUT", str(DIST_TIMEOUT))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ValueError(f"TEXTGYM_DIST_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return datetime.timedelta(seconds=seconds)


def is_main_process() -> bool:
    """Rank 0 of torchrun's processes (or the only process): the one that writes and reports."""
    return os.environ.get("RANK", "0") == "0"


def init_ranks(backend: str, num_envs: int | None, device: torch.device) -> Ranks:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (once per process); else one rank.

    Args:
        backend: ``"auto"`` (NCCL when training on CUDA, else gloo), ``"gloo"`` or ``"nccl"``.
        num_envs: the global batch of envs, which the world size must divide (None: no envs).
        device: the training device (CUDA ranks use ``cuda:LOCAL_RANK``).

    Raises:
        ValueError: an unknown backend, NCCL without CUDA, or a world size that does not divide ``num_envs``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"dist_backend must be one of {list(BACKENDS)}, got {backend!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("dist_backend='nccl' needs CUDA GPUs, and this machine has none: use 'gloo' (or 'auto')")
    if num_envs is not None and num_envs % world:
        raise ValueError(f"num_envs={num_envs} must be a multiple of the world size {world}: each of the {world} "
                         "ranks plays num_envs / world_size episodes per iteration")
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
        if restart and "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
            # After a torchrun restart the store still holds the last round's keys (the dead ranks'
            # addresses): this round's group gets keys of its own, or its ranks connect to the dead.
            agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                                  is_master=rank == 0 and not agent, timeout=dist_timeout())
            dist.init_process_group(backend=backend, store=dist.PrefixStore(f"textgym/restart-{restart}/", store),
                                    rank=rank, world_size=world, timeout=dist_timeout())
        else:
            dist.init_process_group(backend=backend, timeout=dist_timeout())
    return Ranks(rank, world, local_rank)


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """A CUDA rank's own GPU (``cuda:LOCAL_RANK``); other devices as they are."""
    return torch.device("cuda", ranks.local_rank) if device.type == "cuda" and ranks.active else device
