"""The second official checkpoint, Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M mix), against transformers on the
same file: fp32 logits within 1e-4 on English, Chinese and code, greedy chat replies identical for 32 tokens,
and the architecture of the official 1.5B config. Texts, prompts and the reference generation are those of
test_real_checkpoint.py (the 0.5B).

Memory: each 1.5B model is ~6.2 GB in fp32, so transformers' model computes every reference value first and
is freed before qwen_min's is loaded; run this file on its own on a small machine."""

from __future__ import annotations

import gc

import pytest
import torch
from test_real_checkpoint import CHATS, NEW_TOKENS, TEXTS, hf_greedy_replies

import qwen_min as qm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def path():
    return qm.default_checkpoint("1.5B")


@pytest.fixture(scope="module")
def tok(path):
    return qm.Tokenizer.from_pretrained(path)  # the checkpoint's own tokenizer (the same as the 0.5B's)


@pytest.fixture(scope="module")
def inputs(tok):
    texts = {kind: tok.encode(text) for kind, text in TEXTS.items()}
    chats = [tok.encode(tok.render_chat([{"role": "user", "content": c}], add_generation_prompt=True), allowed_special="all")
             for c in CHATS]
    return texts, chats


@pytest.fixture(scope="module")
def reference(path, inputs):
    """transformers' logits and greedy replies, computed once; its model is freed before ours is loaded."""
    from transformers import AutoModelForCausalLM

    texts, chats = inputs
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = {kind: hf(torch.tensor([ids])).logits for kind, ids in texts.items()}
    replies = hf_greedy_replies(hf, chats)
    del hf
    gc.collect()
    return logits, replies


@pytest.fixture(scope="module")
def model(path, reference):  # depends on `reference` so the two big models are never in memory together
    yield qm.from_pretrained(path)
    gc.collect()


def test_architecture_is_the_official_1_5b(model):
    official = qm.QwenConfig.from_name("1.5B")
    # the GGUF stores output.weight (Q6_K) beside token_embd.weight: loaded untied, one extra vocab x hidden matrix
    assert not model.config.tie_word_embeddings
    assert model.config == qm.QwenConfig.from_name("1.5B", tie_word_embeddings=False)
    assert model.num_parameters() == official.num_parameters() + official.vocab_size * official.hidden_size


def test_logits_match_transformers(model, inputs, reference):
    texts, _ = inputs
    logits, _ = reference
    with torch.no_grad():
        for kind, ids in texts.items():
            assert (model(torch.tensor([ids])) - logits[kind]).abs().max().item() <= 1e-4, kind


def test_greedy_chat_replies_identical(model, inputs, reference):
    _, chats = inputs
    _, replies = reference
    for prompt, want in zip(chats, replies):
        assert qm.generate(model, prompt, max_new_tokens=NEW_TOKENS) == want
