"""The reasoning puzzles: experts that play the optimum, judges that follow the rules, the
difficulty knob, and the ``"task"`` reward in the envs."""

import itertools
import random

import gymnasium as gym
import pytest
import torch

import textgym  # noqa: F401  (registers the envs)
from textgym import rewards
from textgym.agents import sft
from textgym.rewards import EpisodeBatch, TaskScore
from textgym.tasks import (
    CopyTask,
    CountdownTask,
    HanoiTask,
    LightsOutTask,
    MazeTask,
    PuzzleTask,
    SudokuTask,
    make_task,
)
from textgym.tasks.core import Example
from textgym.tokenizers import CharTokenizer

PUZZLES = [HanoiTask, CountdownTask, SudokuTask, MazeTask, LightsOutTask]


def _judge(task, prompt, answer):
    return task.score(Example(prompt, ()), answer)


@pytest.mark.parametrize("cls", PUZZLES, ids=lambda c: c.name)
def test_the_expert_solves_every_puzzle_optimally_at_every_difficulty(cls):
    for difficulty in cls().difficulties:
        task = cls(difficulty)
        examples = task.examples_for(range(60))
        assert len({ex.prompt for ex in examples}) > 1 or cls is HanoiTask
        for ex in examples:
            assert task.score(ex, ex.references[0]) == 1.0, (difficulty, ex)
            assert len(ex.prompt) <= task.max_prompt_tokens(None)
            assert len(ex.references[0]) <= task.max_reference_tokens(None)
            assert set(ex.prompt + ex.references[0]) <= set(task.alphabet())
        assert task.examples_for(range(60)) == cls(difficulty).examples_for(range(60))  # from the key alone


def _sudoku_grid(prompt):
    """A Sudoku prompt's cells as digits 0.. (-1 empty)."""
    return [-1 if ch == "." else int(ch) - 1 for ch in prompt[:-1].replace("/", "")]


def test_sudoku_6x6_and_unique_solutions():
    for size in (4, 6):
        task = SudokuTask(task_most := SudokuTask._MOST_BLANKS[size], size=size)
        for ex in task.examples_for(range(20)):
            grid = _sudoku_grid(ex.prompt)
            search = list(itertools.islice(task._solutions([v + 1 for v in grid]), 3))
            assert grid.count(-1) == task_most and len(search) == 1
            assert ex.references[0] == "".join(str(v) for v, g in zip(search[0], grid) if g < 0)
            assert task.score(ex, ex.references[0]) == 1.0


def test_sudoku_4x4_table_counts_as_the_search():
    task, rng = SudokuTask(6), random.Random(0)
    grids = [_sudoku_grid(ex.prompt) for ex in task.examples_for(range(50))]
    while len(grids) < 400:  # grids with several solutions, one, or none (no digit twice in a unit)
        grid = [-1] * 16
        for cell in rng.sample(range(16), rng.randint(0, 10)):
            grid[cell] = rng.randint(0, 3)
        if all(len(given := [grid[i] for i in unit if grid[i] >= 0]) == len(set(given)) for unit in task._units):
            grids.append(grid)
    search = [sum(1 for _ in itertools.islice(task._solutions([v + 1 for v in grid]), 3)) for grid in grids]
    assert task._count_solutions(torch.tensor(grids), 3).tolist() == search
    assert set(search) == {0, 1, 2, 3}


def test_hanoi_judge_follows_the_rules():
    task = HanoiTask(2)
    assert _judge(task, "2AC=", "ABACBC") == 1.0
    assert _judge(task, "2AC=", "ACAB") == 0.0  # the big disc onto the small one
    assert _judge(task, "2AC=", "ABAC") == 0.0  # unfinished
    assert _judge(task, "2AC=", "ABBAABACBC") == pytest.approx(3 / 5)  # legal, two moves too many
    assert _judge(task, "2AC=", "BA") == 0.0  # from an empty peg
    assert _judge(task, "2AC=", "ABA") == 0.0


def test_countdown_judge_and_search():
    task = CountdownTask(3)
    assert _judge(task, "3,5,7:22=", "3*5+7") == 1.0
    assert _judge(task, "3,5,7:22=", "(7+15)") == 0.0  # 15 is not given
    assert _judge(task, "3,5,7:22=", "7*3+5-5+1") == 0.0  # 5 twice, 1 not given
    assert _judge(task, "3,4,6:24=", "6/(3/4)*3") == 0.0  # 3 twice
    assert _judge(task, "3,4,8:32=", "8/(3/12)") == 0.0
    assert _judge(task, "1,3,4:16=", "4/(1-3/4)") == 0.0  # 4 twice
    assert _judge(task, "3,8,9:24=", "8/(1/3)") == 0.0
    assert _judge(task, "3,8,2:12=", "8/(2/3)") == 1.0  # exact fractions along the way
    for bad in ["", "2**5", "3*5+", "x", "7/0", "-3*5+7+0", "((((((", "3;5", "35", "3*(5+7", "3*5)+7", "()3*5+7",
                "3(5)+7", "3*5+7=", "3,5"]:
        assert _judge(task, "3,5,7:22=", bad) == 0.0
    assert _judge(task, "3,5,7:22=", " 3 * 5 + 7 ") == _judge(task, "3,5,7:22=", "((3)*(5))+(7)") == 1.0
    assert _judge(task, "3,5,7:22=", "5/(7-7)+3") == 0.0  # 7 twice
    assert _judge(task, "2,2,5:10=", "5/(2-2)+7") == 0.0  # 7 not given
    assert _judge(task, "2,2,5,9:10=", "5/(2-2)+9") == 0.0  # a division by zero
    assert _judge(task, "2,3,4,5,6,7:1=", "(2-3/4)*(5-6/7)-(2-3/4)*(5-6/7)+1") == 0.0  # numbers twice
    assert _judge(task, "9,8,7,6,5,4:336=", "9*8*7*6/(5+4)") == 1.0
    assert _judge(task, "9,8,7,6,5,4:84=", "9*8*7*6/(5+4)/4") == 0.0  # 4 twice
    assert _judge(task, "9,8,7,6,5,4:105=", "9/(8/(7/(6/(5/4))))*64") == 0.0  # 105/64 * 64, but 64 is not given
    assert _judge(task, "9,8,2,6,5,4:21=", "9/(8/(2/(6/(5/4))))*8") == 0.0  # 8 twice
    assert _judge(task, "8,4,6,3,1:4=", "8/(4/(6/(3/1)))") == 1.0  # nested four deep
    assert _judge(task, "9,8:9=", "((((9))))") == 1.0
    # the expert uses the fewest numbers: no pair of them reaches a target it reaches with three
    for ex in CountdownTask(3).examples_for(range(200)):
        listed, _, shown = ex.prompt[:-1].partition(":")
        numbers, target = [int(x) for x in listed.split(",")], int(shown)
        used = sum(ch.isdigit() for ch in ex.references[0])
        if used == 3:
            pairs = {a + b for a, b in itertools.combinations(numbers, 2)} | {a * b for a, b in itertools.combinations(numbers, 2)}
            pairs |= {a - b for a, b in itertools.permutations(numbers, 2)} | {a // b for a, b in itertools.permutations(numbers, 2) if a % b == 0}
            assert target not in pairs, ex


def test_sudoku_judge():
    task = SudokuTask(4)
    assert _judge(task, "12.4/34../2143/4.21=", "3123") == 1.0
    assert _judge(task, "12.4/34../2143/4.21=", "3213") == 0.0
    assert _judge(task, "12.4/34../2143/4.21=", "312") == 0.0
    assert _judge(task, "12.4/34../2143/4.21=", "3129") == 0.0
    assert _judge(task, "12.4/34../2143/4.21/=", "3123") == 0.0  # not a 4x4 grid


def test_maze_judge():
    task = MazeTask(3)
    assert _judge(task, "S.#/.#./..G=", "DDRR") == 1.0
    assert _judge(task, "S.#/.#./..G=", "DDRRUD") == pytest.approx(4 / 6)  # arrives, not shortest
    assert _judge(task, "S.#/.#./..G=", "RD") == 0.0  # into a wall
    assert _judge(task, "S.#/.#./..G=", "U") == 0.0  # off the grid
    assert _judge(task, "S.#/.#./..G=", "DD") == 0.0  # ends elsewhere


def _lights_after(n, lights, presses):
    """The lights of an ``n`` x ``n`` grid (a bit per cell) after pressing ``presses`` (cell indices)."""
    for i in presses:
        r, c = divmod(i, n)
        for dr, dc in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
            if 0 <= r + dr < n and 0 <= c + dc < n:
                lights ^= 1 << ((r + dr) * n + c + dc)
    return lights


def test_lights_out_difficulty_caps_the_presses_and_its_top_level_caps_none():
    """A board of level k is made of at most k presses, the k-press boards being the most common
    (a 3x3 solution is unique, so the expert's answer has exactly the board's presses); the top
    level draws every cell pressed with probability 1/2, capped nowhere."""
    lengths = {k: [len(ex.references[0]) for ex in LightsOutTask(k).examples_for(range(2000))] for k in (1, 3, 9)}
    assert set(lengths[1]) == {1}
    assert max(lengths[3]) == 3 and lengths[3].count(3) > 1600  # P(fewer than 3 of 9 pressed) = 46/512
    assert max(lengths[9]) >= 8 and 4.2 < sum(lengths[9]) / 2000 < 4.8  # Binomial(9, 1/2), no empty board: 4.51
    for size in (4, 5):
        top = LightsOutTask(size=size)
        assert top.difficulty == size * size
        assert all(len(ex.references[0]) <= 2 for ex in LightsOutTask(2, size=size).examples_for(range(200)))
    # the levels draw apart: a key's board at level 3 is not its board at level 9
    assert sum(a.prompt != b.prompt for a, b in zip(LightsOutTask(3).examples_for(range(200)),
                                                   LightsOutTask(9).examples_for(range(200)))) > 100


def test_lights_out_judge_and_the_expert_is_shortest():
    task = LightsOutTask(3)
    assert _judge(task, "110/100/000=", "a") == 1.0
    assert _judge(task, "110/100/000=", "aee") == pytest.approx(1 / 3)  # e twice is no press
    assert _judge(task, "110/100/000=", "b") == 0.0
    assert _judge(task, "110/100/000=", "z") == 0.0
    for n in (3, 4):
        task = LightsOutTask(size=n)
        for ex in task.examples_for(range(25)):
            lights = sum(1 << i for i, ch in enumerate(ex.prompt.replace("/", "")) if ch == "1")
            fewest = min(len(p) for k in range(n * n + 1) for p in itertools.combinations(range(n * n), k)
                         if _lights_after(n, lights, p) == 0) if n == 3 else None
            if fewest is not None:
                assert len(ex.references[0]) == fewest
            # 4x4 has 16 solutions: the expert's is the shortest of them
            if n == 4:
                assert all(len(ex.references[0]) <= sum(bits) for bits in itertools.product((0, 1), repeat=16)
                           if _lights_after(n, lights, [i for i, b in enumerate(bits) if b]) == 0)


@pytest.mark.parametrize("cls", PUZZLES, ids=lambda c: c.name)
def test_a_judge_never_raises(cls):
    task, rng = cls(), random.Random(0)
    chars = task.alphabet() + "()+-*/ xyz9"
    for ex in task.examples_for(range(20)):
        for _ in range(50):
            answer = "".join(rng.choice(chars) for _ in range(rng.randint(0, 30)))
            assert 0.0 <= task.score(ex, answer) <= 1.0


@pytest.mark.parametrize("cls", PUZZLES, ids=lambda c: c.name)
def test_a_difficulty_out_of_range_is_refused(cls):
    r = cls().difficulties
    for bad in (r[0] - 1, r[-1] + 1, True, 2.5, "3"):
        with pytest.raises(ValueError, match=f"difficulty must be an integer in {r[0]}..{r[-1]}"):
            cls(bad)
    with pytest.raises(ValueError, match="size must be 4 or 6"):
        SudokuTask(size=5)
    for bad in (1, 6, 3.0):
        with pytest.raises(ValueError, match=f"LightsOutTask: size must be an integer in 2..5, got {bad!r}"):
            LightsOutTask(size=bad)
    with pytest.raises(ValueError, match=r"difficulty must be an integer in 1\.\.4, got 5"):
        LightsOutTask(5, size=2)
    with pytest.raises(ValueError, match=r"1\.\.10"):
        SudokuTask(11)


def test_the_task_reward_needs_a_task_with_a_judge():
    with pytest.raises(ValueError, match="task 'copy' has none"):
        gym.make("textgym/TokenGeneration-v0", task="copy", reward="task")
    batch = EpisodeBatch.from_texts(["1AC="], ["AC"], [["AC"]], CharTokenizer(HanoiTask.symbols))
    with pytest.raises(ValueError, match="not bound to a task"):
        rewards.make("task")(batch)
    assert TaskScore(HanoiTask(1))(batch).tolist() == [1.0]
    with pytest.raises(ValueError, match="has none"):
        TaskScore(CopyTask())


@pytest.mark.parametrize("env_id", ["textgym/Countdown-v0", "textgym/Hanoi-v0", "textgym/Sudoku-v0",
                                    "textgym/Maze-v0", "textgym/LightsOut-v0"])
def test_the_env_pays_the_judge_and_the_knob_reaches_it(env_id):
    env = gym.make(env_id, task_kwargs={"difficulty": 2 if "Hanoi" in env_id or "Sudoku" in env_id else 3})
    u = env.unwrapped
    obs, _ = env.reset(seed=3)
    assert u.task.difficulty in (2, 3)
    done, total = False, 0.0
    while not done:
        obs, reward, terminated, truncated, info = env.step(u.expert(obs))
        total, done = total + reward, terminated or truncated
    assert terminated and total == 1.0 and info["is_success"]
    # a wrong answer (eos at once) scores 0, never an error
    env.reset(seed=3)
    _, reward, terminated, _, info = env.step(u.tokenizer.eos_id)
    assert terminated and reward == 0.0 and not info["is_success"]
    with pytest.raises(ValueError, match="difficulty must be"):
        gym.make(env_id, task_kwargs={"difficulty": 99})


def test_make_task_by_name_with_the_knob():
    assert make_task("hanoi", difficulty=4).difficulty == 4
    assert make_task("sudoku", difficulty=12, size=6).size == 6
    assert make_task("lights_out", size=4).difficulty == 16


def test_lights_out_env_of_another_size_and_a_curriculum_over_its_presses():
    env = gym.make("textgym/LightsOut-v0", task_kwargs={"size": 4}, action_mask=True)
    u = env.unwrapped
    obs, _ = env.reset(seed=0)
    assert u.tokenizer.decode(obs["input_ids"][obs["attention_mask"] == 1].tolist()).count("/") == 3
    assert sum(env.action_masks()) == 16 + 1  # the cells a..p and eos
    envs = gym.make_vec("textgym/LightsOut-v0", num_envs=64, vectorization_mode="vector_entry_point").unwrapped
    envs.set_curriculum({"window": 2})
    obs, _ = envs.reset(seed=0)
    assert envs.difficulties == range(1, 10) and envs.difficulty == 1
    # level 1: every board is one press, so the expert writes one cell and eos
    obs, reward, terminated, _, _ = envs.step(envs.expert(obs))
    assert not terminated.any()
    _, reward, terminated, _, _ = envs.step(envs.expert(obs))
    assert terminated.all() and (reward == 1.0).all()


def test_sft_learns_hanoi_from_its_expert():
    """A small measured learning check: SFT on the optimal moves solves every 2-disc tower."""
    result = sft.train(sft.SFTConfig(env_id="textgym/Hanoi-v0", env_kwargs={"task_kwargs": {"difficulty": 2}},
                                     total_steps=40_000, num_envs=64, eval_episodes=64, seed=0), progress=False)
    assert result.eval["success_rate"] >= 0.95, result.eval


@pytest.mark.parametrize("env_id", ["textgym/Countdown-v0", "textgym/Sudoku-v0", "textgym/Maze-v0",
                                    "textgym/LightsOut-v0"])
def test_sft_smoke(env_id):
    result = sft.train(sft.SFTConfig(env_id=env_id, total_steps=300, num_envs=16, n_layers=1, d_model=32,
                                     n_heads=2, eval_episodes=16), progress=False)
    assert result.history and 0.0 <= result.eval["success_rate"] <= 1.0 and "solved" in result.eval


def test_help_of_a_puzzle_id_is_its_manual():
    doc = type(gym.make("textgym/Sudoku-v0")).__doc__
    assert "SudokuTask" in doc and "digits of the empty cells" in doc
    assert 'task_kwargs={"difficulty": 1}' in doc and "TokenGenerationEnv" in doc


MASKED = ["textgym/Countdown-v0", "textgym/Hanoi-v0", "textgym/Sudoku-v0", "textgym/Maze-v0",
          "textgym/LightsOut-v0", "textgym/Copy-v0", "textgym/Addition-v0"]


@pytest.mark.parametrize("env_id", MASKED)
def test_the_action_mask_is_the_answers_characters_and_eos_and_holds_every_right_answer(env_id):
    import numpy as np
    import torch

    from textgym.agents.rollout import SequenceView, collect, make_envs
    from textgym.policies import make_policy

    single = gym.make(env_id, action_mask=True).unwrapped
    vec = make_envs(env_id, 64, "cpu", action_mask=True)
    tok, task = single.tokenizer, single.task
    expected = np.zeros(tok.vocab_size, dtype=bool)
    expected[tok.encode(task.answer_alphabet()) + [tok.eos_id]] = True
    assert 1 < expected.sum() < tok.vocab_size  # it forbids something, and allows more than eos
    np.testing.assert_array_equal(single.action_masks(), expected)
    np.testing.assert_array_equal(vec.allowed_actions.numpy(), expected)
    np.testing.assert_array_equal(np.asarray(gym.make_vec(env_id, num_envs=3, action_mask=True).action_masks()),
                                  np.tile(expected, (3, 1)))
    assert gym.make(env_id).unwrapped.action_masks().all()  # off by default
    # the expert's answers (the references) never need a forbidden token
    view = SequenceView(vec)
    rollout = collect(vec, view, expert=vec.expert, seed=0)
    assert bool(rollout.success.all())
    assert bool(torch.as_tensor(expected)[rollout.actions[rollout.mask]].all())
    # and a policy samples only the allowed tokens
    policy = make_policy(**view.policy_spec(), n_layers=1, d_model=32)
    rollout = collect(vec, view, policy, seed=1)
    assert rollout.allowed is not None
    assert bool(torch.as_tensor(expected)[rollout.actions[rollout.mask]].all())


def test_the_action_mask_needs_a_task_that_names_its_answers_characters():
    from textgym.tasks import ListTask

    class Unnamed(ListTask):
        def answer_alphabet(self):
            return None

    env = gym.make("textgym/TokenGeneration-v0", task=[("abc=", ["ba"]), ("c=", ["cb"])], action_mask=True).unwrapped
    tok = env.tokenizer
    assert {tok.decode([i]) for i in range(tok.vocab_size) if env.action_masks()[i] and i != tok.eos_id} == {"a", "b", "c"}
    assert not env.action_masks()[tok.encode("=")[0]]  # a list task's answers: its references' characters
    with pytest.raises(ValueError, match="does not name them"):
        gym.make("textgym/TokenGeneration-v0", task=Unnamed([("ab=", ["ba"])]), action_mask=True)
    with pytest.raises(ValueError, match="action_mask must be true or false, got 'yes'"):
        gym.make("textgym/Hanoi-v0", action_mask="yes")
    assert set(SudokuTask(size=6).answer_alphabet()) == set("123456")
    assert LightsOutTask(size=2).answer_alphabet() == "abcd"


@pytest.mark.parametrize("env_id", ["textgym/Hanoi-v0", "textgym/LightsOut-v0", "textgym/Maze-v0", "textgym/Sudoku-v0",
                                    "textgym/Countdown-v0"])
def test_a_tensor_puzzle_judges_token_ids_as_it_judges_their_text(env_id):
    # The vector env's "task" reward judges token ids on the device; it must pay what the text judge
    # pays, with a special token inside a completion dropped as decoding drops it.
    vec = gym.make_vec(env_id, num_envs=4)
    setup = vec.unwrapped.setup
    task, tok, reward = setup.task, setup.tokenizer, setup.reward
    assert reward.on_device
    enc = task.encode(torch.arange(48), tok, setup.max_prompt_len, setup.max_new_tokens)
    gen, width = torch.Generator().manual_seed(0), setup.max_new_tokens
    answer_ids = tok.encode(task.answer_alphabet())
    rows = []
    for i in range(48):
        ref = enc.reference_ids[i, 0, : enc.reference_len[i, 0]].tolist()
        cut = int(torch.randint(0, len(ref) + 1, (1,), generator=gen))
        some = torch.randint(0, len(answer_ids), (width,), generator=gen).tolist()
        for ids in (ref, ref[:cut] + [tok.pad_id] + ref[cut:], ref[:cut] + [tok.eos_id] + ref[cut:], ref + ref[:2],
                    ref[:cut], [answer_ids[j] for j in some][: cut + 2],
                    torch.randint(0, tok.vocab_size, (cut + 1,), generator=gen).tolist()):
            rows.append((i, ids[:width]))
    idx = torch.tensor([i for i, _ in rows])
    completion = torch.full((len(rows), width), tok.pad_id)
    for r, (_, ids) in enumerate(rows):
        completion[r, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    batch = EpisodeBatch(enc.prompt_ids[idx], enc.prompt_len[idx], completion, torch.tensor([len(c) for _, c in rows]),
                         enc.reference_ids[idx], enc.reference_len[idx], tok)
    on_device = reward(batch)
    as_text = [task.score(Example(tok.decode(enc.prompt_ids[i, : enc.prompt_len[i]].tolist()), ()), tok.decode(c))
               for i, c in rows]
    assert on_device.tolist() == pytest.approx(as_text)
    assert on_device[::7].tolist() == [1.0] * 48  # each reference is optimal
    assert 0 < (on_device == 0).float().mean() < 1


def test_the_task_reward_judges_on_the_device_where_the_task_can():
    make = gym.make_vec
    assert make("textgym/TokenGeneration-v0", num_envs=2, task="hanoi", reward=[["task", 1.0], ["token_accuracy", 0.5]]
                ).unwrapped.setup.reward.on_device
    assert make("textgym/Countdown-v0", num_envs=2).unwrapped.setup.reward.on_device
    assert TaskScore(LightsOutTask(), CharTokenizer("01/=")).on_device is False  # a tokenizer without its symbols


@pytest.mark.parametrize(("task", "prompt", "answer", "score"), [
    (HanoiTask(), "3AA=", "AB", 0.0), (HanoiTask(), "8AC=", "AC", 0.0), (HanoiTask(), "1AC", "AC", 0.0),
    (HanoiTask(), "1AC==", "AC", 0.0), (HanoiTask(), "1AC=", "AC", 1.0), (HanoiTask(), "1AC=", "ACCA", 0.0),
    (HanoiTask(), "1AC=", "ABBC", 0.5), (HanoiTask(), "", "AC", 0.0), (HanoiTask(), "1AC=", "A C", 0.0),
    (LightsOutTask(), "11/10=", "a", 1.0), (LightsOutTask(), "11/10", "a", 0.0), (LightsOutTask(), "11/1=", "a", 0.0),
    (LightsOutTask(), "110/100/00=", "a", 0.0), (LightsOutTask(), "110/100/000=0", "a", 0.0),
    (LightsOutTask(), "110/100/000=", "a ", 0.0), (LightsOutTask(), "12/10=", "a", 0.0),
    (LightsOutTask(), "111111/111111/111111/111111/111111/111111=", "a", 0.0),
    (MazeTask(), "S.#/.#./..G=", "DDRR", 1.0), (MazeTask(), "S.#/.#./..G", "DDRR", 0.0),
    (MazeTask(), "S.#/.#./...=", "DDRR", 0.0), (MazeTask(), "S.#/.#./.GG=", "DDRR", 0.0),
    (MazeTask(), "S.#/.#./S.G=", "DDRR", 0.0), (MazeTask(), "S.#/.#/..G=", "DDR", 0.0),
    (MazeTask(), "S.x/.#./..G=", "DDRR", 0.0), (MazeTask(), "SG/..=", "R", 0.0), (MazeTask(), "S.#/.#./..G=", "DDRR ", 0.0),
    (MazeTask(), "S.#/.#./..G=", "", 0.0), (MazeTask(), "S.#/.#./..G==", "DDRR", 0.0),
    (MazeTask(), "S...#/##.#./G....=", "RR", 0.0),
    (SudokuTask(), "12.4/34../2143/4.21=", "3123", 1.0), (SudokuTask(), "12.4/34../2143/4.21", "3123", 0.0),
    (SudokuTask(), "12.4/34../2143/4.2=", "3123", 0.0), (SudokuTask(), "12.4/34../2143/4.215=", "3123", 0.0),
    (SudokuTask(), "12.4/34../2143/4.21==", "3123", 0.0), (SudokuTask(), "12.4/35../2143/4.21=", "3123", 0.0),
    (SudokuTask(), "12.4/34../2143/4.21=", "31235", 0.0), (SudokuTask(), "12.4/34../2143/4.21=", "3 23", 0.0),
    (SudokuTask(), "1234/3412/2143/4321=", "", 1.0), (SudokuTask(), "1134/3412/2143/4321=", "", 0.0),
    (SudokuTask(2, size=6), "12.4/34../2143/4.21=", "3123", 0.0),
    (CountdownTask(), "3,5,7:22=", "3*5+7", 1.0), (CountdownTask(), "3,5,7:22", "3*5+7", 0.0),
    (CountdownTask(), "3,5,7,:22=", "3*5+7", 0.0), (CountdownTask(), "3,5,0:22=", "3*5+7", 0.0),
    (CountdownTask(), "3,5,7:=", "3*5+7", 0.0), (CountdownTask(), "3,5,7:2222=", "3*5+7", 0.0),
    (CountdownTask(), "3,5,7:22==", "3*5+7", 0.0), (CountdownTask(), "3,57:22=", "3*5+7", 0.0),
    (CountdownTask(), "3:22=", "3", 0.0), (CountdownTask(), "1,2,3,4,5,6,7:28=", "1+2+3+4+5+6+7", 0.0),
    (CountdownTask(), "3,5,7:022=", "3*5+7", 1.0), (CountdownTask(), "3,5,7:7=", "7", 1.0),
    (CountdownTask(2), "3,5,7,9:22=", "3*5+7", 1.0), (CountdownTask(), "3;5,7:22=", "3*5+7", 0.0),
    (CountdownTask(), ",3,5,7:22=", "3*5+7", 0.0), (CountdownTask(), "3,5,7:22=", "3*5+7 =", 0.0),
])
def test_a_tensor_puzzle_reads_only_its_own_prompts(task, prompt, answer, score):
    assert _judge(task, prompt, answer) == pytest.approx(score)


def test_a_tensor_puzzle_keeps_its_last_batch_only_for_the_same_keys_and_difficulty():
    task = MazeTask(5)
    first = task.examples_for(range(8))
    assert task.examples_for(range(8)) == first and task.examples_for(range(1, 9)) == MazeTask(5).examples_for(range(1, 9))
    task.difficulty = 3  # as a curriculum lowers it
    assert task.examples_for(range(8)) == MazeTask(3).examples_for(range(8)) != first
    enc = task.encode(torch.arange(8), CharTokenizer(task.symbols), 64, 64)
    tok = CharTokenizer(task.symbols)
    assert [tok.decode(enc.prompt_ids[i, : enc.prompt_len[i]].tolist()) for i in range(8)] == \
        [ex.prompt for ex in MazeTask(3).examples_for(range(8))]


@pytest.mark.parametrize("make", [MazeTask, CountdownTask, LightsOutTask, lambda d: LightsOutTask(size=d)],
                         ids=["maze", "countdown", "lights_out", "lights_out_sizes"])
def test_a_batch_of_several_levels_is_judged_as_each_alone(make):
    # A curriculum's window mixes levels, so one batch holds grids of several sizes (or several
    # counts of numbers, or boards of several caps on presses).
    rng = random.Random(0)
    examples = [ex for d in (3, 4, 5) for ex in make(d).examples_for(range(10))]
    rng.shuffle(examples)
    answers = [ex.references[0] if i % 3 else ex.references[0][::-1] + "x"[: i % 2] for i, ex in enumerate(examples)]
    together = make(5).scores([ex.prompt for ex in examples], answers).tolist()
    alone = [make(3).score(ex, a) for ex, a in zip(examples, answers)]
    assert together == pytest.approx(alone)
    assert together[1] == 1.0 and 0 < sum(together) < len(together)


class _Divisors(PuzzleTask):
    """A puzzle of one's own, written in Python: name a divisor of n, 1 < d < n (the smallest pays 1)."""

    name, difficulties, symbols, answer_symbols = "divisors", range(1, 3), "0123456789=", "0123456789"

    def draw(self, rng):
        while True:
            n = rng.randint(4, 10 ** (self.difficulty + 1) - 1)
            if any(n % d == 0 for d in range(2, n)):
                return n

    def prompt(self, n):
        return f"{n}="

    def parse(self, prompt):
        return int(prompt.removesuffix("="))

    def solve(self, n):
        return str(next(d for d in range(2, n) if n % d == 0))

    def judge(self, n, answer):
        d = int(answer)  # a ValueError for an answer that is not a number: score() pays 0
        return 1.0 if str(d) == self.solve(n) else 0.5 if 1 < d < n and n % d == 0 else 0.0

    def prompt_chars(self):
        return self.difficulty + 2

    def answer_chars(self):
        return self.difficulty + 1


def test_a_puzzle_of_ones_own_in_python_plays_in_the_envs():
    task = _Divisors(2)
    examples = task.examples_for(range(40))
    assert examples == _Divisors(2).examples_for(range(40)) != _Divisors(1).examples_for(range(40))
    for ex in examples:
        n = task.parse(ex.prompt)
        assert task.score(ex, ex.references[0]) == 1.0 and task.score(ex, str(n)) == 0.0
        assert task.score(ex, "") == task.score(ex, "x") == task.score(ex, "1") == 0.0
    assert task.score(Example("12=", ()), "4") == 0.5
    assert task.scores(["12=", "12=", "nope="], ["2", "6", "2"]).tolist() == [1.0, 0.5, 0.0]
    vec = gym.make_vec("textgym/TokenGeneration-v0", num_envs=4, task=task, reward="task")
    assert not vec.unwrapped.setup.reward.on_device  # judged from the text
    result = sft.train(sft.SFTConfig(env_id="textgym/TokenGeneration-v0", env_kwargs={"task": task, "reward": "task"},
                                     num_envs=8, total_steps=200, eval_episodes=8), progress=False)
    assert 0.0 <= result.eval["mean_return"] <= 1.0
