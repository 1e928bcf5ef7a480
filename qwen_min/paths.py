"""Where the repository's shipped data lives: `data/` beside the package.

Design choice: one function finds `data/`, and every module asks it, so the rule lives in one
place. The package reads `data/` from a checkout (an editable install, `pip install -e .`, as the
Makefile does); a plain wheel ships no data, and asking for it then says so in one line.
Set QWEN_MIN_DATA to point at a copy of `data/` elsewhere.
"""

from __future__ import annotations

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
