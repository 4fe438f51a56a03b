"""Files textgym writes: each one atomically (a temporary file in the same folder, moved into place),
so a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically: a temporary file in the same folder moved into place, so a link
    at ``path`` is replaced, never written through, and a crash leaves the old file whole."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        f.write(text)
    os.replace(f.name, path)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (see :func:`write_text`)."""
    write_text(path, json.dumps(data, indent=2))


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a file of one per line (a last line cut short by a crash is skipped)."""
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write one JSON object per line, atomically; creates the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    os.replace(f.name, path)
