"""The second official checkpoint, Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M mix), against transformers'
Qwen2ForCausalLM on the same weights: fp32 logits within 1e-4 on English, Chinese and code, greedy chat replies
identical for 32 tokens, and the architecture of the official 1.5B config. Texts, prompts and the reference
generation are those of test_real_checkpoint.py (the 0.5B).

transformers' model holds the very tensors qwen_min loaded (`transformers_twin`, no copy: ~6.2 GB once, not twice,
and no second 90-second GGUF load). What that leaves to other tests is checked there: every tensor of this file
decodes bit for bit as `gguf.quants.dequantize` decodes it (tests/gguf/test_blocks.py), which is what transformers' GGUF
loader calls, and qwen_min maps qwen2 tensor names as that loader does (test_real_checkpoint.py, on the 0.5B)."""

from __future__ import annotations

import gc

import pytest
import torch

import qwen_min as qm
from tests.test_real_checkpoint import CHATS, NEW_TOKENS, TEXTS, hf_greedy_replies

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
def model(path):
    yield qm.from_pretrained(path)
    gc.collect()


@pytest.fixture(scope="module")
def reference(model, inputs):
    """transformers' logits and greedy replies on qwen_min's tensors, computed once."""
    from qwen_min.checkpoints.transformers_twin import transformers_twin

    texts, chats = inputs
    hf = transformers_twin(model)
    with torch.no_grad():
        logits = {kind: hf(torch.tensor([ids])).logits for kind, ids in texts.items()}
    replies = hf_greedy_replies(hf, chats)
    del hf
    gc.collect()
    return logits, replies


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
