"""Turn a GGUF file (llama.cpp's format) into a model directory textgym trains from.

``transformers`` reads GGUF files (with the ``gguf`` package), dequantising every tensor to
float: slow for a real model (~20 s for SmolLM2-135M), and the model it gives is marked as
quantised and cannot be saved. :func:`import_gguf` does it once: it reads the model and its
tokenizer (with the chat template the file carries), copies the weights into a plain
``transformers`` model of the same architecture, and writes a directory that
``AutoModelForCausalLM.from_pretrained`` loads in a fraction of a second, and that
``textgym train ... --init DIR`` trains::

    textgym import-gguf SmolLM2-135M-Instruct.Q4_1.gguf --out models/smollm2

The directory appears whole or not at all (it is written beside, then renamed into place).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

GGUF_MAGIC = b"GGUF"


def gguf_architecture(path: str | os.PathLike) -> str | None:
    """The ``general.architecture`` a GGUF file names (``"llama"``, ``"qwen2"``...), or ``None``."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    field = reader.fields.get("general.architecture")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def import_gguf(path: str | os.PathLike, out: str | os.PathLike, dtype: str = "float32",
                overwrite: bool = False) -> Path:
    """Write the model and tokenizer of the GGUF file ``path`` to the directory ``out``.

    Args:
        path: a ``.gguf`` file.
        out: the model directory to write (it must not exist, unless ``overwrite``).
        dtype: the weights' type in ``out``: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``.
        overwrite: replace an existing ``out``.

    Returns:
        ``out`` as a path.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a GGUF file, names an architecture ``transformers`` cannot
            read, or ``out`` exists.
        ImportError: the ``gguf`` package is missing.
    """
    import torch

    path, out = Path(path), Path(out)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file: pass the path of a .gguf model file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be one of ['float32', 'bfloat16', 'float16'], got {dtype!r}")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists already: choose another directory, or pass overwrite=True (--overwrite)")
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise ImportError("reading GGUF files needs the gguf package: pip install 'textgym[gguf]' (or pip install gguf)") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        arch = gguf_architecture(path)
    except (ValueError, IndexError, KeyError) as e:
        raise ValueError(f"{path} is not a readable GGUF file: {e}") from None
    folder, name = str(path.parent), path.name
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, OSError, NotImplementedError) as e:
        raise ValueError(f"transformers {_transformers_version()} could not read the {arch!r} model in {path}: {e}") from None
    config = copy.deepcopy(quantised.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain floats from here on
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.generation_config = quantised.generation_config
    del quantised
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.import-"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


CHATML_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                   "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""The ChatML chat template (SmolLM2's and Qwen's format, without a default system turn)."""


def write_tiny_gguf(path: str | os.PathLike, arch: str = "llama", context: int = 256, seed: int = 0,
                    chat_template: str | None = CHATML_TEMPLATE) -> Path:
    """Write a tiny random model as a GGUF file, for tests and smoke runs (nothing to download).

    A 1-layer llama of width 16 (about 4,000 weights) with a byte-level BPE tokenizer over printable
    ASCII, ChatML's special tokens (``<|im_end|>`` is eos) and ``chat_template``. Its one merge,
    ``Ġ Ġ``, makes two spaces one token, so re-tokenising text can change its ids.

    Args:
        path: the file to write.
        arch: the architecture it names (any other than ``"llama"`` makes a file that
            :func:`import_gguf` refuses, for tests of that).
        context: the model's context length.
        seed: seeds its random weights.
        chat_template: the template it carries, or None for none.
    """
    import numpy as np
    from gguf import GGUFWriter

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + [chr(c) for c in range(33, 127)] + ["Ġ", "Ċ", "ĠĠ"]  # GPT-2's bytes for space, newline
    vocab, width, hidden, heads = len(tokens), 16, 32, 2
    w = GGUFWriter(str(path), arch)
    w.add_context_length(context)
    w.add_embedding_length(width)
    w.add_block_count(1)
    w.add_feed_forward_length(hidden)
    w.add_head_count(heads)
    w.add_head_count_kv(heads)
    w.add_rope_dimension_count(width // heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3] * len(specials) + [1] * (vocab - len(specials)))  # 3: control tokens
    w.add_token_merges(["Ġ Ġ"])
    w.add_token_scores([0.0] * vocab)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(2)
    if chat_template:
        w.add_chat_template(chat_template)
    rng = np.random.default_rng(seed)
    shapes = {"token_embd.weight": (vocab, width), "output_norm.weight": (width,),
              "blk.0.attn_norm.weight": (width,), "blk.0.ffn_norm.weight": (width,),
              **{f"blk.0.attn_{n}.weight": (width, width) for n in ("q", "k", "v", "output")},
              "blk.0.ffn_gate.weight": (hidden, width), "blk.0.ffn_up.weight": (hidden, width),
              "blk.0.ffn_down.weight": (width, hidden)}
    for name, shape in shapes.items():
        w.add_tensor(name, (rng.standard_normal(shape) * 0.5).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
