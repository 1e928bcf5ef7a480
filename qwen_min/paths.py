"""Where the repository's shipped data lives (`data/` beside the package), and reading files with one clear error.

Design choice: one function finds `data/`, and every module asks it, so the rule lives in one
place. The package reads `data/` from a checkout (an editable install, `pip install -e .`, as the
Makefile does); a plain wheel ships no data, and asking for it then says so in one line.
Set QWEN_MIN_DATA to point at a copy of `data/` elsewhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


def data_dir(*parts: str) -> Path:
    """The path of `data/<parts>`; a clear FileNotFoundError when this install has no `data/`.

    >>> data_dir("qwen2.5").name
    'qwen2.5'
    """
    root = Path(os.environ.get("QWEN_MIN_DATA") or REPO_DATA)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: qwen_min's data/ folder is not there; install from a checkout with "
                                f"`pip install -e .` (as `make env` does) or set QWEN_MIN_DATA to a copy of data/")
    return root.joinpath(*parts)


def official_tokenizer_dir() -> Path:
    """The official Qwen2.5 tokenizer files shipped in `data/qwen2.5` (tokenizer.json, vocab.json, merges.txt, ...)."""
    return data_dir("qwen2.5")


def read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of `path`; a missing or undecodable file is one clear error naming what it should hold.

    >>> read_text("/no/such/file.json", "a test file")
    Traceback (most recent call last):
    FileNotFoundError: /no/such/file.json: missing (a test file)
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing ({what})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json(path: str | os.PathLike, what: str, error: type[Exception] = ValueError):
    """The JSON value in `path`; invalid JSON raises `error` with one line naming the file."""
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e})") from None


def read_jsonl(path: str | os.PathLike, what: str) -> list[tuple[int, object]]:
    """(line number, value) of each non-blank line of a JSON-lines file; a bad line is one error naming it.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
    ...     _ = f.write('{"a": 1}\\n\\n[2]\\n')
    >>> read_jsonl(f.name, "a test file")
    [(1, {'a': 1}), (3, [2])]
    """
    rows = []
    for n, line in enumerate(read_text(path, what).splitlines(), 1):
        if line.strip():
            try:
                rows.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e})") from None
    return rows
