"""Adam for textgym's trainers: ``torch.optim``'s own arithmetic, without ``torch._dynamo``.

Every method of a ``torch.optim.Optimizer`` (its constructor, ``step``, ``zero_grad``,
``state_dict``) imports ``torch._dynamo``, the compiler behind ``torch.compile``, on first use:
about as long as importing torch itself (1.1–1.3 s on a 2-core CPU), paid by every run, compiled
or not. :class:`Adam` keeps the same parameter groups and state and calls the same update,
``torch.optim.adam.adam`` (a plain function, with the same choice of kernel: one tensor at a time
on the CPU, ``foreach`` on CUDA), so its steps are those of ``torch.optim.Adam`` bit for bit, and
its ``state_dict`` is the one ``torch.optim.Adam`` writes and reads: a run saved with either
resumes with the other. ``decoupled_weight_decay=True`` is ``torch.optim.AdamW``.

It has what the trainers use (``param_groups``, ``state``, ``zero_grad``, ``step``,
``state_dict``, ``load_state_dict``) and no hooks or schedulers: for those, use ``torch.optim``.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch
from torch.optim.adam import adam


def _step_dtype() -> torch.dtype:
    """The dtype of a step count, as ``torch.optim`` picks it: float64 under a float64 default, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class Adam:
    """Adam (or AdamW) over ``params`` in one parameter group, as ``torch.optim.Adam(params, lr=lr,
    betas=betas, eps=eps, weight_decay=weight_decay, decoupled_weight_decay=...)`` computes it."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False) -> None:
        params = list(params)
        if not params:
            raise ValueError("Adam got an empty parameter list: give it the parameters to train")
        for name, value, ok in (("lr", lr, lr >= 0), ("eps", eps, eps >= 0), ("weight_decay", weight_decay, weight_decay >= 0),
                                ("betas[0]", betas[0], 0 <= betas[0] < 1), ("betas[1]", betas[1], 0 <= betas[1] < 1)):
            if not ok:
                raise ValueError(f"Adam: {name}={value} is out of range: lr, eps and weight_decay are >= 0, "
                                 "each beta is in [0, 1)")
        # The keys of torch.optim.Adam's group, so that the two read each other's state_dict.
        self.param_groups: list[dict[str, Any]] = [{
            "params": params, "lr": lr, "betas": (float(betas[0]), float(betas[1])), "eps": eps,
            "weight_decay": weight_decay, "amsgrad": False, "maximize": False, "foreach": None,
            "capturable": False, "differentiable": False, "fused": None,
            "decoupled_weight_decay": decoupled_weight_decay}]
        self.state: defaultdict[torch.Tensor, dict[str, torch.Tensor]] = defaultdict(dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (or zero it in place with ``set_to_none=False``)."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step on every parameter that has a gradient; the others stay as they are
        (named ``Adam.step`` under ``torch.profiler``, as ``torch.optim`` names its steps)."""
        with torch.autograd.profiler.record_function("Adam.step"):
            self._step()

    def _step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("Adam does not take sparse gradients: use torch.optim.SparseAdam")
                state = self.state[p]
                if not state:  # as torch.optim.Adam starts a parameter's state
                    state["step"] = torch.tensor(0.0, dtype=_step_dtype())
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            states = [self.state[p] for p in params]
            adam(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                 [], [s["step"] for s in states], foreach=None, capturable=False, differentiable=False, fused=None,
                 grad_scale=None, found_inf=None, has_complex=any(torch.is_complex(p) for p in params),
                 decoupled_weight_decay=group["decoupled_weight_decay"], amsgrad=False,
                 beta1=group["betas"][0], beta2=group["betas"][1], lr=group["lr"],
                 weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {"step", "exp_avg", "exp_avg_sq"}}, "param_groups": [...]}``, each
        parameter named by its index, as ``torch.optim.Adam.state_dict`` writes it."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups, start = [], 0
        for group in self.param_groups:
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": list(range(start, start + len(group["params"])))})
            start += len(group["params"])
        return {"state": {index[id(p)]: dict(s) for p, s in self.state.items()}, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the state of a ``state_dict`` of this optimizer or of ``torch.optim.Adam`` over the
        same parameters: the moments are copied onto each parameter's device and dtype, the step
        counts stay as saved (on the CPU). A state of other parameters raises ``ValueError``."""
        groups = state_dict["param_groups"]
        sizes = [len(g["params"]) for g in groups]
        ours = [len(g["params"]) for g in self.param_groups]
        if sizes != ours:
            raise ValueError(f"the optimizer state has parameter groups of {sizes} parameters, "
                             f"this optimizer {ours}")
        params = self._params()
        saved = [i for g in groups for i in g["params"]]
        state: defaultdict[torch.Tensor, dict[str, torch.Tensor]] = defaultdict(dict)
        for i, p in zip(saved, params):
            for key, value in state_dict["state"].get(i, {}).items():
                if key == "step":
                    state[p][key] = value.detach().clone()
                elif value.shape != p.shape:
                    raise ValueError(f"the optimizer state's {key} of parameter {i} has shape {tuple(value.shape)}, "
                                     f"the parameter {tuple(p.shape)}")
                else:
                    state[p][key] = value.detach().to(device=p.device, dtype=p.dtype, copy=True)
        for ours_group, group in zip(self.param_groups, groups):
            ours_group.update({k: copy.deepcopy(v) for k, v in group.items() if k != "params"})
        self.state = state
