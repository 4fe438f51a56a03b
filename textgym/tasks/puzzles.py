"""Reasoning puzzles with optimal solvers: Countdown, Tower of Hanoi, Sudoku, Maze and Lights Out.

Each puzzle is a :class:`PuzzleTask`, written once: it draws a puzzle from the episode's key,
writes it as a prompt, reads a prompt back, solves it optimally (the expert's answer, the
reference) and judges any answer against the rules, not against the reference, so every correct
answer scores. Play them through a token env with the ``"task"`` reward (the task's own judge):
``gym.make("textgym/Hanoi-v0")`` is ``TokenGeneration-v0`` with ``task="hanoi", reward="task"``.
Every puzzle here is a :class:`TensorPuzzle`: drawn, solved and judged on tensors, a batch of
episodes at once, so its vector env judges on the device. Two steps stay in Python: a 6x6 Sudoku's
draw counts solutions by a search, one grid at a time, and Countdown's expert searches once per
distinct puzzle (its answers are kept).

Every puzzle has one ``difficulty`` knob, an integer in its :attr:`PuzzleTask.difficulties`
(discs, numbers, blanks, grid size), and the same key gives the same puzzle at the same difficulty.
A judge never raises: an answer it cannot read scores 0.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Sequence
from typing import Any

import torch

from textgym.seeding import draws, hash32
from textgym.tasks.core import PAD_SYMBOL, Example, SymbolTask, Task, fit_width
from textgym.tokenizers import CharTokenizer, Tokenizer

NOT_A_SYMBOL = -2
"""In an answer's symbol indices: a character (or token) that is none of the puzzle's symbols."""


class PuzzleTask(Task):
    """A puzzle drawn from the key, its optimal answer as the reference, and a judge of any answer.

    Subclasses implement :meth:`draw`, :meth:`prompt`, :meth:`parse`, :meth:`solve` and
    :meth:`judge` on Python values, one puzzle at a time, and set :attr:`symbols` and
    :attr:`difficulties`; a :class:`TensorPuzzle` implements its puzzles on tensors instead.

    Args:
        difficulty: how hard the puzzles are, an integer in :attr:`difficulties`. It may be
            lowered later (a curriculum does): the env's shapes fit the difficulty it was made with.

    Attributes:
        difficulties: the allowed difficulties (a ``range``); what they mean is in the subclass.
        symbols: every character of the prompts and answers.
        answer_symbols: every character of an answer (what ``action_mask=True`` lets a policy write).
    """

    difficulties: range = range(1, 2)
    symbols: str = ""
    answer_symbols: str = ""
    _CACHE = 4096  # examples kept per task: the env asks for an episode's example more than once

    def __init__(self, difficulty: int) -> None:
        if isinstance(difficulty, bool) or not isinstance(difficulty, int) or difficulty not in self.difficulties:
            lo, hi = self.difficulties[0], self.difficulties[-1]
            raise ValueError(f"{type(self).__name__}: difficulty must be an integer in {lo}..{hi}, got {difficulty!r}")
        self.difficulty = difficulty
        self._examples: dict[tuple[int, int], Example] = {}

    # -- what a puzzle implements ---------------------------------------------------------------
    def draw(self, rng: random.Random) -> Any:
        """A puzzle at :attr:`difficulty`, from ``rng`` alone."""
        raise NotImplementedError

    def prompt(self, puzzle: Any) -> str:
        """The puzzle as the prompt the agent reads (it ends with ``=``)."""
        raise NotImplementedError

    def parse(self, prompt: str) -> Any:
        """The puzzle a prompt shows (the inverse of :meth:`prompt`)."""
        raise NotImplementedError

    def solve(self, puzzle: Any) -> str:
        """The optimal answer: the expert's, and the reference."""
        raise NotImplementedError

    def judge(self, puzzle: Any, answer: str) -> float:
        """The score of ``answer`` in ``[0, 1]``: 1 for an optimal solution; may raise ``ValueError``
        on an answer it cannot read (:meth:`score` turns that into 0)."""
        raise NotImplementedError

    # -- the Task ---------------------------------------------------------------------------------
    def example(self, key: int) -> Example:
        found = self._examples.get((self.difficulty, int(key)))
        if found is None:
            found = self._new_example(int(key))
            if len(self._examples) >= self._CACHE:
                self._examples.clear()
            self._examples[(self.difficulty, int(key))] = found
        return found

    def _new_example(self, key: int) -> Example:
        """The example of ``key`` at :attr:`difficulty`, made afresh (:meth:`example` keeps it)."""
        puzzle = self.draw(random.Random(f"{self.name}/{self.difficulty}/{key}"))
        return Example(self.prompt(puzzle), (self.solve(puzzle),))

    def score(self, example: Example, completion: str) -> float:
        """The judge's score of ``completion`` for the example's puzzle; 0 for an unreadable answer."""
        try:
            return float(self.judge(self.parse(example.prompt), completion))
        except (ValueError, ZeroDivisionError, RecursionError, MemoryError, SyntaxError, IndexError, KeyError):
            return 0.0

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """The judge's scores of many answers at once, as a float tensor."""
        return torch.tensor([self.score(Example(p, ()), c) for p, c in zip(prompts, completions)])

    def text_metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict[str, float]:
        """``solved``: the share of answers that solve the puzzle (score above 0), optimal or not."""
        if not prompts:
            return {}
        return {"solved": float((self.scores(prompts, completions) > 0).double().mean())}

    def alphabet(self) -> str:
        return self.symbols

    def answer_alphabet(self) -> str:
        return self.answer_symbols

    # Every symbol is one ASCII character: one token of a character tokenizer, and no more than one
    # of a byte-level BPE tokenizer, so the character counts bound the token counts.
    def max_prompt_tokens(self, tokenizer: Tokenizer) -> int:
        return self.prompt_chars()

    def max_reference_tokens(self, tokenizer: Tokenizer) -> int:
        return self.answer_chars()

    def prompt_chars(self) -> int:
        """The most characters a prompt has at this difficulty."""
        raise NotImplementedError

    def answer_chars(self) -> int:
        """The most characters an optimal answer has at this difficulty."""
        raise NotImplementedError

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_examples": {}, "_last": (None,)}  # a pickled task travels without its caches

    def __repr__(self) -> str:
        size = f", size={self.size}" if hasattr(self, "size") else ""  # a puzzle whose grid has a side of its own
        return f"{type(self).__name__}(difficulty={self.difficulty}{size})"


class TensorPuzzle(PuzzleTask, SymbolTask):
    """A puzzle written on tensors: drawn, solved and judged for a whole batch of keys at once.

    Subclasses implement :meth:`generate` (the prompts and the optimal answers of the keys, as
    symbol indices) and :meth:`judge_symbols` (the scores of answers, as symbol indices); the
    text forms follow from them (:meth:`example`, :meth:`score`), so a single env and a vector env
    play and judge the same puzzles with the same code, and a vector env's ``"task"`` reward judges
    every finished episode in one batch, on the device, without decoding any text.
    """

    _DIFFICULTY_SALT = 0x2545F491  # keeps a key's puzzles at different difficulties apart

    def generate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Symbol indices ``(prompt (n, P), optimal answer (n, L))`` for the keys (int64 ``(n,)``)
        at :attr:`difficulty`, padded with ``-1``."""
        raise NotImplementedError

    def judge_symbols(self, prompt: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """The scores ``(n,)`` in ``[0, 1]`` of the answers ``(n, A)`` to the prompts ``(n, P)``,
        both symbol indices padded at the end with ``-1``, ``NOT_A_SYMBOL`` for a character that is
        none of :attr:`symbols`. A prompt or an answer it cannot read scores 0."""
        raise NotImplementedError

    def _draws(self, keys: torch.Tensor, count: int, attempt: int = 0, level: int | None = None) -> torch.Tensor:
        """``count`` uniform integers in ``[0, 2**32)`` per key at this difficulty, or at ``level``
        (``attempt``: a fresh set for a puzzle drawn again)."""
        level = self.difficulty if level is None else level
        return draws(hash32(keys) ^ hash32(torch.full_like(keys, level * self._DIFFICULTY_SALT + attempt)), count)

    def _new_example(self, key: int) -> Example:
        return self.examples_for([key])[0]

    def _generated(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The last batch on the CPU is kept: a single env encodes a block of keys, then asks for
        # their texts. (Keys on an accelerator are not compared: that would wait for the device.)
        if keys.device.type != "cpu":
            return self.generate(keys)
        asked = (self.difficulty, tuple(keys.tolist()))
        if getattr(self, "_last", (None,))[0] != asked:
            self._last = (asked, self.generate(keys))
        return self._last[1]

    def score(self, example: Example, completion: str) -> float:
        """The judge's score of ``completion`` for the example's puzzle; 0 for an unreadable answer."""
        return float(self.scores([example.prompt], [completion])[0])

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        cpu = torch.device("cpu")  # one batch for the judge
        return self.judge_symbols(_symbol_rows(self.symbols, prompts, cpu), _symbol_rows(self.symbols, completions, cpu))

    def token_symbols(self, tokenizer: Tokenizer, device: torch.device) -> torch.Tensor | None:
        """Each token id's symbol index (``-1`` for a special token, which decoding drops,
        ``NOT_A_SYMBOL`` for another character), or ``None`` when the tokenizer does not write each
        symbol as one token of its own (then the judge reads text)."""
        if not (isinstance(tokenizer, CharTokenizer) and set(self.symbols) <= set(tokenizer.alphabet)):
            return None
        table = torch.full((tokenizer.vocab_size,), NOT_A_SYMBOL, dtype=torch.int64)
        table[: len(tokenizer.specials)] = PAD_SYMBOL
        table[tokenizer.encode(self.symbols)] = torch.arange(len(self.symbols))
        return table.to(device)

    def judge_tokens(self, table: torch.Tensor, prompt_ids: torch.Tensor, prompt_len: torch.Tensor,
                     completion_ids: torch.Tensor, completion_len: torch.Tensor) -> torch.Tensor:
        """:meth:`judge_symbols` of token ids, through :meth:`token_symbols`'s ``table``: what the
        ``"task"`` reward scores a vector env's episodes with, as a batch on their device."""
        return self.judge_symbols(_symbols_of(table, prompt_ids, prompt_len),
                                  _symbols_of(table, completion_ids, completion_len))


def _symbol_rows(symbols: str, texts: Sequence[str], device: torch.device) -> torch.Tensor:
    """Texts as indices into ``symbols``, one row each, padded with ``-1`` (``NOT_A_SYMBOL`` for
    any other character)."""
    index = {ch: i for i, ch in enumerate(symbols)}
    width = max([len(t) for t in texts] + [1])
    return torch.tensor([[index.get(ch, NOT_A_SYMBOL) for ch in t] + [PAD_SYMBOL] * (width - len(t)) for t in texts],
                        dtype=torch.int64, device=device)


def _symbols_of(table: torch.Tensor, ids: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """The symbol indices of the first ``length`` ids of each row, without the special tokens
    (as decoding drops them), padded at the end with ``-1``."""
    outside = torch.arange(ids.shape[1], device=ids.device) >= length[:, None]
    sym = table[ids].masked_fill(outside, PAD_SYMBOL)
    dropped = sym == PAD_SYMBOL
    if not bool((dropped & ~outside).any()):  # no special token inside: nothing to move (the usual case)
        return sym
    return sym.gather(1, dropped.to(torch.int8).sort(dim=1, stable=True).indices)  # the kept ones first, in order


@functools.cache
def _grid_layout(symbols: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt of an ``n`` x ``n`` grid, written ``row/row/...=``: the symbol at each position
    (-1 at a cell) and the position of each cell, in reading order."""
    layout = [-1 if pos % (n + 1) < n else symbols.index("/") for pos in range(n * (n + 1))]
    layout[-1] = symbols.index("=")
    return torch.tensor(layout), torch.tensor([r * (n + 1) + c for r in range(n) for c in range(n)])


def _grid_prompts(symbols: str, cells: torch.Tensor) -> torch.Tensor:
    """The prompts ``(rows, n * (n + 1))`` of :func:`_grid_layout`'s form that show the grids'
    cells ``(rows, n * n)``, symbol indices in reading order."""
    n = round(cells.shape[1] ** 0.5)
    layout, cell_at = (t.to(cells.device) for t in _grid_layout(symbols, n))
    prompt = layout.repeat(len(cells), 1)
    prompt[:, cell_at] = cells
    return prompt


def _grids_shown(prompt: torch.Tensor, symbols: str, sizes: Sequence[int], cells: str):
    """The grids that prompts ``(rows, P)`` of :func:`_grid_layout`'s form show, a size at a time:
    ``(n, fits, cells)`` for each size ``n`` of ``sizes`` that a prompt has (its count of ``/``
    plus one), where ``fits`` says which prompts are an ``n`` x ``n`` grid whose cells are all of
    ``cells``, and ``cells`` is each prompt's cells ``(rows, n * n)`` (meaningless where it does
    not fit)."""
    size = (prompt == symbols.index("/")).sum(-1) + 1
    allowed = _symbol_set(symbols, cells, prompt.device)
    for n in size.unique().tolist():  # usually one size: a curriculum's window holds a few
        if n not in sizes:
            continue
        layout, cell_at = (t.to(prompt.device) for t in _grid_layout(symbols, n))
        shown = fit_width(prompt, len(layout) + 1, PAD_SYMBOL)
        head = shown[:, : len(layout)]
        fits = torch.where(layout >= 0, head == layout, allowed[head + 2]).all(-1)
        yield n, fits & (shown[:, len(layout)] == PAD_SYMBOL) & (size == n), shown[:, cell_at]


@functools.cache
def _symbol_set(symbols: str, some: str, device: torch.device) -> torch.Tensor:
    """Which symbol indices (plus 2, so that ``NOT_A_SYMBOL`` and ``-1`` have a place) are in ``some``."""
    member = torch.zeros(len(symbols) + 2, dtype=torch.bool)
    member[[symbols.index(ch) + 2 for ch in some]] = True
    return member.to(device)


# --------------------------------------------------------------------------------------------
# Tower of Hanoi
# --------------------------------------------------------------------------------------------


class HanoiTask(TensorPuzzle):
    """Move a tower of ``difficulty`` discs from one peg to another: ``"3AC="`` → ``"ACABCBACBABCAC"``.

    The prompt is the number of discs, the peg they stand on and the peg to move them to (pegs
    ``A``, ``B``, ``C``). The answer lists the moves, two letters each (from, to), without spaces.
    A legal answer that ends with every disc on the target peg scores ``(2**n - 1) / moves``
    (1 for the optimum), as Reasoning Gym scores it; an illegal move or an unfinished tower
    scores 0. The expert plays the optimal ``2**n - 1`` moves.

    Args:
        difficulty: the number of discs, 1..7 (default 3).
    """

    name = "hanoi"
    difficulties = range(1, 8)
    symbols = "ABC1234567="
    answer_symbols = "ABC"
    _PAIRS = ("AB", "AC", "BA", "BC", "CA", "CB")  # (from, to): a puzzle draws one of them

    def __init__(self, difficulty: int = 3) -> None:
        super().__init__(difficulty)

    def generate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self._draws(keys, 1)[:, 0] % len(self._PAIRS)
        prompts, answers = _hanoi_tables(self.difficulty, keys.device)
        return prompts[pair], answers[pair]

    def judge_symbols(self, prompt: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        dev, sym = prompt.device, self.symbols.index
        prompt = fit_width(prompt, 5, PAD_SYMBOL)
        n = prompt[:, 0] - sym("1") + 1  # the digits follow "ABC" in the symbols, in order
        src, dst = prompt[:, 1], prompt[:, 2]  # peg ids 0, 1, 2 are the symbols A, B, C
        ok = ((n >= 1) & (n <= 7) & (src <= 2) & (src >= 0) & (dst <= 2) & (dst >= 0) & (src != dst)
              & (prompt[:, 3] == sym("=")) & (prompt[:, 4] == PAD_SYMBOL))
        length = (answer != PAD_SYMBOL).sum(-1)
        ok &= (length > 0) & (length % 2 == 0) & ((answer <= 2) | (answer == PAD_SYMBOL)).all(-1)
        ok &= (answer >= 0).sum(-1) == length  # no unknown symbol
        if not bool(ok.any()):  # nothing to play out (a single env's wrong answer, often)
            return torch.zeros(len(prompt), device=dev)
        disc = torch.arange(7, device=dev)  # disc 0 the smallest; peg 3: not in this puzzle
        peg = torch.where(disc < n[:, None], src[:, None], 3)
        rows, moves = torch.arange(len(prompt), device=dev), length // 2
        for t in range(int(torch.where(ok, moves, 0).max()) if len(moves) else 0):  # the longest readable answer
            a, b = answer[:, 2 * t], answer[:, 2 * t + 1]
            top_a = torch.where(peg == a[:, None], disc, 7).min(-1).values  # 7: the peg is empty
            top_b = torch.where(peg == b[:, None], disc, 7).min(-1).values
            moving = t < moves
            ok &= ~moving | ((a != b) & (top_a < 7) & (top_b > top_a))
            move = moving & ok
            slot = top_a.clamp(max=6)
            peg[rows, slot] = torch.where(move, b, peg[rows, slot])
        ok &= ((peg == dst[:, None]) | (disc >= n[:, None])).all(-1)
        return torch.where(ok, (2 ** n.clamp(1, 7) - 1) / moves.clamp(min=1), 0.0).float()

    def prompt_chars(self) -> int:
        return 4

    def answer_chars(self) -> int:
        return 2 * (2**self.difficulty - 1)


@functools.cache
def _hanoi_tables(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompt and the optimal answer of each of the 6 puzzles of ``n`` discs, as symbol indices."""
    pairs, symbols = HanoiTask._PAIRS, HanoiTask.symbols
    return (_symbol_rows(symbols, [f"{n}{a}{b}=" for a, b in pairs], device),
            _symbol_rows(symbols, [_hanoi_moves(n, a, b) for a, b in pairs], device))


@functools.cache
def _hanoi_moves(n: int, src: str, dst: str) -> str:
    """The optimal ``2**n - 1`` moves of ``n`` discs from ``src`` to ``dst``, two letters each."""
    moves: list[str] = []

    def move(k: int, a: str, b: str, via: str) -> None:
        if k:
            move(k - 1, a, via, b)
            moves.append(a + b)
            move(k - 1, via, b, a)

    move(n, src, dst, ({"A", "B", "C"} - {src, dst}).pop())
    return "".join(moves)


# --------------------------------------------------------------------------------------------
# Countdown
# --------------------------------------------------------------------------------------------

class CountdownTask(TensorPuzzle):
    """Reach a target from some numbers with ``+ - * /``, each number used at most once:
    ``"3,5,7:22="`` → ``"3*5+7"``.

    The prompt lists ``difficulty`` numbers in 1..9 and the target (made by combining some of
    them, so a solution exists). The answer is an arithmetic expression: the given numbers,
    ``+ - * /`` and parentheses (spaces are ignored). It scores 1 when it uses each given number at
    most once (no other numbers) and its exact value (fractions allowed) is the target; anything
    else scores 0. The expert searches for an expression with the fewest numbers whose every step
    is a positive integer, the rules of the TV game, and writes it with the fewest parentheses.

    The draw and the judge run on tensors, a batch at once; the expert's search runs in Python,
    once per distinct puzzle (its answers are kept: at the default difficulty puzzles recur).

    Args:
        difficulty: how many numbers are given, 2..6 (default 3).
    """

    name = "countdown"
    difficulties = range(2, 7)
    symbols = "0123456789+-*/(),:="
    answer_symbols = "0123456789+-*/()"
    _TRIES = 4  # candidate puzzles per key and round: the first whose target is in 10..999 is kept

    def __init__(self, difficulty: int = 3) -> None:
        super().__init__(difficulty)

    def generate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, dev, tries = self.difficulty, keys.device, self._TRIES
        numbers = torch.zeros(len(keys), n, dtype=torch.int64, device=dev)
        target = torch.zeros(len(keys), dtype=torch.int64, device=dev)
        todo, attempt, per = torch.arange(len(keys), device=dev), 0, 2 * n + 1 + 3 * (n - 1)
        while len(todo):  # targets outside 10..999 are drawn again (for the same key, the same way)
            u = self._draws(keys[todo], tries * per, attempt).view(len(todo) * tries, per)
            drawn = u[:, :n] % 9 + 1
            items = drawn.gather(1, u[:, n : 2 * n].argsort(1))  # shuffled
            value, combined = items[:, -1], 1 + u[:, 2 * n] % (n - 1)  # the last, then 1..n-1 of the others
            for j in range(n - 1):  # left to right, each on either side
                c = u[:, 2 * n + 1 + 3 * j : 2 * n + 4 + 3 * j]
                left = c[:, 0] % 2 == 0
                a, b = torch.where(left, value, items[:, j]), torch.where(left, items[:, j], value)
                op = c[:, 1] % 4  # + - * /
                op = torch.where((op == 1) & (a <= b) | (op == 3) & (a % b != 0), 2 * (c[:, 2] % 2), op)  # else + or *
                made = torch.stack([a + b, a - b, a * b, a // b], 1).gather(1, op[:, None])[:, 0]
                value = torch.where(j < combined, made, value)
            found = ((value >= 10) & (value <= 999)).view(len(todo), tries)
            first = torch.arange(len(todo), device=dev) * tries + found.int().argmax(1)
            numbers[todo], target[todo] = drawn[first], value[first]
            todo, attempt = todo[~found.any(1)], attempt + 1
        sym = self.symbols.index
        prompt = torch.full((len(keys), 2 * n + 4), PAD_SYMBOL, dtype=torch.int64, device=dev)
        prompt[:, 0 : 2 * n : 2] = numbers  # a digit is its own symbol index
        prompt[:, 1 : 2 * n - 2 : 2] = sym(",")
        prompt[:, 2 * n - 1] = sym(":")
        three = target >= 100
        digits = torch.stack([target // 100, target // 10 % 10, target % 10], 1)
        prompt[:, 2 * n : 2 * n + 3] = torch.where(three[:, None], digits, digits.roll(-1, 1))
        prompt[:, 2 * n + 2] = torch.where(three, prompt[:, 2 * n + 2], sym("="))
        prompt[:, 2 * n + 3] = torch.where(three, sym("="), PAD_SYMBOL)
        answers = [_countdown_answer(tuple(sorted(row)), t) for row, t in zip(numbers.tolist(), target.tolist())]
        width = max(map(len, answers), default=0)
        answer = torch.tensor([row + (PAD_SYMBOL,) * (width - len(row)) for row in answers], dtype=torch.int64)
        return prompt, answer.view(len(keys), width).to(dev)

    def scores(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        return super().scores(prompts, [c.replace(" ", "") for c in completions])

    def judge_symbols(self, prompt: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        dev, sym, rows = prompt.device, self.symbols.index, len(prompt)
        # The prompt: n digits 1..9 with commas between, ":", a target of 1..3 digits, "=".
        shown = fit_width(prompt, 2 * self.difficulties[-1] + 5, PAD_SYMBOL)
        col = torch.arange(shown.shape[1], device=dev)
        n = (shown == sym(",")).sum(-1) + 1
        colon, equals = 2 * n - 1, (shown == sym("=")).int().argmax(-1)
        digit = (shown >= 0) & (shown <= 9)
        listed, in_target = col < colon[:, None], (col > colon[:, None]) & (col < equals[:, None])
        fits = torch.where(listed, torch.where(col % 2 == 0, digit & (shown >= 1), shown == sym(",")),
                           torch.where(col == colon[:, None], shown == sym(":"),
                                       torch.where(in_target, digit, torch.where(col == equals[:, None], shown == sym("="),
                                                                                 shown == PAD_SYMBOL)))).all(-1)
        fits &= (n >= self.difficulties[0]) & (n <= self.difficulties[-1]) & (equals - colon >= 2) & (equals - colon <= 4)
        given = _digit_counts(shown, listed & (col % 2 == 0))
        goal = (shown.clamp(0, 9) * torch.where(in_target, 10 ** (equals[:, None] - 1 - col).clamp(0, 3), 0)).sum(-1)
        # The answer: a well-formed expression whose digits are given numbers, each at most as often.
        length = (answer != PAD_SYMBOL).sum(-1)
        kinds, follows = _countdown_grammar(dev)
        kind = kinds[answer + 2]
        ends = torch.full((rows, 1), _END, dtype=torch.int64, device=dev)
        kind = torch.cat([ends, kind, ends], 1)  # before the first token and after the last: the ends
        ok = fits & (length > 0) & follows[kind[:, :-1], kind[:, 1:]].all(-1)
        depth = (kind == _OPEN).long().cumsum(-1) - (kind == _CLOSE).long().cumsum(-1)
        ok &= (depth >= 0).all(-1) & (depth[:, -1] == 0)
        ok &= (_digit_counts(answer, (answer >= 0) & (answer <= 9)) <= given).all(-1)
        out = torch.zeros(rows, device=dev)
        well_formed = ok.nonzero()[:, 0]
        if len(well_formed):  # most random answers are not: only these are evaluated
            num, den = _countdown_values(answer[well_formed], length[well_formed], sym)
            out[well_formed] = ((den != 0) & (num == goal[well_formed] * den)).float()
        return out

    def prompt_chars(self) -> int:
        return 2 * self.difficulty + 4

    def answer_chars(self) -> int:
        # n one-digit numbers, n - 1 operators and at most n - 2 pairs of parentheses
        return 4 * self.difficulty - 5 if self.difficulty > 1 else 1


_NUMBER, _OPERATOR, _OPEN, _CLOSE, _END, _BAD = range(6)


@functools.cache
def _countdown_grammar(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The kind of each answer symbol (indexed by symbol index + 2, so that -2 and -1 have a place),
    and which kind may follow which; the ends stand before the first token and after the last
    (padding is an end, so nothing but padding may follow one). A number is one digit: two digits
    in a row are no given number."""
    kinds = torch.tensor([_BAD, _END] + [_NUMBER] * 10 + [_OPERATOR] * 4 + [_OPEN, _CLOSE, _BAD, _BAD, _BAD])
    follows = torch.zeros(6, 6, dtype=torch.bool)
    for a, b in [(_END, _NUMBER), (_END, _OPEN), (_OPERATOR, _NUMBER), (_OPERATOR, _OPEN), (_OPEN, _NUMBER),
                 (_OPEN, _OPEN), (_NUMBER, _OPERATOR), (_NUMBER, _CLOSE), (_NUMBER, _END), (_CLOSE, _OPERATOR),
                 (_CLOSE, _CLOSE), (_CLOSE, _END), (_END, _END)]:
        follows[a, b] = True
    return kinds.to(device), follows.to(device)


def _digit_counts(symbols: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """How often each digit 0..9 is among ``symbols (m, W)`` where ``where``: ``(m, 10)``."""
    return torch.zeros(len(symbols), 10, dtype=torch.int64, device=symbols.device).scatter_add_(
        1, symbols.clamp(0, 9), where.long())


def _countdown_values(answer: torch.Tensor, length: torch.Tensor, sym) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact values ``num / den`` of well-formed expressions (symbol indices ``(m, A)``), read
    left to right with ``*`` and ``/`` before ``+`` and ``-``. Each open parenthesis starts a level
    that keeps its sum so far, the sign of the term being built, the term, and whether the next
    number starts, multiplies or divides that term; a close parenthesis ends the level and is a
    number to the level below. A division by zero leaves ``den`` 0. The numbers are given digits,
    each used once at most, so every product stays far inside int64."""
    m, dev = len(answer), answer.device
    rows = torch.arange(m, device=dev)
    fresh = torch.tensor([0, 1, 1, 0, 1, 0], device=dev)  # sum 0/1, sign +, term 0/1, the next number starts it
    state = fresh.repeat(m, 1 + int((answer == sym("(")).sum(-1).max()), 1)  # (m, levels, 6)
    at = torch.zeros(m, dtype=torch.int64, device=dev)  # each row's level

    def total(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # sum + sign * term
        return s[:, 0] * s[:, 4] + s[:, 2] * s[:, 3] * s[:, 1], s[:, 1] * s[:, 4]

    for t in range(int(length.max())):
        tok, live = answer[:, t], t < length
        number, close = live & (tok >= 0) & (tok <= 9), live & (tok == sym(")"))
        closed_num, closed_den = total(state[rows, at])
        at = at - close.long()
        v_num, v_den = torch.where(number, tok, closed_num), torch.where(number, 1, closed_den)
        s = state[rows, at]
        op = s[:, 5]  # 0: the number starts the term, 1: multiplies it, 2: divides it
        term_num = torch.where(op == 0, v_num, s[:, 3] * torch.where(op == 1, v_num, v_den))
        term_den = torch.where(op == 0, v_den, s[:, 4] * torch.where(op == 1, v_den, v_num))
        s = torch.where((number | close)[:, None], torch.stack([s[:, 0], s[:, 1], s[:, 2], term_num, term_den, op], 1), s)
        plus, minus = live & (tok == sym("+")), live & (tok == sym("-"))
        sum_num, sum_den = total(s)
        added = torch.stack([sum_num, sum_den, torch.where(plus, 1, -1), s[:, 3], s[:, 4], torch.zeros_like(op)], 1)
        s = torch.where((plus | minus)[:, None], added, s)
        s[:, 5] = torch.where(live & (tok == sym("*")), 1, torch.where(live & (tok == sym("/")), 2, s[:, 5]))
        state[rows, at] = s
        opened = live & (tok == sym("("))
        at = at + opened.long()
        state[rows, at] = torch.where(opened[:, None], fresh, state[rows, at])
    return total(state[:, 0])


@functools.lru_cache(maxsize=1 << 16)
def _countdown_answer(numbers: tuple[int, ...], target: int) -> tuple[int, ...]:
    """The expert's answer to a puzzle as symbol indices (kept: puzzles recur, so the numbers come
    sorted, and the answer does not depend on the order they are listed in)."""
    found = _countdown_solution(numbers, target)
    if found is None:
        raise ValueError(f"Countdown {numbers} -> {target} has no solution")  # generate() makes solvable ones
    return tuple(CountdownTask.symbols.index(ch) for ch in found)


def _combine(a: tuple[int, str, int], b: tuple[int, str, int], op: str) -> tuple[int, str, int] | None:
    """``a op b`` as (value, expression, precedence) if every step stays a positive integer."""
    (x, ex, px), (y, ey, py) = a, b
    if op == "+":
        value, prec = x + y, 1
    elif op == "-":
        value, prec = x - y, 1
    elif op == "*":
        value, prec = x * y, 2
    else:
        value, prec = (x // y if x % y == 0 else 0), 2
    if value <= 0:
        return None
    left = f"({ex})" if px < prec else ex
    right = f"({ey})" if py < prec or (py == prec and op in "-/") else ey
    return value, f"{left}{op}{right}", prec


def _countdown_solution(numbers: tuple[int, ...], target: int) -> str | None:
    """An expression for ``target`` with the fewest operations, or None (:func:`_countdown_answer`
    keeps its answers)."""
    start = [(n, str(n), 3) for n in numbers]  # (value, expression, precedence)
    for ops in range(1, len(numbers)):
        found = _countdown_search(start, target, ops, set())
        if found is not None:
            return found
    return None


def _countdown_search(items: list, target: int, ops: int, seen: set) -> str | None:
    """An expression for ``target`` made with exactly ``ops`` more operations, depth first."""
    if ops == 0:
        return None
    state = (tuple(sorted(v for v, _, _ in items)), ops)
    if state in seen:
        return None
    seen.add(state)
    for i, j in itertools.permutations(range(len(items)), 2):
        for op in "+-*/":
            if op in "+*" and i > j:
                continue  # commutative: one order is enough
            made = _combine(items[i], items[j], op)
            if made is None:
                continue
            if made[0] == target and ops == 1:
                return made[1]
            rest = [it for k, it in enumerate(items) if k not in (i, j)] + [made]
            found = _countdown_search(rest, target, ops - 1, seen)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------------------------
# Sudoku
# --------------------------------------------------------------------------------------------


class SudokuTask(TensorPuzzle):
    """Fill a Sudoku with a unique solution: ``"12.4/34../2143/4.21="`` → ``"3123"``.

    The prompt shows the grid row by row (``/`` between rows, ``.`` for an empty cell). The answer
    is the digits of the empty cells in reading order; it scores 1 when the filled grid has every
    digit once in each row, column and box, else 0. A puzzle is a solved grid (a pattern with its
    digits, bands, rows in a band, stacks and columns in a stack shuffled) with cells emptied in a
    random order, each only if the solution stays unique, until ``difficulty`` cells are empty;
    the expert writes that one solution.

    Args:
        difficulty: how many cells are empty, 1..10 on a 4x4 grid, 1..20 on a 6x6 one (default 6).
        size: 4 (2x2 boxes) or 6 (2-row, 3-column boxes).
    """

    name = "sudoku"
    difficulties = range(1, 21)
    symbols = "123456./="  # a digit d is the symbol d - 1
    _BOX = {4: (2, 2), 6: (2, 3)}
    _MOST_BLANKS = {4: 10, 6: 20}

    def __init__(self, difficulty: int = 6, size: int = 4) -> None:
        if size not in self._BOX:
            raise ValueError(f"SudokuTask: size must be 4 or 6, got {size!r}")
        self.size = size
        self.answer_symbols = "123456"[:size]
        self.difficulties = range(1, self._MOST_BLANKS[size] + 1)
        super().__init__(difficulty)
        n, (bh, bw) = size, self._BOX[size]
        rows = [[r * n + c for c in range(n)] for r in range(n)]
        cols = [[r * n + c for r in range(n)] for c in range(n)]
        boxes = [[(br + r) * n + bc + c for r in range(bh) for c in range(bw)]
                 for br in range(0, n, bh) for bc in range(0, n, bw)]
        self._units = tuple(map(tuple, rows + cols + boxes))  # the cells of each row, column and box
        self._peers = [{j for unit in self._units if i in unit for j in unit} - {i} for i in range(n * n)]

    def generate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, (bh, bw), dev = self.size, self._BOX[self.size], keys.device
        n2, count = n * n, len(keys)
        puzzle = torch.zeros(count, n2, dtype=torch.int64, device=dev)
        solution = torch.zeros_like(puzzle)
        todo, attempt = torch.arange(count, device=dev), 0
        while len(todo):  # too few cells could be emptied: drawn again (for the same key, the same way)
            u = self._draws(keys[todo], 3 * n + n // bh + n // bw + n2, attempt).split(
                [n, n // bh + n, n // bw + n, n2], dim=1)
            digits, rows, cols = u[0].argsort(-1), self._shuffled(u[1], n, bh), self._shuffled(u[2], n, bw)
            pattern = (bw * (rows % bh) + rows // bh)[:, :, None] + cols[:, None, :]  # a solved grid
            solved = digits.gather(1, (pattern % n).view(len(todo), n2))
            grid, blanks = solved.clone(), torch.zeros(len(todo), dtype=torch.int64, device=dev)
            for cell in u[3].argsort(-1).T:  # the cells in a random order
                active = blanks < self.difficulty
                if not bool(active.any()):
                    break
                emptied = grid.scatter(1, cell[:, None], -1)
                keep = active & (self._count_solutions(emptied, 2, active) == 1)  # the solution stays unique
                grid, blanks = torch.where(keep[:, None], emptied, grid), blanks + keep
            puzzle[todo], solution[todo] = grid, solved
            todo, attempt = todo[blanks < self.difficulty], attempt + 1
        prompt = _grid_prompts(self.symbols, torch.where(puzzle < 0, self.symbols.index("."), puzzle))
        cell = torch.arange(n2, device=dev)
        empty = torch.where(puzzle < 0, cell, n2).sort(-1).values[:, : self.difficulty]  # in reading order
        return prompt, solution.gather(1, empty)

    @staticmethod
    def _shuffled(u: torch.Tensor, n: int, per_group: int) -> torch.Tensor:
        """A random order of ``n`` lines in groups of ``per_group`` (the bands' rows, the stacks'
        columns), from ``n // per_group + n`` draws per row: the groups shuffled, and the lines
        within each group."""
        groups = u[:, : n // per_group].argsort(-1)  # which group comes first, second, ...
        within = u[:, n // per_group :].reshape(len(u), n // per_group, per_group).argsort(-1)  # each group's own order
        return (groups[:, :, None] * per_group + within).view(len(u), n)

    def _count_solutions(self, grids: torch.Tensor, most: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        """How many solutions each grid ``(n_grids, n * n)`` (digits 0.., -1 empty) has, up to
        ``most``. ``rows``, a mask, names the grids whose count is needed: the search skips the
        others (and counts them 0).

        There are only 288 solved 4x4 grids, so a 4x4 count is one product with a table of them,
        all grids at once; a 6x6 count is a search, one grid at a time."""
        if self.size == 4:
            table = _sudoku4_table(grids.device)
            given = (grids >= 0).sum(-1)
            agree = torch.nn.functional.one_hot(grids + 1, 5)[..., 1:].flatten(1).float() @ table
            return ((agree == given[:, None]).sum(-1)).clamp(max=most)
        wanted = [True] * len(grids) if rows is None else rows.tolist()
        return torch.tensor([sum(1 for _ in itertools.islice(self._solutions([v + 1 for v in grid]), most)) if w else 0
                             for grid, w in zip(grids.tolist(), wanted)], dtype=torch.int64, device=grids.device)

    def _solutions(self, grid: list[int]):
        """Every solution of ``grid`` (digits 1..n, 0 empty) by backtracking, the fewest-candidate
        empty cell first."""
        n, peers = self.size, self._peers
        empty = [i for i, v in enumerate(grid) if not v]
        if not empty:
            yield list(grid)
            return
        best, options = None, None
        for i in empty:
            cand = set(range(1, n + 1)) - {grid[p] for p in peers[i]}
            if options is None or len(cand) < len(options):
                best, options = i, cand
                if len(cand) <= 1:
                    break
        for v in sorted(options):
            grid[best] = v
            yield from self._solutions(grid)
        grid[best] = 0

    def judge_symbols(self, prompt: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        n, dev = self.size, prompt.device
        length = (answer != PAD_SYMBOL).sum(-1)
        digits = ((answer == PAD_SYMBOL) | ((answer >= 0) & (answer < n))).all(-1)
        units = _units_on(self._units, dev)
        out = torch.zeros(len(prompt), device=dev)
        for _, fits, cells in _grids_shown(prompt, self.symbols, [n], self.answer_symbols + "."):
            empty = cells == self.symbols.index(".")
            ok = fits & digits & (length == empty.sum(-1))
            kth = (empty.cumsum(-1) - 1).clamp(min=0)  # an empty cell's place among them: its digit's in the answer
            filled = torch.where(empty, fit_width(answer, n * n, PAD_SYMBOL).gather(1, kth), cells)
            ok &= (filled[:, units].sort(-1).values == torch.arange(n, device=dev)).all(-1).all(-1)
            out = torch.where(ok, 1.0, out)
        return out

    def prompt_chars(self) -> int:
        return self.size * (self.size + 1)

    def answer_chars(self) -> int:
        return self.difficulty


@functools.cache
def _units_on(units: tuple[tuple[int, ...], ...], device: torch.device) -> torch.Tensor:
    """A Sudoku's units (the cells of each row, column and box) as a tensor on ``device``, once."""
    return torch.tensor(units, device=device)


@functools.cache
def _sudoku4_table(device: torch.device) -> torch.Tensor:
    """Every solved 4x4 Sudoku (288) as a table ``(cell * 4 + digit, grid)`` of 0/1: which grids
    hold which digit where."""
    grids = torch.tensor(list(SudokuTask(1, size=4)._solutions([0] * 16))) - 1
    return torch.nn.functional.one_hot(grids, 4).flatten(1).T.float().to(device)


# --------------------------------------------------------------------------------------------
# Maze
# --------------------------------------------------------------------------------------------

class MazeTask(TensorPuzzle):
    """Walk from ``S`` to ``G`` on a grid with walls by a shortest path: ``"S.#/.#./..G="`` → ``"DDRR"``.

    The prompt shows the grid row by row (``/`` between rows; ``#`` a wall, ``.`` open, ``S``
    start, ``G`` goal). The answer is the moves, ``U``, ``D``, ``L``, ``R``, without spaces. A walk
    that stays on open cells and ends on ``G`` scores ``shortest / moves`` (1 for a shortest path);
    leaving the grid, entering a wall or ending elsewhere scores 0. Each cell is a wall with
    probability 0.3, ``S`` and ``G`` are two different cells, and a maze without a path is drawn
    again. The expert walks the path breadth-first search finds, trying the moves in the order
    ``U``, ``D``, ``L``, ``R``.

    Args:
        difficulty: the side of the square grid, 3..8 (default 4).
    """

    name = "maze"
    difficulties = range(3, 9)
    symbols = "#.SG/=UDLR"
    answer_symbols = "UDLR"
    _WALL_BELOW = int(0.3 * 2**32)  # a cell whose draw is below it is a wall

    def __init__(self, difficulty: int = 4) -> None:
        super().__init__(difficulty)

    def generate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, dev, sym = self.difficulty, keys.device, self.symbols.index
        n2, maze = n * n, _maze_tensors(n, keys.device)
        cells = torch.zeros(len(keys), n2, dtype=torch.int64, device=dev)
        dist = torch.zeros(len(keys), n2 + 1, dtype=torch.int64, device=dev)
        start = torch.zeros(len(keys), dtype=torch.int64, device=dev)
        todo, attempt, tries = torch.arange(len(keys), device=dev), 0, 4
        while len(todo):  # mazes without a path are drawn again (for the same key, the same way)
            # ``tries`` mazes per key at once: the first with a path is kept
            u = self._draws(keys[todo], tries * (n2 + 2), attempt).view(len(todo) * tries, n2 + 2)
            s0 = u[:, n2] % n2
            goal = (s0 + 1 + u[:, n2 + 1] % (n2 - 1)) % n2  # any cell but the start
            drawn = torch.where(u[:, :n2] < self._WALL_BELOW, sym("#"), sym("."))
            drawn.scatter_(1, s0[:, None], sym("S")).scatter_(1, goal[:, None], sym("G"))
            d = _maze_distances(drawn != sym("#"), goal, s0, maze)
            found = (d[torch.arange(len(u), device=dev), s0] >= 0).view(len(todo), tries)
            first = torch.arange(len(todo), device=dev) * tries + found.int().argmax(1)
            cells[todo], dist[todo], start[todo] = drawn[first], d[first], s0[first]
            todo, attempt = todo[~found.any(1)], attempt + 1
        # The lexicographically first shortest path (U < D < L < R): from each cell, the first move
        # one step nearer the goal. It is the path of a breadth-first search that tries U, D, L, R
        # from each cell in a first-in first-out queue.
        rows = torch.arange(len(keys), device=dev)
        length = dist[rows, start]
        answer = torch.full((len(keys), int(length.max()) if len(keys) else 0), PAD_SYMBOL, dtype=torch.int64,
                            device=dev)
        at = start
        for j in range(answer.shape[1]):
            nearer = dist.gather(1, maze["next"][at]) == (dist[rows, at] - 1)[:, None]
            k = nearer.int().argmax(-1)  # the first move that is
            answer[:, j] = torch.where(j < length, k + sym("U"), PAD_SYMBOL)
            at = torch.where(j < length, maze["next"][at, k], at)
        return _grid_prompts(self.symbols, cells), answer

    def judge_symbols(self, prompt: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        sym, rows = self.symbols.index, torch.arange(len(prompt), device=prompt.device)
        length = (answer != PAD_SYMBOL).sum(-1)
        move = answer - sym("U")  # U, D, L, R: 0..3
        readable = (length > 0) & ((answer == PAD_SYMBOL) | ((move >= 0) & (move < 4))).all(-1)
        out = torch.zeros(len(prompt), device=prompt.device)
        for n, fits, cells in _grids_shown(prompt, self.symbols, self.difficulties, "#.SG"):
            maze = _maze_tensors(n, prompt.device)
            fits &= ((cells == sym("S")).sum(-1) == 1) & ((cells == sym("G")).sum(-1) == 1)
            ok = fits & readable
            if not bool(ok.any()):
                continue
            open_ = cells != sym("#")
            start, goal = (cells == sym("S")).int().argmax(-1), (cells == sym("G")).int().argmax(-1)
            inside = torch.cat([open_, torch.zeros_like(open_[:, :1])], 1)  # the last column: off the grid
            at = start
            for j in range(int(torch.where(ok, length, 0).max())):  # the longest readable answer
                walking = ok & (j < length)
                nxt = maze["next"][at, move[:, j].clamp(0, 3)]
                ok &= ~walking | inside[rows, nxt]
                at = torch.where(walking & ok, nxt, at)
            ok &= at == goal
            arrived = ok.nonzero()[:, 0]  # most answers do not: no shortest path to compare with
            if len(arrived):
                shortest = _maze_distances(open_[arrived], start[arrived], goal[arrived], maze)[
                    torch.arange(len(arrived), device=prompt.device), goal[arrived]]
                out[arrived] = shortest / length[arrived]
        return out

    def prompt_chars(self) -> int:
        return self.difficulty * (self.difficulty + 1)

    def answer_chars(self) -> int:
        return self.difficulty * self.difficulty - 1  # a shortest path visits each cell at most once


@functools.cache
def _maze_tensors(n: int, device: torch.device) -> dict[str, torch.Tensor]:
    """An ``n`` x ``n`` maze's tensors, once per size and device: ``next`` (the cell a move U, D, L,
    R leads to from each cell; ``n * n`` off the grid, which it never leaves), each cell's ``bit`` in
    an int64 bit set (:func:`_maze_distances`) and the bit sets of the cells outside the first and the
    last column."""
    n2, nxt = n * n, []
    for r in range(n):
        for c in range(n):
            nxt.append([(r + dr) * n + c + dc if 0 <= r + dr < n and 0 <= c + dc < n else n2
                        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))])
    nxt.append([n2] * 4)
    bit = torch.tensor([1 << i if i < 63 else -(1 << 63) for i in range(n2)])  # cell i's bit of an int64
    column = torch.arange(n2) % n
    tensors = {"next": torch.tensor(nxt), "bit": bit,
               "not_first_column": bit[column != 0].sum(), "not_last_column": bit[column != n - 1].sum()}
    return {k: v.to(device) for k, v in tensors.items()}


def _maze_distances(open_: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                    maze: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each cell's distance ``(rows, n * n + 1)`` from ``source`` over the ``open_`` cells ``(rows,
    n * n)`` of many mazes at once, by breadth-first search a layer at a time until each maze
    reaches its ``target`` or runs out of cells: -1 where not reached (and in the last column, off
    the grid). A layer is a bit set of cells, one int64 per maze, grown by shifts."""
    rows, n2 = open_.shape
    n, bit = round(n2**0.5), maze["bit"]
    open_bits = (open_.long() * bit).sum(-1)  # distinct bits: the sum is their union
    seen = frontier = bit[source]
    goal, layers = bit[target], [frontier]
    for _ in range(1, n2):
        f = frontier
        near = (f << n) | ((f >> n) & ((1 << (64 - n)) - 1))  # down, up
        near |= ((f << 1) & maze["not_first_column"]) | ((f >> 1) & maze["not_last_column"])  # right, left
        frontier = near & open_bits & ~seen
        seen = seen | frontier  # a new tensor: the first layer is ``seen`` at the start
        layers.append(frontier)
        if not bool(((frontier != 0) & ((seen & goal) == 0)).any()):
            break
    member = (torch.stack(layers, 1)[:, None, :] & bit[:, None]) != 0  # (rows, cell, layer): one layer at most
    dist = torch.where(member.any(-1), (member * torch.arange(len(layers), device=open_.device)).sum(-1), -1)
    return torch.cat([dist, dist.new_full((rows, 1), -1)], 1)


# --------------------------------------------------------------------------------------------
# Lights Out
# --------------------------------------------------------------------------------------------

_CELLS = "abcdefghijklmnopqrstuvwxy"


class LightsOutTask(TensorPuzzle):
    """Switch every light off: ``"110/100/000="`` → ``"a"``.

    The prompt shows the lights row by row (``1`` on, ``0`` off, ``/`` between rows). Pressing a
    cell toggles it and its up, down, left and right neighbours. The answer names the cells to
    press, one letter each in reading order (``a`` is the top-left cell, ``b`` its right
    neighbour, ...); order does not matter and a cell pressed twice is not pressed. An answer that
    switches every light off scores ``fewest presses / presses`` (1 for a shortest solution), any
    other 0. The expert solves the linear system over GF(2) and, where the grid has several
    solutions (4x4, 5x5), writes a shortest one, in alphabetical order.

    A board is the lights that random presses switch on, each cell pressed with probability 1/2
    (presses that switch nothing on are drawn again); ``difficulty`` caps how many: where more
    cells were pressed, a random ``difficulty`` of them are kept. At the top level, ``size**2``,
    nothing is capped: every board the grid can show is equally likely. On a 3x3 grid the
    solution is unique, so a board of ``k`` presses needs exactly ``k``; on 4x4 and 5x5 a board
    may have a shorter solution than the presses that made it.

    Args:
        difficulty: the most presses a board is made of, 1..size**2 (default: size**2, no cap).
        size: the side of the square grid, 2..5 (default 3).
    """

    name = "lights_out"
    sizes = range(2, 6)
    symbols = "01/=" + _CELLS

    def __init__(self, difficulty: int | None = None, size: int = 3) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size not in self.sizes:
            raise ValueError(f"LightsOutTask: size must be an integer in 2..5, got {size!r}")
        self.size = size
        self.difficulties = range(1, size * size + 1)
        super().__init__(size * size if difficulty is None else difficulty)

    def answer_alphabet(self) -> str:
        return _CELLS[: self.size**2]  # the cells of this grid

    def generate(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, dev = self.size, keys.device
        system = _lights_out_tensors(n, dev)
        lights, attempt = torch.zeros(len(keys), n * n, dtype=torch.int64, device=dev), 0
        dark = torch.ones(len(keys), dtype=torch.bool, device=dev)
        while bool(dark.any()):  # presses that switch nothing on are drawn again (for the same key, the same way)
            # The presses are drawn for the grid whatever the level (salted by its side, so a
            # board of the top level is the one the grid always drew); the cap keeps a random
            # `difficulty` of them, from draws of its own.
            presses = self._draws(keys, n * n, attempt, level=n) >> 31  # each cell pressed with probability 1/2
            if self.difficulty < n * n:
                kept = self._draws(keys, n * n, attempt, level=-self.difficulty)
                order = torch.where(presses == 1, kept, 2**32).argsort(-1).argsort(-1)
                presses = presses * (order < self.difficulty)
            lights = torch.where(dark[:, None], _gf2(presses, system["press"]), lights)
            dark, attempt = (lights == 0).all(-1), attempt + 1
        prompt = _grid_prompts(self.symbols, lights)  # a light's 0 / 1 is the index of the symbol "0" / "1"
        every = _solutions(lights, system)
        best = every[torch.arange(len(keys), device=dev), every.sum(-1).argmin(-1)]  # the first of the shortest
        cell = torch.arange(n * n, device=dev)
        order = torch.where(best == 1, cell, n * n).sort(-1).values  # pressed cells first, in reading order
        answer = torch.where(order < n * n, order + len("01/="), PAD_SYMBOL)
        return prompt, answer

    def judge_symbols(self, prompt: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        first_cell, rows = len("01/="), len(prompt)
        length = (answer != PAD_SYMBOL).sum(-1)
        out = torch.zeros(rows, device=prompt.device)
        for n, fits, lights in _grids_shown(prompt, self.symbols, self.sizes, "01"):
            system, n2 = _lights_out_tensors(n, prompt.device), n * n  # a light's 0 / 1 is its symbol's index
            cell = torch.where((answer >= first_cell) & (answer < first_cell + n2), answer - first_cell, n2)
            readable = (length > 0) & ((answer == PAD_SYMBOL) | (cell < n2)).all(-1)
            pressed = torch.zeros(rows, n2 + 1, dtype=torch.int64, device=prompt.device).scatter_add_(
                1, cell, torch.ones_like(cell))[:, :n2] % 2  # a cell pressed twice is not pressed
            solved = fits & readable & (lights == _gf2(pressed, system["press"])).all(-1)
            if bool(solved.any()):  # most answers are not: no shortest solution to compare with
                fewest = _solutions(lights, system).sum(-1).min(-1).values
                out = torch.where(solved, (fewest / length.clamp(min=1)).clamp(max=1.0), out)
        return out

    def prompt_chars(self) -> int:
        return self.size * (self.size + 1)

    def answer_chars(self) -> int:
        return self.size**2


@functools.cache
def _lights_out_tensors(n: int, device: torch.device) -> dict[str, torch.Tensor]:
    """An ``n`` x ``n`` grid's tensors, once per size and device: ``press`` (cell pressed x light
    toggled), ``particular`` (a solution's presses from the lights: each pivot's row of the reduced
    system), ``choices`` (every solution's presses from the particular one: the free cells'
    ``2**k`` choices times the null space)."""
    n2, rows, combined, pivots = n * n, *_lights_out_system(n)
    press = torch.tensor([[m >> i & 1 for i in range(n2)] for m in _press_masks(n)])
    particular = torch.zeros(n2, n2, dtype=torch.int64)  # (light, press): presses = lights @ particular
    for k, col in enumerate(pivots):
        for i in range(n2):
            particular[i, col] = combined[k] >> i & 1
    free = [c for c in range(n2) if c not in pivots]
    null = torch.zeros(len(free), n2, dtype=torch.int64)
    for j, f in enumerate(free):
        null[j, f] = 1
        for k, col in enumerate(pivots):
            null[j, col] = rows[k] >> f & 1
    picks = torch.tensor(list(itertools.product((0, 1), repeat=len(free))), dtype=torch.int64)
    picks = picks.view(2 ** len(free), len(free))  # 1 x 0 where the solution is unique
    tensors = {"press": press, "particular": particular, "choices": _gf2(picks, null)}
    return {k: v.to(device) for k, v in tensors.items()}


def _gf2(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``x @ matrix`` over GF(2), for 0/1 int64 tensors (as floats: every sum is exact)."""
    return (x.float() @ matrix.float()).long() % 2


def _solutions(lights: torch.Tensor, system: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every solution's presses (0/1 per cell) for each row of lights that has one, ``(rows,
    2**k, cells)``: the particular solution plus each of the null space's choices, in the order of
    the free cells' choices."""
    return (_gf2(lights, system["particular"])[:, None] + system["choices"]) % 2


@functools.cache
def _lights_out_system(n: int) -> tuple[list[int], list[int], list[int]]:
    """The press matrix of an ``n`` x ``n`` grid reduced over GF(2), once per size: its rows (bit
    ``j`` for press ``j``), the lights each row sums (its right-hand side is their parity) and the
    pivot columns."""
    n2, press = n * n, _press_masks(n)
    rows = [sum((press[j] >> i & 1) << j for j in range(n2)) for i in range(n2)]
    combined = [1 << i for i in range(n2)]
    pivots, r = [], 0
    for col in range(n2):
        pivot = next((k for k in range(r, n2) if rows[k] >> col & 1), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        combined[r], combined[pivot] = combined[pivot], combined[r]
        for k in range(n2):
            if k != r and rows[k] >> col & 1:
                rows[k] ^= rows[r]
                combined[k] ^= combined[r]
        pivots.append(col)
        r += 1
    return rows, combined, pivots


@functools.cache
def _press_masks(n: int) -> tuple[int, ...]:
    """The lights each cell's press toggles on an ``n`` x ``n`` grid, as bit masks."""
    masks = []
    for r in range(n):
        for c in range(n):
            mask = 0
            for dr, dc in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
                if 0 <= r + dr < n and 0 <= c + dc < n:
                    mask |= 1 << ((r + dr) * n + c + dc)
            masks.append(mask)
    return tuple(masks)
