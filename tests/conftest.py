"""Shared fixtures. The expensive references (transformers' tokenizer and model read from
the real GGUF checkpoint) are built once per session and shared by every test that needs them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qwen_min import paths

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    """The default checkpoint, fetched on first use (`make test` fetches it before pytest runs)."""
    from qwen_min.checkpoints.fetch import default_checkpoint

    return default_checkpoint()


@pytest.fixture(scope="session")
def official_tokenizer_dir() -> Path:
    return paths.official_tokenizer_dir()


@pytest.fixture(scope="session")
def hf_tokenizers_official():
    """HF `tokenizers` (Rust) loaded from data/qwen2.5/tokenizer.json: the reference for ids."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(paths.official_tokenizer_dir() / "tokenizer.json"))


@pytest.fixture(scope="session")
def hf_gguf_tokenizer(gguf_path):
    """transformers' tokenizer built from the GGUF metadata (it has no NFC step)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)


@pytest.fixture(scope="session")
def hf_gguf_model(gguf_path):
    """transformers' Qwen2ForCausalLM read from the GGUF checkpoint, fp32 (dequantised by `gguf`): the reference model.
    ~30 s and 2.5 GB: every real-checkpoint test shares this one."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def tiny_corpora(tmp_path_factory) -> Path:
    """A data folder like data/corpora but small: 'prose' (Shakespeare) and 'code' (Python), 30 documents of
    ~600 characters each, cut from the shipped corpora, for fast pretraining tests."""
    import gzip
    import json

    from qwen_min.train.data import read_documents

    folder = tmp_path_factory.mktemp("corpora")
    for name, source in (("prose", "shakespeare"), ("code", "python-stdlib")):
        text = "".join(read_documents(REPO / "data" / "corpora" / source)[:3])
        docs = [{"title": f"{name}{i}", "text": text[i * 600:(i + 1) * 600]} for i in range(30)]
        (folder / name).mkdir()
        with gzip.open(folder / name / "documents.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(d) + "\n" for d in docs)
    return folder


@pytest.fixture(scope="session")
def tiny_sft_model(tmp_path_factory):
    """A tiny Qwen fine-tuned for 150 steps on counting and sorting: right on some samples, wrong on others (~4 s)."""
    folder = tmp_path_factory.mktemp("sft")
    from qwen_min.cli import main
    from qwen_min.tasks import checkable as tasks
    from qwen_min.tokenizer.bpe_training import train_bpe
    from qwen_min.tokenizer.chat_template import render

    tok = train_bpe([render(ex.messages) for ex in tasks.make_examples(["count", "sort"], "train", 300)], vocab_size=300)
    tok.save_pretrained(folder / "tokenizer")
    assert main(["sft", "--size", "tiny", "--tokenizer", str(folder / "tokenizer"), "--out", str(folder / "run"),
                 "--tasks", "count,sort", "--n-train", "300", "--handwritten-repeat", "0", "--batch-size", "16",
                 "--max-steps", "150", "--lr", "3e-3", "--max-len", "96", "--save-every", "150", "--no-eval",
                 "--no-progress", "--seed", "0"]) == 0
    return folder / "run" / "model"
