"""Loading safetensors checkpoints without trusting them.

A checkpoint is a safetensors file of weights and a JSON config. Before anything is built, the
shapes in the file's header are compared with the shapes the config implies (the model is built on
PyTorch's ``meta`` device, which allocates nothing), so a crafted config cannot cost memory or
time. After loading, every weight must be finite: a flipped bit that makes a NaN or an inf is an
error, not a policy that silently scores 0.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn


def checkpoint_files(directory: str | Path, names: tuple[str, ...], what: str) -> tuple[Path, ...]:
    """The paths of a checkpoint's files in ``directory``, or a FileNotFoundError naming the one
    missing (e.g. ``no policy in runs/x: policy.json is missing``)."""
    paths = tuple(Path(directory) / name for name in names)
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"no {what} in {directory}: {path.name} is missing")
    return paths


def load_checked(build: Callable[[], nn.Module], weights: Path, device: str | torch.device = "cpu") -> nn.Module:
    """``build()`` filled with the weights of ``weights``, checked as the module docstring says.

    Raises:
        ValueError: the file is corrupt, its shapes do not match the config, or a weight is not finite.
    """
    from safetensors import safe_open
    from safetensors.torch import load_model

    try:
        with safe_open(str(weights), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for a damaged header
        raise ValueError(f"{weights} is corrupt: {e}") from None
    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except (ValueError, TypeError, RuntimeError) as e:
        raise ValueError(f"the config of {weights} is invalid: {e}") from None
    wrong = [f"{k}: {shapes[k]} in the file, {expected.get(k)} by the config" for k in shapes if shapes[k] != expected.get(k)]
    if wrong:
        raise ValueError(f"{weights} does not match its config: " + "; ".join(wrong[:3]) + (" ..." if len(wrong) > 3 else ""))
    model = build()
    try:
        load_model(model, str(weights), device=str(device))
    except Exception as e:  # safetensors raises several types for a damaged file
        raise ValueError(f"{weights} is corrupt or does not match its config: {e}") from None
    bad = [k for k, v in model.state_dict().items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"{weights} is corrupt: {', '.join(bad[:5])} hold NaN or infinite values")
    return model.to(device)
