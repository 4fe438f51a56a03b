"""Checked fields for textgym's frozen config dataclasses: one rule per field, one place to read them.

A config class lists its rules in ``RULES`` (a class attribute) and calls :func:`check_fields` in
``__post_init__``; rules of the base classes apply too. A wrong type or a value out of range is a
``ValueError`` that names the field, what it must be, and what it got, so ``--set gamma=5`` or
``max_grad_norm=-1`` never trains silently wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """What one field may hold.

    Args:
        kind: ``int``, ``float`` (an int is accepted), ``bool``, ``str`` or ``dict``.
        low, high: bounds of a number, inclusive unless ``low_open``/``high_open``.
        optional: ``None`` is allowed too.
        choices: the allowed values of a string.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        what = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a JSON object"}[self.kind]
        if self.choices:
            what = f"one of {list(self.choices)}"
        if self.low is not None and self.high is not None:
            what += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            what += f" {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            what += f" {'<' if self.high_open else '<='} {self.high:g}"
        return what + (" or None" if self.optional else "")

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind in (str, dict):
            return isinstance(value, self.kind) and (not self.choices or value in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float) if self.kind is float else int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


def check_fields(config: Any) -> None:
    """Check every field of ``config`` that its class (or a base class) has a rule for.

    Raises:
        ValueError: ``"<field> must be <what>, got <value>"`` for the first field that breaks its rule.
    """
    rules: dict[str, Check] = {}
    for klass in reversed(type(config).__mro__):
        rules.update(vars(klass).get("RULES", {}))
    for name, check in rules.items():
        value = getattr(config, name)
        if not check.ok(value):
            raise ValueError(f"{name} must be {check.describe()}, got {value!r}")


POSITIVE_INT = Check(int, 1)
POSITIVE = Check(float, 0, low_open=True)
NON_NEGATIVE = Check(float, 0)
FRACTION = Check(float, 0, 1)
