"""Exact resume: a run's training state, saved atomically, and stops that save it.

A run directory holds ``training_state.pt`` beside the policy: the policy's and the optimizer's
state, the KL reference, the iteration, the env steps, the time trained, every random stream
(Python, numpy, torch, the sampling generator, CUDA, the envs' own streams) and what a trainer
adapts as it goes (the adaptive KL coefficient, a moving baseline). It is written every
``save_every`` iterations and at the end, to a temporary file moved into place. A run resumed from
it (``textgym train ... --resume DIR``) plays the same episodes and takes the same steps as the run
that was never stopped: same ``metrics.jsonl`` (time aside) and bit-identical weights, on the same
device with the same number of threads.

SIGINT (Ctrl-C) and SIGTERM (a scheduler's pre-emption, torchrun stopping its workers) do not kill
the run: it finishes the iteration, saves the state and raises :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import os
import random
import signal
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

STATE_FILE = "training_state.pt"
STATE_VERSION = 1


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the run at the end of an iteration; its state is saved."""

    def __init__(self, out: Path | None, iteration: int, signal_name: str) -> None:
        self.out, self.iteration = out, iteration
        where = (f"the state of iteration {iteration} is saved in {out}: continue with `textgym train --resume {out}` "
                 "(from Python: train(cfg, out=..., resume=True))"
                 if out is not None else "no run directory, so nothing was saved")
        super().__init__(f"{signal_name} stopped training after iteration {iteration}; {where}")


@dataclass
class Progress:
    """Where a run stands: iterations done, env steps taken, seconds trained, and what the trainer adapts."""

    iteration: int = 0
    env_steps: int = 0
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream of this process that training reads, as plain data and tensors."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(_as_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuples(x: Any) -> Any:
    return tuple(_as_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


class Checkpointer:
    """Saves a run's state every ``every`` iterations, at the end and when a signal asks to stop.

    Args:
        out: the run directory (None: nothing is saved, and a signal stops the run unsaved).
        every: iterations between saves.
        policy, optimizer, generator, envs: what the state holds.
        reference: the KL reference, when it is a module of its own.
        ranks: with torchrun, every rank's streams and envs are gathered and rank 0 writes them.
    """

    def __init__(self, out: str | os.PathLike | None, every: int, policy: nn.Module, optimizer: torch.optim.Optimizer,
                 generator: torch.Generator, envs: Any, reference: Any = None, ranks: Any = None) -> None:
        from textgym.distributed import Ranks

        self.ranks = ranks if ranks is not None else Ranks()
        self.out = Path(out) if out is not None else None
        self.every, self.policy, self.optimizer, self.generator, self.envs = every, policy, optimizer, generator, envs
        self.reference = reference if isinstance(reference, nn.Module) else None
        self.stop: str | None = None

    # -- saving --------------------------------------------------------------------------------
    def save(self, progress: Progress) -> None:
        """Write the policy's checkpoint and the training state (each atomically)."""
        own = {"rng": rng_state(self.generator), "envs": self.envs.stream_state()}  # this rank's streams
        ranks = self.ranks.gather(own)  # every rank takes part, whoever writes
        if self.out is None or not self.ranks.is_main:
            return
        state = {
            "version": STATE_VERSION, "iteration": progress.iteration, "env_steps": progress.env_steps,
            "elapsed": progress.elapsed, "extra": progress.extra, "threads": torch.get_num_threads(),
            "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
            "reference": self.reference.state_dict() if self.reference is not None else None,
            "ranks": ranks,
        }
        self.policy.save(self.out)
        fd, tmp = tempfile.mkstemp(dir=self.out, suffix=".tmp")
        os.close(fd)
        try:
            torch.save(state, tmp)
            os.replace(tmp, self.out / STATE_FILE)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def end_of_iteration(self, progress: Progress) -> None:
        """Save when it is due; after a stop signal, save and raise :class:`TrainingInterrupted`."""
        if self.ranks.any(self.stop is not None):  # every rank stops after the same iteration
            self.save(progress)
            raise TrainingInterrupted(self.out, progress.iteration, self.stop or "a signal to another rank")
        if progress.iteration % self.every == 0:
            self.save(progress)

    # -- resuming ------------------------------------------------------------------------------
    def restore(self) -> Progress:
        """Load the state saved in the run directory into the policy, optimizer, streams and envs.

        Raises:
            FileNotFoundError: the directory holds no training state.
            ValueError: the state is not one this version of textgym wrote, or does not fit the policy.
        """
        path = (self.out or Path(".")) / STATE_FILE
        if self.out is None or not path.is_file():
            raise FileNotFoundError(f"{self.out} holds no training state ({STATE_FILE}) to resume from")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file raises many types
            raise ValueError(f"{path} is not a textgym training state: {e}") from None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"{path} is not a training state of this textgym version")
        if len(state["ranks"]) != self.ranks.world:
            raise ValueError(f"{path} was saved by {len(state['ranks'])} ranks, and this run has {self.ranks.world}: "
                             "resume with the same number of processes")
        if state["threads"] != torch.get_num_threads():
            warnings.warn(f"the run was saved with {state['threads']} torch threads and resumes with "
                          f"{torch.get_num_threads()}: it goes on, but not bit for bit (pass --threads "
                          f"{state['threads']})", stacklevel=2)
        try:
            self.policy.load_state_dict(state["policy"])
            if self.reference is not None and state["reference"] is not None:
                self.reference.load_state_dict(state["reference"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ValueError(f"{path} does not fit this run's policy or optimizer: {e}") from None
        own = state["ranks"][self.ranks.rank]
        set_rng_state(own["rng"], self.generator)
        self.envs.load_stream_state(own["envs"])
        return Progress(state["iteration"], state["env_steps"], state["elapsed"], state["extra"])

    # -- signals -------------------------------------------------------------------------------
    @contextmanager
    def stop_on_signals(self):
        """While inside, SIGINT and SIGTERM ask the run to stop at the end of the iteration."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers belong to the main thread
            return
        names = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}

        def ask(signum, _frame):
            self.stop = names.get(signum, str(signum))

        previous = {s: signal.signal(s, ask) for s in names}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
