import json
import sys

import pytest
import torch

from textgym.seeding import draws, episode_key, hash32
from textgym.tasks import (
    AdditionTask,
    CopyTask,
    Example,
    ListTask,
    ReverseTask,
    SortTask,
    Task,
    make_task,
)
from textgym.tokenizers import CharTokenizer

KEYS = torch.arange(0, 3000, 7)


def test_hash_is_deterministic_uniform_and_in_range():
    x = hash32(torch.arange(100_000))
    assert x.min() >= 0 and x.max() < 2**32
    assert torch.equal(x, hash32(torch.arange(100_000)))
    counts = torch.bincount(x % 10, minlength=10).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.05
    assert len(set(episode_key(torch.tensor(3), torch.arange(1000)).tolist())) == 1000
    assert draws(torch.tensor([1, 2]), 5).shape == (2, 5)


@pytest.mark.parametrize("task,rule", [
    (CopyTask(), lambda s: s),
    (ReverseTask(), lambda s: s[::-1]),
    (SortTask(), lambda s: "".join(sorted(s))),
])
def test_string_tasks_follow_their_rule(task, rule):
    lengths = set()
    for k in KEYS.tolist():
        ex = task.example(k)
        assert ex.prompt.endswith("=") and set(ex.prompt[:-1]) <= set("abcdef")
        s = ex.prompt[:-1]
        lengths.add(len(s))
        assert ex.references == (rule(s),)
    assert lengths == {2, 3, 4, 5, 6}


def test_sort_follows_the_alphabet_order():
    task = SortTask(alphabet="zyx", min_length=5, max_length=5)
    ex = task.example(3)
    assert ex.references[0] == "".join(sorted(ex.prompt[:-1], key="zyx".index))


def test_addition_is_right_and_covers_the_digit_counts():
    task = AdditionTask(min_digits=1, max_digits=3)
    digit_counts = set()
    for k in KEYS.tolist():
        ex = task.example(k)
        a, b = ex.prompt[:-1].split("+")
        assert ex.prompt.endswith("=")
        assert all(len(x) == 1 or x[0] != "0" for x in (a, b))
        assert ex.references == (str(int(a) + int(b)),)
        digit_counts.add(len(a))
    assert digit_counts == {1, 2, 3}


@pytest.mark.parametrize("task", [CopyTask(), ReverseTask(), SortTask(alphabet="ba", max_length=3), AdditionTask(2, 4)])
def test_tensor_encoding_equals_the_text_encoding(task):
    tok = CharTokenizer(task.alphabet())
    P, L = task.max_prompt_tokens(tok), task.max_reference_tokens(tok) + 1
    fast = task.encode(KEYS, tok, P, L)
    slow = Task.encode(task, KEYS, tok, P, L)  # the generic path: example() then tokenizer.encode()
    for name in ("prompt_ids", "prompt_len", "reference_ids", "reference_len"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name


def test_list_task_encoding_equals_the_text_encoding():
    task = ListTask([("hi", ["hello", "hey"]), ("yo", ["yo"]), ("abc", [""])])
    tok = CharTokenizer(task.alphabet())
    fast = task.encode(KEYS, tok, 4, 6)
    slow = Task.encode(task, KEYS, tok, 4, 6)
    for name in ("prompt_ids", "prompt_len", "reference_ids", "reference_len"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name
    assert slow.reference_len[1].tolist() == [2, -1]


def test_list_task_draws_every_example():
    task = ListTask([{"prompt": str(i), "references": ["x"]} for i in range(5)])
    assert {task.example(k).prompt for k in KEYS.tolist()} == {str(i) for i in range(5)}


def test_jsonl_task(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "2+2=", "references": ["4"]}) + "\n\n"
                    + json.dumps({"prompt": "hi", "references": "hello"}) + "\n")
    task = make_task(str(path))
    assert task.examples == [Example("2+2=", ("4",)), Example("hi", ("hello",))]


@pytest.mark.parametrize("line,match", [
    ('{"prompt": "a", "references": ["b"]', r"data.jsonl, line 2: not valid JSON"),
    ('{"prompt": "a"}', r"data.jsonl, line 2: expected an object with keys 'prompt' and 'references'"),
    ('{"prompt": "a", "references": []}', r"data.jsonl, line 2: 'references' must be a non-empty list"),
    ('{"prompt": 3, "references": ["b"]}', r"data.jsonl, line 2: 'prompt' must be a string"),
])
def test_bad_jsonl_line_names_file_and_line(tmp_path, line, match):
    path = tmp_path / "data.jsonl"
    path.write_text('{"prompt": "ok", "references": ["ok"]}\n' + line + "\n")
    with pytest.raises(ValueError, match=match):
        ListTask.from_jsonl(path)


def test_empty_jsonl_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(ValueError, match="no examples"):
        ListTask.from_jsonl(path)


def test_hf_dataset_task():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"question": ["2+2=", "hi"], "answers": [["4", "four"], ["hello"]]})
    task = ListTask.from_hf_dataset(ds, prompt_column="question", references_column="answers")
    assert task.examples[0] == Example("2+2=", ("4", "four")) and task.max_references == 2
    with pytest.raises(ValueError, match=r"dataset has no column 'prompt'; its columns are \['question', 'answers'\]"):
        ListTask.from_hf_dataset(ds)


def test_hf_dataset_task_without_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'textgym\[hf\]'"):
        ListTask.from_hf_dataset("some/dataset")


@pytest.mark.parametrize("kwargs,match", [({"min_length": 0}, "1 <= min <= max"),
                                          ({"min_length": 5, "max_length": 3}, "1 <= min <= max"),
                                          ({"alphabet": "ab="}, "must not contain '='")])
def test_bad_task_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_task("reverse", **kwargs)


def test_make_task_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task 'nope': expected one of \['addition', 'arithmetic', 'copy', 'countdown', 'hanoi', 'lights_out', 'maze', 'reasoning_gym', 'reverse', 'review', 'sort', 'sudoku'\]"):
        make_task("nope")
