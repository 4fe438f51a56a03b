"""A Hugging Face causal language model as a textgym policy: logits from the LM, values from a head.

:class:`HFPolicy` wraps any ``transformers`` ``AutoModelForCausalLM`` (GPT-2, Llama, Qwen, ...) in
the trainer -> policy protocol of :mod:`textgym.policies`, so SFT, PPO, REINFORCE and GRPO train it
unchanged::

    from textgym.agents import ppo
    from textgym.policies import HFPolicy

    policy = HFPolicy.from_pretrained("models/my-gpt2", lora_r=8)   # a local directory
    cfg = ppo.PPOConfig(env_id="textgym/Reverse-v0", env_kwargs={"tokenizer": "models/my-gpt2"})
    result = ppo.train(cfg, policy=policy)

or from the command line, ``textgym train ppo --init models/my-gpt2 --set lora_r=8`` (the env then
tokenizes with the tokenizer saved in ``models/my-gpt2``).

* **Values.** ``value_model="shared"`` (the default) puts a linear value head on the LM's last
  hidden states: one forward pass gives logits and values, as TRL's value-head models do.
  ``"separate"`` gives the values their own copy of the LM's trunk (twice the compute and memory;
  the policy's gradients then never pass through the value loss).
* **Generation.** The rollout steps ``transformers``' own ``DynamicCache``. Every sequence of a
  batch appends the same number of slots per step, each slot at the sequence's own position
  (``position_ids``); slots written past a sequence's real end are masked out of attention
  (``attention_mask``) once the next step shows where the sequence really continues.
* **LoRA** (``lora_r > 0``, needs ``pip install peft``): only the adapters and the value head
  train, and the KL reference is the same model with its adapters disabled, not a second copy.
* **Saving.** :meth:`save` writes ``hf_model/`` (loadable by ``AutoModelForCausalLM.from_pretrained``,
  LoRA merged in, with its tokenizer), ``value_head.safetensors`` and ``policy.json``.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from textgym.checkpoints import load_checked
from textgym.policies import is_hf_model_dir, tokenizer_dir
from textgym.policies.native import at_positions
from textgym.tokenizers import load_hf_tokenizer

VALUE_MODELS = ("shared", "separate")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _dtype(name: str, device: torch.device) -> torch.dtype:
    """``"auto"``: bfloat16 on a CUDA device that supports it, else float32."""
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {name!r}")
    if name == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    return getattr(torch, name)


def _context_length(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _eos_ids(config: Any, tokenizer: Any) -> frozenset[int] | None:
    ids: set[int] = set()
    for eos in (getattr(config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(i) for i in eos)
    return frozenset(ids) or None


@dataclass
class HFCache:
    """What :meth:`HFPolicy.step` keeps between steps: the ``transformers`` caches, and for every
    cached slot its position in its sequence and whether it still holds a real token."""

    kv: Any
    value_kv: Any | None
    slot_pos: torch.Tensor  # (B, S)
    valid: torch.Tensor  # (B, S) bool


class HFPolicy(nn.Module):
    """A ``transformers`` causal LM with a value head, as a textgym policy.

    Args:
        model: a loaded ``AutoModelForCausalLM`` (see :meth:`from_pretrained` for a path).
        value_model: ``"shared"`` (default): a value head on the LM's last hidden states;
            ``"separate"``: a copy of the LM's trunk with its own value head.
        n_actions: the policy writes the first ``n_actions`` ids (default: the tokenizer's length
            when ``tokenizer`` is given, else the LM's output size). Models whose embedding matrix is
            padded past the tokenizer (Qwen's is) need it to match the env's vocabulary.
        tokenizer: the model's ``transformers`` tokenizer, saved with the policy.
        lora_r: LoRA rank; 0 (default) trains every weight. Needs ``peft``.
        lora_alpha, lora_dropout: LoRA's scaling and dropout.
        lora_target_modules: the modules that get adapters (default: ``peft``'s choice for the architecture).
        keep_dropout: keep the model's dropout. Off by default (every dropout set to 0, as TRL
            does): the log-probs of an update must be those the rollout sampled from.
    """

    def __init__(self, model: nn.Module, value_model: str = "shared", n_actions: int | None = None,
                 tokenizer: Any = None, lora_r: int = 0, lora_alpha: float = 16.0, lora_dropout: float = 0.0,
                 lora_target_modules: list[str] | None = None, keep_dropout: bool = False) -> None:
        super().__init__()
        if value_model not in VALUE_MODELS:
            raise ValueError(f"value_model must be one of {list(VALUE_MODELS)}, got {value_model!r}")
        if not hasattr(model, "get_output_embeddings") or model.get_output_embeddings() is None:
            raise TypeError(f"{type(model).__name__} is not a transformers causal LM (it has no output embeddings); "
                            "load it with AutoModelForCausalLM")
        if isinstance(lora_r, bool) or not isinstance(lora_r, int) or lora_r < 0:
            raise ValueError(f"lora_r must be a non-negative integer, got {lora_r!r}")
        if lora_r and value_model == "separate":
            raise ValueError("LoRA trains adapters on one model: use value_model='shared' with lora_r > 0")
        if not keep_dropout:
            for module in model.modules():
                if isinstance(module, nn.Dropout):
                    module.p = 0.0
        self.tokenizer = tokenizer
        self.value_model = value_model
        self.lora = None
        if lora_r:
            try:
                from peft import LoraConfig, get_peft_model
            except ImportError:
                raise ImportError("LoRA (lora_r > 0) needs peft: pip install 'textgym[lora]' (or pip install peft)") from None
            lora = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                              target_modules=lora_target_modules, task_type="CAUSAL_LM")
            self.lora = {"lora_r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
                         "lora_target_modules": lora_target_modules}
            with warnings.catch_warnings():  # GPT-2's Conv1D: peft sets fan_in_fan_out itself, and says so
                warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
                peft_model = get_peft_model(model, lora)  # adds the adapters in place and freezes the rest
            object.__setattr__(self, "_peft", peft_model)  # not a submodule: its weights are the LM's
        self.lm = model
        config = model.config
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self.n_actions = int(n_actions if n_actions is not None else len(tokenizer) if tokenizer is not None
                             else self.vocab_size)
        if not 1 <= self.n_actions <= self.vocab_size:
            raise ValueError(f"n_actions must be between 1 and the model's {self.vocab_size} output ids, got {self.n_actions}")
        self.max_len = _context_length(config) or 2**31 - 1
        self.n_features = 0
        self.eos_ids = _eos_ids(config, tokenizer)
        hidden, device = model.get_output_embeddings().weight.shape[1], model.get_output_embeddings().weight.device
        self.value_trunk = copy.deepcopy(model.base_model).requires_grad_(True) if value_model == "separate" else None
        self.value_head = nn.Linear(hidden, 1, device=device)  # beside the model: a policy wrapped on a GPU is on it
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self._cache_arg = "cache" if "cache" in inspect.signature(model.base_model.forward).parameters else "past_key_values"

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu", dtype: str = "auto",
                        **kwargs: Any) -> HFPolicy:
        """Load the causal LM (and its tokenizer, when one is saved there) from the local directory
        ``path``; never downloads. ``dtype``: ``"auto"`` (bfloat16 on CUDA that supports it,
        else float32), ``"float32"``, ``"bfloat16"`` or ``"float16"``. Other arguments as the class's.

        Raises:
            FileNotFoundError: ``path`` is not a model directory.
            ValueError: the model cannot be loaded.
        """
        from transformers import AutoModelForCausalLM


        path, device = Path(path), torch.device(device)
        if not is_hf_model_dir(path):
            raise FileNotFoundError(f"{path} is not a Hugging Face model directory (no config.json with a model_type)")
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=_dtype(dtype, device))
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise ValueError(f"cannot load a causal LM from {path}: {e}") from None
        tok = load_hf_tokenizer(tokenizer_dir(path)) if tokenizer_dir(path) is not None else None
        return cls(model, tokenizer=tok, **kwargs).to(device)

    # -- the trainer -> policy protocol ---------------------------------------------------------
    def _hidden(self, trunk: nn.Module, ids: torch.Tensor, cache: Any = None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {self._cache_arg: cache} if cache is not None else {}
        out = trunk(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=cache is not None, **kwargs)
        return out.last_hidden_state

    def _heads(self, h: torch.Tensor, hv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.lm.get_output_embeddings()(h)[..., : self.n_actions].float()
        return logits, self.value_head(hv.float()).squeeze(-1)

    def forward(self, inputs: torch.Tensor, at: torch.Tensor | None = None,
                prefix: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, L, n_actions)`` and values ``(B, L)`` at every position of right-padded ids
        ``(B, L)``, or with ``at (B, T)`` at those positions only (an update then projects only the
        positions actions were read from onto the vocabulary).

        ``prefix``: the first ``prefix`` positions of every row are a prompt that other rows may
        repeat (GRPO's groups). Each distinct prompt then goes through the model once, and the
        rows go on from its keys and values: the same outputs and gradients for less compute."""
        shared = self._shared_prefix(inputs, prefix)
        if shared is not None:
            h = self._hidden_from_prefix(self.lm.base_model, inputs, *shared)
            hv = h if self.value_trunk is None else self._hidden_from_prefix(self.value_trunk, inputs, *shared)
        else:
            mask = torch.ones_like(inputs)  # causal attention: a real position never sees the padding after it
            h = self._hidden(self.lm.base_model, inputs, attention_mask=mask)
            hv = h if self.value_trunk is None else self._hidden(self.value_trunk, inputs, attention_mask=mask)
        if at is not None:
            h, hv = at_positions(h, at), at_positions(hv, at)
        return self._heads(h, hv)

    @staticmethod
    def _shared_prefix(inputs: torch.Tensor, prefix: int | None) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """``(distinct prompts (D, prefix), row -> prompt (B,), prefix)`` when some rows share their
        first ``prefix`` ids, else None."""
        if prefix is None or not 0 < prefix < inputs.shape[1] or len(inputs) < 2:
            return None
        distinct, pick = torch.unique(inputs[:, :prefix], dim=0, return_inverse=True)
        return (distinct, pick, prefix) if len(distinct) < len(inputs) else None

    def _hidden_from_prefix(self, trunk: nn.Module, inputs: torch.Tensor, distinct: torch.Tensor, pick: torch.Tensor,
                            prefix: int) -> torch.Tensor:
        """The last hidden states ``(B, L, H)`` of ``inputs``, each distinct prompt computed once:
        its keys and values are copied to the rows that start with it (differentiably), and the
        rest of every row attends to them from its own positions."""
        from transformers import DynamicCache

        cache = DynamicCache()
        h_prompt = self._hidden(trunk, distinct, cache, torch.ones_like(distinct))  # (D, P, H)
        cache.reorder_cache(pick)  # (B, ...): each row's prompt
        rest = inputs[:, prefix:]
        pos = torch.arange(prefix, inputs.shape[1], device=inputs.device).expand(len(inputs), -1)
        h_rest = self._hidden(trunk, rest, cache, torch.ones_like(inputs), pos)  # (B, L - P, H)
        return torch.cat([h_prompt[pick], h_rest], 1)

    def new_cache(self, batch: int, slack: int = 1) -> HFCache:
        """An empty cache for ``batch`` sequences (``slack`` is unused: the cache grows)."""
        from transformers import DynamicCache

        device = self.value_head.weight.device
        empty = torch.zeros(batch, 0, dtype=torch.int64, device=device)
        return HFCache(DynamicCache(), DynamicCache() if self.value_trunk is not None else None, empty,
                       empty.bool())

    def step(self, inputs: torch.Tensor, pos: torch.Tensor, cache: HFCache, upto: int | None = None,
             last: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``inputs (B, W)`` at positions ``pos (B, W)``; logits and values there, or with
        ``last (B,)`` at that chunk index of each sequence only, ``(B, 1, ...)`` (see the protocol):
        a prefill then projects one position per prompt onto the vocabulary, not all of them."""
        if cache.slot_pos.shape[1]:  # slots written past a sequence's end are now known: mask them out
            cache.valid &= cache.slot_pos < pos[:, :1]
        cache.slot_pos = torch.cat([cache.slot_pos, pos], 1)
        cache.valid = torch.cat([cache.valid, torch.ones_like(pos, dtype=torch.bool)], 1)
        mask, pos = cache.valid.long(), pos.clamp(max=self.max_len - 1)
        h = self._hidden(self.lm.base_model, inputs, cache.kv, mask, pos)
        hv = h if self.value_trunk is None else self._hidden(self.value_trunk, inputs, cache.value_kv, mask, pos)
        if last is not None:
            h, hv = at_positions(h, last[:, None]), at_positions(hv, last[:, None])
        return self._heads(h, hv)

    def select_cache(self, cache: HFCache, index: torch.Tensor) -> HFCache:
        """The cache of the sequences ``index`` picks from ``cache`` (see the protocol)."""
        for kv in (cache.kv, cache.value_kv):
            if kv is not None:
                kv.reorder_cache(index)  # each layer's keys and values, rows picked in place
        cache.slot_pos, cache.valid = cache.slot_pos[index], cache.valid[index]
        return cache

    def value_parameters(self) -> list[nn.Parameter]:
        """The value function's own parameters: the value head, and the value trunk when it has one
        (a critic warm-up trains these alone)."""
        return [*self.value_head.parameters(), *(self.value_trunk.parameters() if self.value_trunk is not None else ())]

    def frozen_reference(self) -> nn.Module | _AdaptersOff:
        """The KL reference: with LoRA the same model with its adapters disabled, else a frozen copy."""
        if self.lora is not None:
            return _AdaptersOff(self)
        return copy.deepcopy(self).eval().requires_grad_(False)

    # -- checkpoints ---------------------------------------------------------------------------
    def merged_model(self) -> nn.Module:
        """The LM as a plain ``transformers`` model: a copy with the LoRA adapters merged in, or the LM itself."""
        if self.lora is None:
            return self.lm
        return copy.deepcopy(self._peft).merge_and_unload()

    def save(self, directory: str | os.PathLike, extra: dict | None = None) -> None:
        """Write ``hf_model/`` (``AutoModelForCausalLM.from_pretrained`` loads it, tokenizer included),
        ``value_head.safetensors`` (and ``value_model/``) and ``policy.json`` into ``directory``.

        Everything is written into a temporary directory first and then moved into place, with
        ``policy.json`` last, so an interrupted save never leaves a half-written checkpoint.
        """
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".save-"))
        try:
            self.merged_model().save_pretrained(tmp / "hf_model", safe_serialization=True)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(tmp / "hf_model")
            save_model(self.value_head, str(tmp / "value_head.safetensors"))
            if self.value_trunk is not None:
                self.value_trunk.save_pretrained(tmp / "value_model", safe_serialization=True)
            meta = {"kind": "hf", "value_model": self.value_model, "n_actions": self.n_actions,
                    "dtype": str(self.value_head.weight.dtype).removeprefix("torch."), **(extra or {})}
            (tmp / "policy.json").write_text(json.dumps(meta, indent=2))
            for name in ("hf_model", "value_model", "value_head.safetensors", "policy.json"):
                if (tmp / name).exists():
                    _replace(tmp / name, directory / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "cpu", **kwargs: Any) -> HFPolicy:
        """Load a policy written by :meth:`save`; ``kwargs`` (LoRA, dtype) apply to the loaded model.

        Raises:
            FileNotFoundError: a file of the checkpoint is missing.
            ValueError: the checkpoint is corrupt.
        """
        from transformers import AutoModel

        directory = Path(directory)
        meta = json.loads((directory / "policy.json").read_text())
        for name in ("hf_model", "value_head.safetensors"):
            if not (directory / name).exists():
                raise FileNotFoundError(f"no checkpoint in {directory}: {name} is missing")
        value_model = kwargs.pop("value_model", None) or meta.get("value_model", "shared")
        kwargs.setdefault("n_actions", meta.get("n_actions"))
        policy = cls.from_pretrained(directory / "hf_model", device=device, value_model=value_model, **kwargs)
        hidden = policy.value_head.in_features
        policy.value_head = load_checked(lambda: nn.Linear(hidden, 1), directory / "value_head.safetensors", device)
        if policy.value_trunk is not None and (directory / "value_model").is_dir():
            policy.value_trunk = AutoModel.from_pretrained(str(directory / "value_model"), local_files_only=True,
                                                           dtype=policy.lm.dtype).to(device)
        return policy


class _AdaptersOff:
    """The KL reference of a LoRA policy: its forward with the adapters disabled, in eval mode."""

    def __init__(self, policy: HFPolicy) -> None:
        self.policy = policy

    @contextmanager
    def _off(self):
        training = self.policy.training
        self.policy.eval()
        try:
            with self.policy._peft.disable_adapter():
                yield
        finally:
            self.policy.train(training)

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, at: torch.Tensor | None = None,
                 prefix: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        with self._off():
            return self.policy(inputs, at=at, prefix=prefix)

    def eval(self) -> _AdaptersOff:
        return self


def _replace(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing a file or directory there (a directory is swapped out, then removed)."""
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)
