"""Files textgym writes, and the run folder: its lock, its files, claiming and clearing it.

Every file goes through :func:`replacing`: it is written to a temporary file in the same folder,
flushed to the disk, then moved into place, so a crash or a full disk leaves the old file or the
new one, never half of one; a link at the path is replaced, never written through; and the
temporary file is removed on every way out but a kill. :func:`acquire_run` keeps a second process
from writing a run folder that a live one writes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the file itself was synced
        if not directory:
            raise
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write its new content to, then moved into place.

    On a clean exit the temporary file is synced to the disk and replaces ``path`` (a link at
    ``path`` is replaced, not followed); on any exception, Ctrl-C included, it is removed and
    ``path`` is left as it was::

        with replacing(out / "policy.safetensors") as tmp:
            save_model(model, tmp)
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent, directory=True)
    except Exception as e:
        if not isinstance(e, OSError) and _disk_full(path.parent):  # a writer's own error for a full disk
            raise OSError(errno.ENOSPC, f"no space left on the device while writing {path} (the file there is "
                                        "kept as it was)") from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _disk_full(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files that a killed writer left in ``folder`` (call it only while
    holding the folder's lock); returns what it removed."""
    gone = [p for p in Path(folder).glob(f".*{TMP_SUFFIX}") if p.is_file() and not p.is_symlink()]
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`replacing`."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON through :func:`replacing`."""
    write_text(path, json.dumps(data, indent=2))


def parse_json(text: str, where: str) -> Any:
    """``text`` read as JSON.

    Raises:
        ValueError: ``text`` is not valid JSON, or nests too deeply to read; the message starts
            with ``where`` (a file and line, a command-line option).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise ValueError(f"{where}: JSON nested too deeply to read") from None


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a file of one per line. A last line cut short (a crash mid-write) is
    left out; a damaged line before it is an error, so that no row is silently dropped.

    Raises:
        ValueError: a line other than the last is not a JSON object (the message names it).
    """
    rows = []
    if path.is_file():
        lines = path.read_text(errors="replace").splitlines()
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                row = None
            if not isinstance(row, dict):
                if n == len(lines):
                    break
                raise ValueError(f"{path}: line {n} of {len(lines)} is not a JSON object ({line[:60]!r}): mend or "
                                 "remove that line")
            rows.append(row)
    return rows


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Write one JSON object per line through :func:`replacing`, as ``rows`` yields them (a generator
    keeps memory flat); creates the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


# -- the run folder's lock ------------------------------------------------------------------------

LOCK_FILE = ".textgym.lock"
"""The lock file in a run folder, holding the writer's process id."""


class RunFolderBusy(OSError):
    """Another live process writes this run folder."""


_held: dict[Path, list[int]] = {}  # folder -> [file descriptor, how many holders in this process]


def acquire_run(folder: str | os.PathLike) -> None:
    """Lock ``folder`` for this process (again, if it holds it already: the holds are counted).

    The lock is the kernel's (``flock``) on ``folder/.textgym.lock``: it ends with the process
    that holds it however that process ends, so the lock of a killed run is taken over.

    Raises:
        RunFolderBusy: another live process holds it (the message names its process id).
    """
    folder = Path(folder).resolve()
    if folder in _held:
        _held[folder][1] += 1
        return
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunFolderBusy(f"{folder} is being written by another textgym process (pid {owner}): wait for it to "
                            "end or stop it, or write to another folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[folder] = [fd, 1]


def release_run(folder: str | os.PathLike) -> None:
    """Give back one hold of :func:`acquire_run`; the last one unlocks the folder."""
    folder = Path(folder).resolve()
    held = _held.get(folder)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _held[folder]
        os.close(held[0])  # closing the file ends the lock


# -- the run folder ---------------------------------------------------------------------------------

RUN_FILES = ("config.json", "metrics.jsonl", "policy.safetensors")
"""The files whose presence says a folder holds a run."""

RUN_OUTPUTS = ("config.json", "metrics.jsonl", "policy.safetensors", "policy.json", "learning_curve.png", "training_state.pt",
               "value_head.safetensors", "hf_model", "value_model", "tokenizer")
"""Everything a run writes in its folder (and TensorBoard's ``events.out.tfevents.*``)."""


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds a run's files (a new run there needs ``--force`` or ``--resume``)."""
    return out.is_dir() and any((out / name).exists() for name in RUN_FILES)


def usable_run_dir(out: Path) -> None:
    """Create ``out`` if needed and check that files can be written there (nothing else is touched).

    Raises:
        NotADirectoryError: ``out`` is a file.
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=out, prefix=".textgym-write-check-")  # a new file: never through a link
    os.close(fd)
    os.unlink(probe)


def clear_run(out: Path) -> None:
    """Remove a previous run's files from ``out`` (``--force``), so no file of it mixes with the new run."""
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for events in out.glob("events.out.tfevents.*"):
        events.unlink()
