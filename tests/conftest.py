"""Shared fixtures. The expensive references (transformers' tokenizer and model read from
the real GGUF checkpoint) are built once per session and shared by every test that needs them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_TOKENIZER_DIR = REPO / "data" / "qwen2.5"


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    """The default checkpoint, fetched on first use (`make test` fetches it before pytest runs)."""
    from qwen_min.fetch import default_checkpoint

    return default_checkpoint()


@pytest.fixture(scope="session")
def official_tokenizer_dir() -> Path:
    return OFFICIAL_TOKENIZER_DIR


@pytest.fixture(scope="session")
def hf_tokenizers_official():
    """HF `tokenizers` (Rust) loaded from data/qwen2.5/tokenizer.json: the reference for ids."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(OFFICIAL_TOKENIZER_DIR / "tokenizer.json"))


@pytest.fixture(scope="session")
def hf_gguf_tokenizer(gguf_path):
    """transformers' tokenizer built from the GGUF metadata (it has no NFC step)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
