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
the run: it finishes the iteration, saves the state and raises :class:`TrainingInterrupted`. A
second signal, or a SIGTERM's iteration that has not ended :data:`STOP_GRACE` seconds later (a
stuck env), stops it at once with :class:`TrainingAborted`, keeping the last state saved.

While it trains, a run holds its folder's lock (:func:`textgym.files.acquire_run`): a second
process that would write the same folder is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import textgym
from textgym.agents.optim import Adam
from textgym.distributed import Ranks
from textgym.files import acquire_run, release_run, remove_leftovers, replacing

STATE_FILE = "training_state.pt"
STATE_VERSION = 1
STOP_GRACE = 30.0
"""Seconds a run has after a SIGTERM to end its iteration and save, before it stops at once."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM stopped the run at the end of an iteration; its state is saved."""

    def __init__(self, out: Path | None, iteration: int, signal_name: str) -> None:
        self.out, self.iteration = out, iteration
        where = (f"the state of iteration {iteration} is saved in {out}: continue with `textgym train --resume {out}` "
                 "(from Python: train(cfg, out=..., resume=True))"
                 if out is not None else "no run directory, so nothing was saved")
        super().__init__(f"{signal_name} stopped training after iteration {iteration}; {where}")


class TrainingAborted(BaseException):
    """A second signal (or a SIGTERM's grace running out) stopped the run at once, mid-iteration;
    the last state saved is kept as it was.

    A ``BaseException``, as ``KeyboardInterrupt`` is: an ``except Exception`` in an env or a reward
    does not catch it.
    """

    def __init__(self, out: Path | None, why: str) -> None:
        self.out = out
        where = (f"the last state saved in {out} is kept: continue with `textgym train --resume {out}`"
                 if out is not None else "no run directory, so nothing was saved")
        super().__init__(f"{why} stopped training at once; {where}")


@dataclass
class Progress:
    """Where a run stands: iterations done, env steps taken, seconds trained, and what the trainer adapts."""

    iteration: int = 0
    env_steps: int = 0
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._since = time.time() - self.elapsed  # the clock of this session, set back by the earlier sessions' seconds

    def seconds(self) -> float:
        """Seconds trained so far, the earlier sessions of a resumed run included."""
        return time.time() - self._since


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


def _tensors(obj: Any, where: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in a nest of dicts, lists and tuples, with its place, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k], f"{where}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{where}/{i}")


def checksum(state: dict[str, Any]) -> str:
    """A BLAKE2 digest of a training state: every tensor's place, dtype, shape and bytes, and all
    the plain data beside them (everything but the ``checksum`` field itself)."""
    h = hashlib.blake2b(digest_size=16)
    for where, t in _tensors({k: v for k, v in state.items() if k != "checksum"}):
        t = t.detach().cpu().contiguous()
        h.update(f"{where}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    h.update(repr(_skeleton({k: v for k, v in state.items() if k != "checksum"})).encode())
    return h.hexdigest()


def _skeleton(obj: Any) -> Any:
    """``obj`` with every tensor replaced by a placeholder: the plain data of a state, to digest."""
    if isinstance(obj, torch.Tensor):
        return "<tensor>"
    if isinstance(obj, dict):
        return {k: _skeleton(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_skeleton(v) for v in obj]
    return obj


STATE_FIELDS = {"iteration": int, "env_steps": int, "elapsed": float, "extra": dict, "threads": int, "policy": dict,
                "optimizer": dict, "ranks": list, "checksum": str}
"""The fields of a training state and their types (``reference`` is a dict or None)."""


def check_state(state: dict[str, Any], path: Path) -> None:
    """Refuse a training state that is damaged or was not written by textgym: a missing field or
    one of the wrong type, a checksum that does not match (a flipped bit), non-finite weights or
    optimizer moments. A state written by another textgym version gets a warning.

    Raises:
        ValueError: naming the file and what is wrong with it.
    """
    if "checksum" not in state and "textgym" not in state:  # written by textgym before states had checksums
        warnings.warn(f"{path} was written by an earlier textgym, with no checksum: it resumes unverified, and not "
                      "necessarily bit for bit", stacklevel=3)
        state = {**state, "textgym": textgym.__version__}
        state["checksum"] = checksum(state)
    for name, kind in STATE_FIELDS.items():
        if not isinstance(state.get(name), kind) or (kind is int and isinstance(state.get(name), bool)):
            raise ValueError(f"{path} is not a textgym training state: field {name!r} should be {kind.__name__}, "
                             f"got {type(state.get(name)).__name__}")
    if not all(isinstance(r, dict) and isinstance(r.get("rng"), dict) and "envs" in r for r in state["ranks"]):
        raise ValueError(f"{path} is not a textgym training state: field 'ranks' should hold each rank's streams")
    if state["checksum"] != checksum(state):
        raise ValueError(f"{path} is damaged: its checksum does not match its contents (a changed or corrupted "
                         "file); resume from a copy of the run, or start it again")
    for where, t in _tensors({k: state[k] for k in ("policy", "optimizer", "reference")}):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{path} holds non-finite values (NaN or inf) at {where}: it cannot be resumed")
    if state.get("textgym") != textgym.__version__:
        warnings.warn(f"{path} was written by textgym {state.get('textgym', 'before 0.1.0')} and this is "
                      f"{textgym.__version__}: it resumes, but not necessarily bit for bit", stacklevel=3)


def run_history(run: str | os.PathLike) -> list[dict[str, Any]]:
    """A run folder's ``metrics.jsonl`` without the wall time: what a resumed run must repeat exactly."""
    lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]


def same_weights(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two run folders hold bit-identical policies (``policy.safetensors``)."""
    from safetensors.torch import load_file

    wa, wb = load_file(Path(a) / "policy.safetensors"), load_file(Path(b) / "policy.safetensors")
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


class Checkpointer:
    """Saves a run's state every ``every`` iterations, at the end and when a signal asks to stop.

    Args:
        out: the run directory (None: nothing is saved, and a signal stops the run unsaved).
        every: iterations between saves.
        policy, optimizer, generator, envs: what the state holds.
        reference: the KL reference, when it is a module of its own.
        ranks: with torchrun, every rank's streams and envs are gathered and rank 0 writes them.
    """

    def __init__(self, out: str | os.PathLike | None, every: int, policy: nn.Module, optimizer: Adam | torch.optim.Optimizer,
                 generator: torch.Generator, envs: Any, reference: Any = None, ranks: Any = None) -> None:
        self.ranks = ranks if ranks is not None else Ranks()
        self.out = Path(out) if out is not None else None
        self.every, self.policy, self.optimizer, self.generator, self.envs = every, policy, optimizer, generator, envs
        self.reference = reference if isinstance(reference, nn.Module) else None
        self.stop: str | None = None
        self.locked = False

    # -- the run folder's lock -----------------------------------------------------------------
    def lock(self) -> None:
        """Hold the run folder's lock (see :func:`textgym.files.acquire_run`) until :meth:`unlock`
        or a stop, and remove the temporary files a killed writer left there.

        Raises:
            textgym.files.RunFolderBusy: another live process writes the folder.
        """
        if self.out is not None and not self.locked:
            acquire_run(self.out)
            self.locked = True
            remove_leftovers(self.out)

    def unlock(self) -> None:
        if self.locked:
            release_run(self.out)
            self.locked = False

    # -- saving --------------------------------------------------------------------------------
    def save(self, progress: Progress) -> None:
        """Write the policy's checkpoint and the training state (each atomically)."""
        own = {"rng": rng_state(self.generator), "envs": self.envs.stream_state()}  # this rank's streams
        ranks = self.ranks.gather(own)  # every rank takes part, whoever writes
        if self.out is None or not self.ranks.is_main:
            return
        state = {
            "version": STATE_VERSION, "textgym": textgym.__version__, "iteration": progress.iteration,
            "env_steps": progress.env_steps, "elapsed": progress.elapsed, "extra": progress.extra,
            "threads": torch.get_num_threads(), "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "reference": self.reference.state_dict() if self.reference is not None else None,
            "ranks": ranks,
        }
        state["checksum"] = checksum(state)
        self.policy.save(self.out)
        with replacing(self.out / STATE_FILE) as tmp:
            torch.save(state, tmp)

    def end_of_iteration(self, progress: Progress) -> None:
        """Save when it is due; after a stop signal, save and raise :class:`TrainingInterrupted`."""
        progress.elapsed = progress.seconds()
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
        check_state(state, path)
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
    def stop_on_signals(self, grace: float | None = None):
        """While inside, SIGINT and SIGTERM ask the run to stop at the end of the iteration.

        A second signal stops it at once, and so does the end of ``grace`` seconds (default
        :data:`STOP_GRACE`) after a SIGTERM: :class:`TrainingAborted` is raised wherever the run
        is (a stuck env's step included), and the last saved state is kept as it was.
        """
        if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
            try:
                yield
            except BaseException:
                self.unlock()
                raise
            return
        names = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGALRM: "SIGALRM"}
        grace = STOP_GRACE if grace is None else grace

        def ask(signum, _frame):
            if self.stop is not None or signum == signal.SIGALRM:  # asked again, or the grace is over
                signal.setitimer(signal.ITIMER_REAL, 0)
                late = f"{grace:g} s after {self.stop}" if signum == signal.SIGALRM else f"a second {names[signum]}"
                raise TrainingAborted(self.out, late)
            self.stop = names[signum]
            if signum == signal.SIGTERM:
                signal.setitimer(signal.ITIMER_REAL, grace)

        previous = {s: signal.signal(s, ask) for s in names}
        try:
            yield
        except BaseException:
            self.unlock()  # the run ends here: the folder is free for the next writer
            raise
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for s, handler in previous.items():
                signal.signal(s, handler)
