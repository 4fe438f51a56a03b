"""A Hugging Face sequence classifier as a reward: the classic sentiment reward of RLHF demos.

``make("hf_classifier", path=DIR, label="POSITIVE")`` scores each completion with the
probability (or the logit) that an ``AutoModelForSequenceClassification`` saved in ``DIR`` gives
the label, batched on the classifier's device. Combine it with other rewards by weight::

    positive = make("hf_classifier", path="models/sentiment", label="POSITIVE")
    reward = make([(positive, 1.0), ("f1", 0.5)])
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from textgym.rewards.core import EpisodeBatch, Reward
from textgym.tokenizers import load_hf_tokenizer

OUTPUTS = ("probability", "logit")


class HFClassifierReward(Reward):
    """The probability (or logit) of ``label`` under a ``transformers`` sequence classifier.

    Args:
        path: a local directory with the classifier and its tokenizer (``save_pretrained``); never downloaded.
        label: the label's name (``config.id2label``) or its index.
        output: ``"probability"`` (softmax over the labels; sigmoid for a one-logit head) or ``"logit"``.
        with_prompt: score prompt + completion rather than the completion alone.
        batch_size: texts per forward pass.
        max_length: truncate texts to this many tokens (default: the classifier's own limit).
        device: where the classifier runs.

    Raises:
        ValueError: ``path`` holds no classifier, or ``label`` is not one of its labels (the
            message lists them).
    """

    def __init__(self, path: str | os.PathLike, label: str | int, output: str = "probability", with_prompt: bool = False,
                 batch_size: int = 64, max_length: int | None = None, device: str | torch.device = "cpu") -> None:
        from transformers import AutoModelForSequenceClassification

        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {list(OUTPUTS)}, got {output!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not Path(path, "config.json").is_file():
            raise ValueError(f"{path} holds no Hugging Face classifier (no config.json)")
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"cannot load a sequence classifier from {path}: {e}") from None
        self.model.to(device).eval()
        self.tokenizer = load_hf_tokenizer(path)
        if self.tokenizer.pad_token is None:  # batches are padded
            if self.tokenizer.eos_token is None:
                raise ValueError(f"the classifier's tokenizer in {path} has neither a pad nor an eos token to pad with")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        labels = {int(i): str(name) for i, name in self.model.config.id2label.items()}
        if isinstance(label, int) and not isinstance(label, bool):
            if label not in labels:
                raise ValueError(f"label {label} is not one of the classifier's labels: {labels}")
            self.label = label
        else:
            names = {name: i for i, name in labels.items()}
            if label not in names:
                raise ValueError(f"label {label!r} is not one of the classifier's labels: {sorted(names)}")
            self.label = names[label]
        self.output, self.with_prompt, self.batch_size = output, bool(with_prompt), batch_size
        limit = getattr(self.model.config, "max_position_embeddings", None)
        self.max_length = max_length or (limit if isinstance(limit, int) else None)
        self.device = torch.device(device)
        self.name = f"hf_classifier[{labels[self.label]}]"

    @torch.no_grad()
    def score(self, batch: EpisodeBatch) -> torch.Tensor:
        texts = [p + c for p, c in zip(batch.prompts, batch.completions)] if self.with_prompt else batch.completions
        out = []
        for lo in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[lo : lo + self.batch_size], padding=True, truncation=self.max_length is not None,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            logits = self.model(**enc).logits.float()  # (b, n_labels)
            if self.output == "logit":
                out.append(logits[:, self.label])
            elif logits.shape[1] == 1:
                out.append(torch.sigmoid(logits[:, 0]))
            else:
                out.append(logits.softmax(-1)[:, self.label])
        return torch.cat(out) if out else torch.zeros(0)

    def __repr__(self) -> str:
        return f"HFClassifierReward(name={self.name!r}, output={self.output!r})"


def hf_classifier(**kwargs: Any) -> HFClassifierReward:
    return HFClassifierReward(**kwargs)
