"""Checkers for the exercises of notebook 09_sft.

    from qwen_min.course.exercises.ch09_sft import check_assistant_labels, check_masked_loss, check_lora_merge
    check_assistant_labels(my_labels)      # my_labels(tok, messages, tools) -> labels: token id on assistant spans, else -100
    check_masked_loss(my_loss)             # my_loss(logits (b, t, v), labels (b, t)) -> mean CE over labelled next tokens
    check_lora_merge(my_merge)             # my_merge(weight (out, in), A (r, in), B (out, r), alpha) -> merged weight
"""

from __future__ import annotations

import functools

import torch

from qwen_min.course.exercises import compare
from qwen_min.model.qwen import causal_lm_loss
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tasks.checkable import handwritten, make_examples
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.train.sft import encode_chat


@functools.lru_cache(maxsize=1)
def _tokenizer():
    return Tokenizer.from_pretrained(official_tokenizer_dir())


def check_assistant_labels(student) -> None:
    """student(tokenizer, messages, tools) -> list of labels, one per token of the rendered conversation."""
    tok = _tokenizer()
    conversations = make_examples(["add", "reverse"], "test", 2, seed=8) + handwritten()
    inputs = [(tok, ex.messages, ex.tools) for ex in conversations]
    compare("assistant_labels", student, lambda t, m, tools: encode_chat(t, m, tools)[1], inputs,
            hint="train each assistant turn's content and its <|im_end|>, not the '\\n' after it, not "
                 "'<|im_start|>assistant\\n'; render prefixes of the conversation to find where each turn starts and ends, "
                 "and remember tool calls are assistant turns while tool results are not.")


def check_masked_loss(student) -> None:
    """student(logits (b, t, v), labels (b, t) with -100 where nothing is learned) -> scalar loss."""
    g = torch.Generator().manual_seed(8)
    inputs = []
    for b, t, v in [(1, 5, 7), (2, 9, 11), (3, 6, 50)]:
        logits = torch.randn(b, t, v, generator=g) * 3
        labels = torch.randint(0, v, (b, t), generator=g)
        labels[torch.rand(b, t, generator=g) < 0.5] = -100
        labels[0, -1] = 3  # a label on the last position is never a target: nothing comes after it
        inputs.append((logits, labels))
    compare("masked_loss", student, causal_lm_loss, inputs, atol=1e-5,
            hint="logits[:, i] predicts labels[:, i + 1] (shift by one); average only over targets that are not -100.")


def check_lora_merge(student) -> None:
    """student(weight (out, in), A (r, in), B (out, r), alpha) -> weight + (alpha / r) * B @ A."""
    g = torch.Generator().manual_seed(9)
    inputs = [(torch.randn(o, i, generator=g), torch.randn(r, i, generator=g), torch.randn(o, r, generator=g), alpha)
              for o, i, r, alpha in [(4, 6, 1, 1.0), (8, 5, 2, 16.0), (16, 12, 4, 8.0)]]
    compare("lora_merge", student, lambda w, a, b, alpha: w + (alpha / a.shape[0]) * b @ a, inputs, atol=1e-5,
            hint="the update is B @ A (shape (out, in)), scaled by alpha / rank where rank = A.shape[0].")
