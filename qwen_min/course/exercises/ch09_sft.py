"""Checkers for the exercises of notebooks/09_sft.ipynb.

    from qwen_min.course.exercises.ch09_sft import check_assistant_labels, check_trained_share, check_fixed_lora_merge
    check_assistant_labels(my_labels)      # build: my_labels(tok, messages, tools) -> token id on assistant spans, else -100
    check_trained_share(my_prediction)     # predict: my_prediction() -> share of the `add` conversations' targets trained
    check_fixed_lora_merge(my_merge)       # debug: my_merge(weight (out, in), A (r, in), B (out, r), alpha) -> merged
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from qwen_min.course.exercises import compare, judge_prediction, prediction
from qwen_min.model.qwen import IGNORE_INDEX
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tasks.checkable import handwritten, make_examples
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.train.lora import LoRALinear
from qwen_min.train.sft import assistant_spans, encode_chat


@functools.lru_cache(maxsize=1)
def _tokenizer():
    return Tokenizer.from_pretrained(official_tokenizer_dir())


def _package_labels(tok, messages, tools):
    return encode_chat(tok, messages, tools)[1]


def check_assistant_labels(student) -> None:
    """student(tokenizer, messages, tools) -> list of labels, one per token of the rendered conversation."""
    tok = _tokenizer()
    conversations = make_examples(["add", "reverse"], "test", 2, seed=8) + handwritten()
    inputs = [(tok, ex.messages, ex.tools) for ex in conversations]
    compare("assistant_labels", student, _package_labels, inputs,
            hint="an assistant turn is trained up to and including its closing <|im_end|>, and nothing the template "
                 "writes around it; render growing prefixes of the conversation to find where each turn starts and "
                 "ends, and remember tool calls are assistant turns while tool results are not.",
            forbidden=[encode_chat, assistant_spans])


def measured_trained_share(task: str = "add", n: int = 200) -> float:
    """Share of the next-token targets (positions 1..t-1) of `n` training conversations of `task` that are trained,
    with the official tokenizer and the default system prompt."""
    tok = _tokenizer()
    rows = [encode_chat(tok, ex.messages) for ex in make_examples([task], "train", n, seed=0)]
    trained = sum(sum(label != IGNORE_INDEX for label in labels[1:]) for _, labels in rows)
    return trained / sum(len(ids) - 1 for ids, _ in rows)


def check_trained_share(student) -> None:
    """student() -> your prediction (0..1): the share of the targets of the `add` task's training conversations
    (e.g. 'Add 36 and 54.' -> '90', rendered with the official template and tokenizer) that the SFT loss trains."""
    guess = prediction("trained share of `add` conversations", student)
    measured = round(measured_trained_share("add"), 3)
    judge_prediction("trained share of `add` conversations", guess, measured,
                     isinstance(guess, (int, float)) and abs(guess - measured) <= 0.04,
                     "Render one conversation and count its tokens turn by turn: which turn is the longest, "
                     "and is it trained?")


def _merge(weight, A, B, alpha):
    return weight + (alpha / A.shape[0]) * B @ A


def _package_merge(weight, A, B, alpha):
    base = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer = LoRALinear(base, rank=A.shape[0], alpha=alpha)
    with torch.no_grad():
        base.weight.copy_(weight)
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    return layer.merged().weight.detach()


def check_fixed_lora_merge(student) -> None:
    """student(weight (out, in), A (r, in), B (out, r), alpha) -> the merged weight: the notebook's `buggy_merge`, fixed."""
    g = torch.Generator().manual_seed(9)
    inputs = [(torch.randn(o, i, generator=g), torch.randn(r, i, generator=g), torch.randn(o, r, generator=g), alpha)
              for o, i, r, alpha in [(8, 8, 8, 16.0), (4, 6, 1, 1.0), (8, 5, 2, 16.0), (16, 12, 4, 8.0)]]
    compare("fixed_lora_merge", student, _merge, inputs, atol=1e-5,
            hint="the bug hides when the layer is square and the rank equals its width (input 1). Which size does "
                 "the LoRA scaling divide by, and which axis of which matrix holds it?",
            forbidden=[LoRALinear.merged])


PACKAGE_EQUIVALENTS = {
    "check_assistant_labels": [_package_labels, lambda tok, messages, tools: encode_chat(tok, messages, tools)[1]],
    "check_fixed_lora_merge": [_package_merge],
}
