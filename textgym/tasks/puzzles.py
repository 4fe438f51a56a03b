"""Reasoning puzzles with optimal solvers: Countdown, Tower of Hanoi, Sudoku, Maze and Lights Out.

Each puzzle is a :class:`PuzzleTask`, written once: it draws a puzzle from the episode's key,
writes it as a prompt, reads a prompt back, solves it optimally (the expert's answer, the
reference) and judges any answer against the rules, not against the reference, so every correct
answer scores. Play them through a token env with the ``"task"`` reward (the task's own judge):
``gym.make("textgym/Hanoi-v0")`` is ``TokenGeneration-v0`` with ``task="hanoi", reward="task"``.

Every puzzle has one ``difficulty`` knob, an integer in its :attr:`PuzzleTask.difficulties`
(discs, numbers, blanks, grid size), and the same key gives the same puzzle at the same difficulty.
A judge never raises: an answer it cannot read scores 0.
"""

from __future__ import annotations

import ast
import functools
import itertools
import random
from collections import deque
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from textgym.tasks.core import Example, Task
from textgym.tokenizers import Tokenizer


class PuzzleTask(Task):
    """A puzzle drawn from the key, its optimal answer as the reference, and a judge of any answer.

    Subclasses implement :meth:`draw`, :meth:`prompt`, :meth:`parse`, :meth:`solve` and
    :meth:`judge`, and set :attr:`symbols` and :attr:`difficulties`.

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
        key = (self.difficulty, int(key))
        found = self._examples.get(key)
        if found is None:
            puzzle = self.draw(random.Random(f"{self.name}/{self.difficulty}/{key[1]}"))
            found = Example(self.prompt(puzzle), (self.solve(puzzle),))
            if len(self._examples) >= self._CACHE:
                self._examples.clear()
            self._examples[key] = found
        return found

    def score(self, example: Example, completion: str) -> float:
        """The judge's score of ``completion`` for the example's puzzle; 0 for an unreadable answer."""
        try:
            return float(self.judge(self.parse(example.prompt), completion))
        except (ValueError, ZeroDivisionError, RecursionError, MemoryError, SyntaxError, IndexError, KeyError):
            return 0.0

    def text_metrics(self, prompts: Sequence[str], completions: Sequence[str]) -> dict[str, float]:
        """``solved``: the share of answers that solve the puzzle (score above 0), optimal or not."""
        if not prompts:
            return {}
        solved = sum(self.score(Example(p, ()), c) > 0 for p, c in zip(prompts, completions))
        return {"solved": solved / len(prompts)}

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
        return {**self.__dict__, "_examples": {}}  # a pickled task travels without its cache

    def __repr__(self) -> str:
        return f"{type(self).__name__}(difficulty={self.difficulty})"


def _grid(prompt: str, cells: str, size: int | None = None) -> list[str]:
    """The rows of a square grid written as ``row/row/...=`` over ``cells`` (``size`` x ``size`` if given)."""
    if not prompt.endswith("="):
        raise ValueError("a prompt ends with '='")
    rows = prompt[:-1].split("/")
    n = len(rows) if size is None else size
    if len(rows) != n or any(len(r) != n or set(r) - set(cells) for r in rows):
        raise ValueError(f"expected a square grid of {n} rows over {cells!r}")
    return rows


# --------------------------------------------------------------------------------------------
# Tower of Hanoi
# --------------------------------------------------------------------------------------------


class HanoiTask(PuzzleTask):
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

    def __init__(self, difficulty: int = 3) -> None:
        super().__init__(difficulty)

    def draw(self, rng: random.Random) -> tuple[int, str, str]:
        src, dst = rng.sample("ABC", 2)
        return self.difficulty, src, dst

    def prompt(self, puzzle: tuple[int, str, str]) -> str:
        n, src, dst = puzzle
        return f"{n}{src}{dst}="

    def parse(self, prompt: str) -> tuple[int, str, str]:
        if len(prompt) != 4 or prompt[0] not in "1234567" or prompt[1] == prompt[2] or set(prompt[1:3]) - set("ABC"):
            raise ValueError(f"not a Hanoi prompt: {prompt!r}")
        return int(prompt[0]), prompt[1], prompt[2]

    def solve(self, puzzle: tuple[int, str, str]) -> str:
        return _hanoi_moves(*puzzle)

    def judge(self, puzzle: tuple[int, str, str], answer: str) -> float:
        n, src, dst = puzzle
        if not answer or len(answer) % 2 or set(answer) - set("ABC"):
            return 0.0
        pegs = {p: [] for p in "ABC"}
        pegs[src] = list(range(n, 0, -1))
        for a, b in zip(answer[::2], answer[1::2]):
            if a == b or not pegs[a] or (pegs[b] and pegs[b][-1] < pegs[a][-1]):
                return 0.0
            pegs[b].append(pegs[a].pop())
        return (2**n - 1) / (len(answer) // 2) if len(pegs[dst]) == n else 0.0

    def prompt_chars(self) -> int:
        return 4

    def answer_chars(self) -> int:
        return 2 * (2**self.difficulty - 1)


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

_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}


class CountdownTask(PuzzleTask):
    """Reach a target from some numbers with ``+ - * /``, each number used at most once:
    ``"3,5,7:22="`` → ``"3*5+7"``.

    The prompt lists ``difficulty`` numbers in 1..9 and the target (made by combining some of
    them, so a solution exists). The answer is an arithmetic expression: integers, ``+ - * /`` and
    parentheses. It scores 1 when it uses each given number at most once (no other numbers) and its
    exact value (fractions allowed) is the target; anything else scores 0. The expert searches for
    an expression with the fewest numbers whose every step is a positive integer, the rules of the
    TV game, and writes it with the fewest parentheses.

    Args:
        difficulty: how many numbers are given, 2..6 (default 3).
    """

    name = "countdown"
    difficulties = range(2, 7)
    symbols = "0123456789+-*/(),:="
    answer_symbols = "0123456789+-*/()"

    def __init__(self, difficulty: int = 3) -> None:
        super().__init__(difficulty)

    def draw(self, rng: random.Random) -> tuple[tuple[int, ...], int]:
        while True:
            numbers = tuple(rng.randint(1, 9) for _ in range(self.difficulty))
            items = list(numbers)
            rng.shuffle(items)
            value = items.pop()
            for other in items[: rng.randint(1, len(items))]:  # combine 2..n of them, left to right
                a, b = (value, other) if rng.random() < 0.5 else (other, value)
                op = rng.choice("+-*/")
                if op == "-" and a <= b or op == "/" and a % b:
                    op = "+" if rng.random() < 0.5 else "*"
                value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[op]
            if 10 <= value <= 999:  # at least two digits: never one of the numbers themselves
                return numbers, value

    def prompt(self, puzzle: tuple[tuple[int, ...], int]) -> str:
        numbers, target = puzzle
        return ",".join(map(str, numbers)) + f":{target}="

    def parse(self, prompt: str) -> tuple[tuple[int, ...], int]:
        numbers, _, target = prompt.removesuffix("=").partition(":")
        return tuple(int(x) for x in numbers.split(",")), int(target)

    def solve(self, puzzle: tuple[tuple[int, ...], int]) -> str:
        numbers, target = puzzle
        found = _countdown_solution(tuple(numbers), target)
        if found is None:
            raise ValueError(f"Countdown {numbers} -> {target} has no solution")  # draw() makes solvable ones
        return found

    def judge(self, puzzle: tuple[tuple[int, ...], int], answer: str) -> float:
        numbers, target = puzzle
        if not answer or set(answer) - set("0123456789+-*/() "):
            return 0.0
        used: list[int] = []
        value = _evaluate(ast.parse(answer, mode="eval").body, used)
        left = list(numbers)
        for n in used:
            if n not in left:
                return 0.0
            left.remove(n)
        return 1.0 if value == target else 0.0

    def prompt_chars(self) -> int:
        return 2 * self.difficulty + 4

    def answer_chars(self) -> int:
        # n one-digit numbers, n - 1 operators and at most n - 2 pairs of parentheses
        return 4 * self.difficulty - 5 if self.difficulty > 1 else 1


def _evaluate(node: ast.AST, used: list[int]) -> Fraction:
    """The exact value of an expression of integers and ``+ - * /``; the integers go to ``used``."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left, used), _evaluate(node.right, used))
    raise ValueError("only integers, + - * / and parentheses")


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


@functools.lru_cache(maxsize=8192)
def _countdown_solution(numbers: tuple[int, ...], target: int) -> str | None:
    """An expression for ``target`` with the fewest operations, or None (kept: puzzles recur)."""
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


class SudokuTask(PuzzleTask):
    """Fill a Sudoku with a unique solution: ``"12.4/34../2143/4.21="`` → ``"3123"``.

    The prompt shows the grid row by row (``/`` between rows, ``.`` for an empty cell). The answer
    is the digits of the empty cells in reading order; it scores 1 when the filled grid has every
    digit once in each row, column and box, else 0. The puzzles have exactly one solution, which
    the expert finds by backtracking.

    Args:
        difficulty: how many cells are empty, 1..10 on a 4x4 grid, 1..20 on a 6x6 one (default 6).
        size: 4 (2x2 boxes) or 6 (2-row, 3-column boxes).
    """

    name = "sudoku"
    difficulties = range(1, 21)
    symbols = "123456./="
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
        self._units = rows + cols + boxes  # the cells of each row, column and box
        self._peers = [{j for unit in self._units if i in unit for j in unit} - {i} for i in range(n * n)]

    def draw(self, rng: random.Random) -> list[int]:
        n, (bh, bw) = self.size, self._BOX[self.size]
        while True:
            digits = rng.sample(range(1, n + 1), n)
            bands = [b * bh + r for b in rng.sample(range(n // bh), n // bh) for r in rng.sample(range(bh), bh)]
            stacks = [s * bw + c for s in rng.sample(range(n // bw), n // bw) for c in rng.sample(range(bw), bw)]
            solution = [digits[(bw * (r % bh) + r // bh + c) % n] for r in bands for c in stacks]
            grid, blanks = list(solution), 0
            for cell in rng.sample(range(n * n), n * n):
                grid[cell] = 0
                if self._count(grid, 2) != 1:
                    grid[cell] = solution[cell]  # that cell must stay: the solution would not be unique
                    continue
                blanks += 1
                if blanks == self.difficulty:
                    return grid

    def _count(self, grid: list[int], most: int) -> int:
        """How many solutions ``grid`` has, counting up to ``most``."""
        if self.size == 4:
            return min(self._matches(grid).bit_count(), most)
        return sum(1 for _ in itertools.islice(self._solutions(list(grid)), most))

    def _matches(self, grid: list[int]) -> int:
        """The 4x4 grids that agree with ``grid``'s filled cells: a bit set over :func:`_sudoku4_grids`.

        There are only 288 solved 4x4 grids, so counting a puzzle's solutions is a few ANDs of
        288-bit integers instead of a search (the draw counts them once per cell it empties)."""
        grids, cells = _sudoku4_grids()
        found = (1 << len(grids)) - 1
        for i, v in enumerate(grid):
            if v:
                found &= cells[i][v]
        return found

    def _solutions(self, grid: list[int]):
        n, peers = self.size, self._peers
        empty = [i for i, v in enumerate(grid) if not v]
        if not empty:
            yield list(grid)
            return
        # the empty cell with the fewest candidates first
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

    def prompt(self, puzzle: list[int]) -> str:
        n = self.size
        cells = "".join(str(v) if v else "." for v in puzzle)
        return "/".join(cells[r * n : (r + 1) * n] for r in range(n)) + "="

    def parse(self, prompt: str) -> list[int]:
        rows = _grid(prompt, "123456"[: self.size] + ".", self.size)
        return [0 if ch == "." else int(ch) for ch in "".join(rows)]

    def solve(self, puzzle: list[int]) -> str:
        found = self._matches(puzzle) if self.size == 4 else 0
        if found and not found & (found - 1):  # the one solution (the search's first, were there more)
            solution = _sudoku4_grids()[0][found.bit_length() - 1]
        else:
            solution = next(self._solutions(list(puzzle)))
        return "".join(str(solution[i]) for i, v in enumerate(puzzle) if not v)

    def judge(self, puzzle: list[int], answer: str) -> float:
        empty = [i for i, v in enumerate(puzzle) if not v]
        if len(answer) != len(empty) or set(answer) - set("123456"[: self.size]):
            return 0.0
        grid = list(puzzle)
        for i, ch in zip(empty, answer):
            grid[i] = int(ch)
        return 1.0 if all(len({grid[i] for i in unit}) == self.size for unit in self._units) else 0.0

    def prompt_chars(self) -> int:
        return self.size * (self.size + 1)

    def answer_chars(self) -> int:
        return self.difficulty

    def __repr__(self) -> str:
        return f"SudokuTask(difficulty={self.difficulty}, size={self.size})"


@functools.cache
def _sudoku4_grids() -> tuple[list[list[int]], list[list[int]]]:
    """Every solved 4x4 Sudoku (288), and for each cell and digit the bit set of the grids that
    hold that digit there."""
    grids = list(SudokuTask(1, size=4)._solutions([0] * 16))
    cells = [[sum(1 << g for g, grid in enumerate(grids) if grid[i] == v) for v in range(5)] for i in range(16)]
    return grids, cells


# --------------------------------------------------------------------------------------------
# Maze
# --------------------------------------------------------------------------------------------

_STEPS = {"U": (-1, 0), "D": (1, 0), "L": (0, -1), "R": (0, 1)}


class MazeTask(PuzzleTask):
    """Walk from ``S`` to ``G`` on a grid with walls by a shortest path: ``"S.#/.#./..G="`` → ``"DDRR"``.

    The prompt shows the grid row by row (``/`` between rows; ``#`` a wall, ``.`` open, ``S``
    start, ``G`` goal). The answer is the moves, ``U``, ``D``, ``L``, ``R``, without spaces. A walk
    that stays on open cells and ends on ``G`` scores ``shortest / moves`` (1 for a shortest path);
    leaving the grid, entering a wall or ending elsewhere scores 0. The expert walks the path
    breadth-first search finds.

    Args:
        difficulty: the side of the square grid, 3..8 (default 4).
    """

    name = "maze"
    difficulties = range(3, 9)
    symbols = "#.SG/=UDLR"
    answer_symbols = "UDLR"

    def __init__(self, difficulty: int = 4) -> None:
        super().__init__(difficulty)

    def draw(self, rng: random.Random) -> list[str]:
        n = self.difficulty
        while True:
            cells = ["#" if rng.random() < 0.3 else "." for _ in range(n * n)]
            start, goal = rng.sample(range(n * n), 2)
            cells[start], cells[goal] = "S", "G"
            rows = ["".join(cells[r * n : (r + 1) * n]) for r in range(n)]
            if _maze_path(tuple(rows)) is not None:
                return rows

    def prompt(self, puzzle: list[str]) -> str:
        return "/".join(puzzle) + "="

    def parse(self, prompt: str) -> list[str]:
        rows = _grid(prompt, "#.SG")
        if "".join(rows).count("S") != 1 or "".join(rows).count("G") != 1:
            raise ValueError("a maze has one S and one G")
        return rows

    def solve(self, puzzle: list[str]) -> str:
        path = _maze_path(tuple(puzzle))
        if path is None:
            raise ValueError("this maze has no path from S to G")
        return path

    def judge(self, puzzle: list[str], answer: str) -> float:
        n = len(puzzle)
        if not answer or set(answer) - set(_STEPS):
            return 0.0
        r, c = next((r, c) for r in range(n) for c in range(n) if puzzle[r][c] == "S")
        for step in answer:
            r, c = r + _STEPS[step][0], c + _STEPS[step][1]
            if not (0 <= r < n and 0 <= c < n) or puzzle[r][c] == "#":
                return 0.0
        return len(self.solve(puzzle)) / len(answer) if puzzle[r][c] == "G" else 0.0

    def prompt_chars(self) -> int:
        return self.difficulty * (self.difficulty + 1)

    def answer_chars(self) -> int:
        return self.difficulty * self.difficulty - 1  # a shortest path visits each cell at most once


@functools.lru_cache(maxsize=4096)
def _maze_path(rows: tuple[str, ...]) -> str | None:
    """A shortest path from S to G (moves tried in the order U, D, L, R), or None; kept, so the
    draw's search serves the solver and the judge."""
    n = len(rows)
    start = next((r, c) for r in range(n) for c in range(n) if rows[r][c] == "S")
    came: dict[tuple[int, int], tuple[tuple[int, int], str] | None] = {start: None}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        if rows[r][c] == "G":
            path = []
            at = (r, c)
            while came[at] is not None:
                at, step = came[at]
                path.append(step)
            return "".join(reversed(path))
        for step, (dr, dc) in _STEPS.items():
            nxt = (r + dr, c + dc)
            if 0 <= nxt[0] < n and 0 <= nxt[1] < n and rows[nxt[0]][nxt[1]] != "#" and nxt not in came:
                came[nxt] = ((r, c), step)
                queue.append(nxt)
    return None


# --------------------------------------------------------------------------------------------
# Lights Out
# --------------------------------------------------------------------------------------------

_CELLS = "abcdefghijklmnopqrstuvwxy"


class LightsOutTask(PuzzleTask):
    """Switch every light off: ``"110/100/000="`` → ``"a"``.

    The prompt shows the lights row by row (``1`` on, ``0`` off, ``/`` between rows). Pressing a
    cell toggles it and its up, down, left and right neighbours. The answer names the cells to
    press, one letter each in reading order (``a`` is the top-left cell, ``b`` its right
    neighbour, ...); order does not matter and a cell pressed twice is not pressed. An answer that
    switches every light off scores ``fewest presses / presses`` (1 for a shortest solution), any
    other 0. The expert solves the linear system over GF(2) and, where the grid has several
    solutions (4x4, 5x5), writes a shortest one, in alphabetical order.

    Args:
        difficulty: the side of the square grid, 2..5 (default 3).
    """

    name = "lights_out"
    difficulties = range(2, 6)
    symbols = "01/=" + _CELLS

    def __init__(self, difficulty: int = 3) -> None:
        super().__init__(difficulty)

    def answer_alphabet(self) -> str:
        return _CELLS[: self.difficulty**2]  # the cells of this grid

    def draw(self, rng: random.Random) -> tuple[int, int]:
        n = self.difficulty
        while True:
            presses = [i for i in range(n * n) if rng.random() < 0.5]
            lights = _lights_after(n, 0, presses)
            if lights:
                return n, lights

    def prompt(self, puzzle: tuple[int, int]) -> str:
        n, lights = puzzle
        return "/".join("".join(str(lights >> (r * n + c) & 1) for c in range(n)) for r in range(n)) + "="

    def parse(self, prompt: str) -> tuple[int, int]:
        rows = _grid(prompt, "01")
        return len(rows), sum(1 << i for i, ch in enumerate("".join(rows)) if ch == "1")

    def solve(self, puzzle: tuple[int, int]) -> str:
        n, lights = puzzle
        rows, combined, pivots = _lights_out_system(n)
        n2 = n * n
        free = [c for c in range(n2) if c not in pivots]
        best: list[int] | None = None
        for choice in itertools.product((0, 1), repeat=len(free)):  # 2**nullity: at most 16 here
            x = {c: v for c, v in zip(free, choice)}
            for k, col in enumerate(pivots):
                rest = sum(x[f] for f in free if rows[k] >> f & 1)
                x[col] = ((combined[k] & lights).bit_count() & 1) ^ (rest & 1)
            presses = sorted(c for c, v in x.items() if v)
            if _lights_after(n, lights, presses) == 0 and (best is None or len(presses) < len(best)):
                best = presses
        if best is None:
            raise ValueError("these lights cannot all be switched off")
        return "".join(_CELLS[i] for i in best)

    def judge(self, puzzle: tuple[int, int], answer: str) -> float:
        n, lights = puzzle
        if not answer or set(answer) - set(_CELLS[: n * n]):
            return 0.0
        if _lights_after(n, lights, [_CELLS.index(ch) for ch in answer]):
            return 0.0
        return min(1.0, len(self.solve(puzzle)) / len(answer))

    def prompt_chars(self) -> int:
        return self.difficulty * (self.difficulty + 1)

    def answer_chars(self) -> int:
        return self.difficulty**2


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


def _lights_after(n: int, lights: int, presses: Sequence[int]) -> int:
    """The lights of an ``n`` x ``n`` grid after pressing ``presses`` (cell indices)."""
    masks = _press_masks(n)
    for i in presses:
        lights ^= masks[i]
    return lights
