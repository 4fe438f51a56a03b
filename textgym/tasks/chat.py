"""A task asked through a chat model's template, and the answer read back from what the model writes.

An instruction-tuned language model expects its prompt in its chat format (system and user turns,
then the header of the assistant's turn), and it answers in free text: ``"12 + 7 = 19."``, not
``"19"``. :class:`ChatTask` wraps any task so that a token env asks it that way:

* **the prompt** is the task's prompt put in the user's turn (through ``instruction``, a format
  string with ``{prompt}``), after an optional system turn, rendered by the tokenizer's own chat
  template with the generation prompt (``apply_chat_template(..., add_generation_prompt=True)``);
* **the answer** is read from the completion in one of :data:`ANSWER_FORMATS`:

  - ``"last_number"``: the last number in the text (``-12``, ``3.5``, ``1,024``);
  - ``"tag"``: what the last ``<answer>...</answer>`` holds, stripped;
  - ``"text"``: the whole completion, stripped;

* **the judge** (:meth:`ChatTask.score`, the ``"task"`` reward) scores the answer: with the
  wrapped task's own judge when it has one (the puzzles), else 1.0 when it equals a reference
  (numbers compared as numbers, so ``"19.0"`` is ``"19"``), else 0.0. A completion whose answer
  cannot be read scores 0.0 and counts as a format failure; it never raises.
* **the format reward** ``"format"`` (:class:`textgym.rewards.FormatReward`) pays 1.0 when an
  answer can be read, to weigh with the judge: ``reward=[["task", 1.0], ["format", 0.1]]``.

The env's observation holds the rendered prompt's ids and then exactly the ids the policy wrote:
nothing the model wrote is decoded and tokenized again.

A token env builds it from ``chat=``: ``True`` (the defaults) or a dict of :class:`ChatTask`'s
arguments, e.g. ``gym.make("textgym/TokenGeneration-v0", task="arithmetic", tokenizer="models/smollm2",
chat={"instruction": "{prompt} Answer with the number only."}, reward="task", max_new_tokens=24)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from textgym.tasks.core import Example, Task

ANSWER_FORMATS = ("last_number", "tag", "text")
"""How :func:`extract_answer` reads an answer from a completion."""

_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")
_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(text: str, answer_format: str = "last_number") -> str | None:
    """The answer ``text`` gives in ``answer_format`` (see :data:`ANSWER_FORMATS`), or ``None``
    when it gives none (no number; no ``<answer>`` tag; an empty text).

    Example:
        >>> extract_answer("12 + 7 = 19.")
        '19'
        >>> extract_answer("I think <answer> 19 </answer>", "tag")
        '19'
        >>> extract_answer("nineteen") is None
        True
    """
    if answer_format == "last_number":
        found = _NUMBER.findall(text)
        return found[-1].replace(",", "") if found else None
    if answer_format == "tag":
        found = _TAG.findall(text)
        return found[-1].strip() if found else None
    if answer_format == "text":
        return text.strip() or None
    raise ValueError(f"answer format must be one of {list(ANSWER_FORMATS)}, got {answer_format!r}")


def same_answer(answer: str, reference: str) -> bool:
    """``answer`` equals ``reference``: as numbers when both are numbers, else as stripped text."""
    try:
        a, r = float(answer.replace(",", "")), float(reference.replace(",", ""))
    except ValueError:
        return answer.strip() == reference.strip()
    return math.isclose(a, r, rel_tol=0.0, abs_tol=1e-9)


def chat_options(chat: Any, keys: tuple[str, ...]) -> dict | None:
    """An env's ``chat`` argument as keyword arguments: ``None`` or ``False`` (no chat) give
    ``None``, ``True`` the defaults ``{}``, a dict itself once its keys are among ``keys``.

    Raises:
        ValueError: anything else, or a key outside ``keys`` (the message lists them).
    """
    if chat is None or chat is False:
        return None
    if chat is True:
        return {}
    allowed = f"its one key is {keys[0]}" if len(keys) == 1 else f"its keys are {', '.join(keys[:-1])} and {keys[-1]}"
    if not isinstance(chat, dict):
        raise ValueError(f"chat must be true, false, null or a dict ({allowed}), got {chat!r}")
    unknown = sorted(set(chat) - set(keys))
    if unknown:
        raise ValueError(f"chat: unknown keys {unknown}; {allowed}")
    return chat


def template_tokenizer(tokenizer: Any) -> Any:
    """The ``transformers`` tokenizer in ``tokenizer`` (a textgym ``HFTokenizer`` wraps one), checked
    to have a chat template.

    Raises:
        ValueError: it has none.
    """
    hf = getattr(tokenizer, "tokenizer", tokenizer)
    if not getattr(hf, "chat_template", None) or not hasattr(hf, "apply_chat_template"):
        raise ValueError(f"chat=... renders the text with the tokenizer's chat template, and {type(hf).__name__} "
                         "has none: use a model directory whose tokenizer has one (an instruction-tuned model, or one "
                         "imported with textgym import-gguf), set tokenizer.chat_template, or leave chat unset")
    return hf


class ChatTurns:
    """Where a multi-turn env's texts go in a chat template: the opening in the first user turn,
    each reply in the next user turn, each followed by the assistant's header, so that the
    transcript of a game is the template's rendering of the conversation, the agent's messages
    being the ids it wrote.

    The agent ends its message with the tokenizer's eos (ChatML's ``<|im_end|>`` for SmolLM2 and
    Qwen); what the template writes after an assistant message, that eos left out, opens each reply.

    Args:
        tokenizer: a ``transformers`` tokenizer with a chat template (or a textgym ``HFTokenizer``).
        system: the system turn's text, or ``None`` for none (the template may add its own).
    """

    def __init__(self, tokenizer: Any, system: str | None = None) -> None:
        if system is not None and not isinstance(system, str):
            raise ValueError(f"chat system must be a string or None, got {system!r}")
        hf = template_tokenizer(tokenizer)
        head = [] if system is None else [{"role": "system", "content": system}]
        a, b, c = "\x00opening\x00", "\x00message\x00", "\x00reply\x00"  # stand-ins, found again in the renderings

        def render(messages):
            return hf.apply_chat_template(head + messages, tokenize=False, add_generation_prompt=True)

        self._opening = render([{"role": "user", "content": a}]).split(a)
        full = render([{"role": "user", "content": a}, {"role": "assistant", "content": b},
                       {"role": "user", "content": c}])
        after = full.split(b)[-1]
        eos = getattr(hf, "eos_token", None)
        if eos and after.startswith(eos):
            after = after[len(eos):]  # the agent writes its eos itself
        self._reply = after.split(c)
        if len(self._opening) != 2 or len(self._reply) != 2 or full.count(b) != 1:
            raise ValueError("the tokenizer's chat template changes the text of the turns it renders, so a game's "
                             "turns cannot be placed in it: leave chat unset")
        self.system = system

    def opening(self, text: str) -> str:
        """The text that starts the transcript: the template's first user turn holding ``text``."""
        return self._opening[0] + text + self._opening[1]

    def reply(self, text: str) -> str:
        """The text that follows the agent's message (and its eos): the next user turn holding ``text``."""
        return self._reply[0] + text + self._reply[1]

    def overhead(self) -> str:
        """The template's own text around a turn (the longer of the two)."""
        return max("".join(self._opening), "".join(self._reply), key=len)


class ChatTask(Task):
    """``task`` asked through a chat template, its answer read back in ``answer`` format.

    Args:
        task: the task asked (any :class:`~textgym.tasks.Task`).
        tokenizer: a ``transformers`` tokenizer with a chat template (or a textgym ``HFTokenizer``).
        system: the system turn's text; ``None`` (default) gives none (the template may add its own).
        instruction: the user's turn, a format string with ``{prompt}`` (default ``"{prompt}"``).
        answer: how the answer is read from the completion, one of :data:`ANSWER_FORMATS`.

    Raises:
        ValueError: the tokenizer has no chat template; an unknown answer format; an instruction
            without ``{prompt}``.
    """

    def __init__(self, task: Task, tokenizer: Any, system: str | None = None, instruction: str = "{prompt}",
                 answer: str = "last_number") -> None:
        hf = template_tokenizer(tokenizer)
        if answer not in ANSWER_FORMATS:
            raise ValueError(f"chat answer must be one of {list(ANSWER_FORMATS)}, got {answer!r}")
        if not isinstance(instruction, str) or "{prompt}" not in instruction:
            raise ValueError(f"chat instruction must be a string holding {{prompt}}, got {instruction!r}")
        if system is not None and not isinstance(system, str):
            raise ValueError(f"chat system must be a string or None, got {system!r}")
        self.task, self.hf = task, hf
        self.system, self.instruction, self.answer = system, instruction, answer
        self.name = f"chat({task.name})"
        self.max_references = task.max_references
        sentinel = "\x00"  # where the task's prompt goes in the rendered text
        self._prefix, found, self._suffix = self.render(sentinel).partition(self.instruction.format(prompt=sentinel))
        if not found:
            self._prefix = self._suffix = None  # a template that changes the content: prompts are not read back

    def render(self, prompt: str) -> str:
        """The text the model reads for the task's ``prompt``: its chat turns and the assistant's header."""
        messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        messages.append({"role": "user", "content": self.instruction.format(prompt=prompt)})
        return self.hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def inner_prompt(self, rendered: str) -> str | None:
        """The task's own prompt in a rendered one (``None`` when the template hides it)."""
        if self._prefix is None or not (rendered.startswith(self._prefix) and rendered.endswith(self._suffix)):
            return None
        inner = rendered[len(self._prefix): len(rendered) - len(self._suffix)]
        head, _, tail = self.instruction.partition("{prompt}")
        if not (inner.startswith(head) and inner.endswith(tail)):
            return None
        return inner[len(head): len(inner) - len(tail)]

    def examples_for(self, keys: Sequence[int]) -> list[Example]:
        return [Example(self.render(ex.prompt), ex.references) for ex in self.task.examples_for(keys)]

    def example(self, key: int) -> Example:
        return self.examples_for([key])[0]

    def max_prompt_tokens(self, tokenizer: Any) -> int | None:
        inner = self.task.max_prompt_tokens(tokenizer)
        if inner is None:
            return None
        # the template's own tokens, the task's bound, and 2 for tokens merged across the seams
        return len(tokenizer.encode(self.render(""))) + inner + 2

    def max_reference_tokens(self, tokenizer: Any) -> int | None:
        return None  # the model answers in free text: the env's max_new_tokens bounds it

    def format_ok(self, completion: str) -> bool:
        """An answer can be read from ``completion``."""
        return extract_answer(completion, self.answer) is not None

    def score(self, example: Example, completion: str) -> float:
        answer = extract_answer(completion, self.answer)
        if answer is None:
            return 0.0
        if type(self.task).score is not Task.score:  # the task's own judge, on its own prompt
            inner = self.inner_prompt(example.prompt)
            if inner is not None:
                return float(self.task.score(Example(inner, example.references), answer))
        return float(any(same_answer(answer, r) for r in example.references))

    def text_metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict[str, float]:
        """``format_ok``: the fraction of completions an answer could be read from."""
        return {"format_ok": sum(self.format_ok(c) for c in completions) / max(len(completions), 1)}

    def __repr__(self) -> str:
        return f"ChatTask({self.task!r}, answer={self.answer!r})"
