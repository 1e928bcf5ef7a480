"""The real Qwen2.5-Coder-0.5B-Instruct checkpoint (GGUF, Q4_K_M mix) against transformers on the same weights:
bit-identical dequantisation, fp32 logits within 1e-4 on English, Chinese and code, and greedy chat replies
identical token for token, both from the GGUF and from the Hugging Face layout transformers writes.

One transformers model (the session fixture `hf_gguf_model`) and one qwen_min model serve every test."""

from __future__ import annotations

import pytest
import torch

import qwen_min as qm
from qwen_min.generation import QWEN_STOP_IDS

pytestmark = pytest.mark.slow

TEXTS = {
    "english": "The quick brown fox jumps over the lazy dog. Language models predict the next token from the ones before it.",
    "chinese": "床前明月光，疑是地上霜。举头望明月，低头思故乡。通义千问是阿里云研发的大语言模型。",
    "code": "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
}
CHATS = [  # requests this model answers at length (asked a bare question, it often just rephrases it and stops)
    "Write a Python function that reverses a string.",
    "详细解释一下Python中的装饰器是什么，并给出一个完整的代码例子。",
    "Write a SQL query that counts the orders of each customer.",
]
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def model(gguf_path):
    return qm.from_pretrained(gguf_path)


@pytest.fixture(scope="module")
def tok(official_tokenizer_dir):
    return qm.Tokenizer.from_pretrained(official_tokenizer_dir)


@pytest.fixture(scope="module")
def chat_prompts(tok):
    return [tok.encode(tok.render_chat([{"role": "user", "content": c}], add_generation_prompt=True), allowed_special="all")
            for c in CHATS]


def hf_greedy_replies(hf_model, prompts) -> list[list[int]]:
    """transformers' greedy continuations (stop token stripped, as qm.generate returns them); also used for the 1.5B."""
    replies = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        with torch.no_grad():
            out = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False,
                                    eos_token_id=list(QWEN_STOP_IDS), pad_token_id=151643)
        reply = out[0, len(prompt):].tolist()
        replies.append([t for t in reply if t not in QWEN_STOP_IDS])
    assert all(len(r) == NEW_TOKENS for r in replies)  # long enough answers: 32 tokens compared each
    return replies


@pytest.fixture(scope="module")
def hf_replies(hf_gguf_model, chat_prompts):
    return hf_greedy_replies(hf_gguf_model, chat_prompts)


def _max_logit_diff(model, hf, ids):
    with torch.no_grad():
        return (model(ids) - hf(ids).logits).abs().max().item()


def test_dequantised_weights_bit_identical(model, hf_gguf_model):
    ours, theirs = model.state_dict(), hf_gguf_model.state_dict()
    assert set(ours) == set(theirs)
    assert not model.config.tie_word_embeddings  # output.weight (Q8_0) is kept beside token_embd.weight (Q5_0)
    for name, t in ours.items():
        assert torch.equal(t, theirs[name]), name


def test_logits_match_transformers(model, hf_gguf_model, tok):
    for kind, text in TEXTS.items():
        ids = torch.tensor([tok.encode(text)])
        assert _max_logit_diff(model, hf_gguf_model, ids) <= 1e-4, kind


def test_greedy_chat_replies_identical(model, chat_prompts, hf_replies):
    for prompt, want in zip(chat_prompts, hf_replies):
        assert qm.generate(model, prompt, max_new_tokens=NEW_TOKENS) == want


def test_hf_layout_copy(hf_gguf_model, tmp_path_factory, tok, chat_prompts, hf_replies, model):
    folder = tmp_path_factory.mktemp("qwen2.5-coder-0.5b-instruct-hf")
    hf_quantizer = hf_gguf_model.hf_quantizer
    hf_gguf_model.hf_quantizer = None  # transformers flags GGUF-loaded models as not serialisable; the weights are plain fp32
    try:
        hf_gguf_model.save_pretrained(folder)
    finally:
        hf_gguf_model.hf_quantizer = hf_quantizer
    copy = qm.from_pretrained(folder)
    for name, t in copy.state_dict().items():
        assert torch.equal(t, model.state_dict()[name]), name
    for kind, text in TEXTS.items():
        assert _max_logit_diff(copy, hf_gguf_model, torch.tensor([tok.encode(text)])) <= 1e-4, kind
    for prompt, want in zip(chat_prompts, hf_replies):
        assert qm.generate(copy, prompt, max_new_tokens=NEW_TOKENS) == want
