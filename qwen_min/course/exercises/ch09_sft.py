"""Checkers for the exercises of notebooks/09_sft.ipynb (references: reference/ch09_sft.py).

    from qwen_min.course.exercises.ch09_sft import check_assistant_labels, check_trained_share, check_fixed_lora_merge
    check_assistant_labels(my_labels)      # build: my_labels(tok, messages, tools) -> token id on assistant spans, else -100
    check_trained_share(my_prediction)     # predict: my_prediction() -> share of the `add` conversations' targets trained
    check_fixed_lora_merge(my_merge)       # debug: my_merge(weight (out, in), A (r, in), B (out, r), alpha) -> merged
    check_lora_layer(my_lora)              # build: my_lora(x, base nn.Linear, A, B, alpha) -> (output, merged nn.Linear)
"""

from __future__ import annotations

import torch
from torch import nn

from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch09_sft as ref
from qwen_min.model.lora import LoRALinear, merge_lora
from qwen_min.tasks.checkable import handwritten, make_examples
from qwen_min.train.sft import assistant_spans, encode_chat


def check_assistant_labels(student) -> None:
    """student(tokenizer, messages, tools) -> list of labels, one per token of the rendered conversation."""
    tok = ref.official_tokenizer()
    conversations = make_examples(["add", "reverse"], "test", 2, seed=seed(8)) + handwritten()
    inputs = [(tok, ex.messages, ex.tools) for ex in conversations]
    compare("assistant_labels", student, ref.assistant_labels, inputs,
            hint="an assistant turn is trained up to and including its closing <|im_end|>, and nothing the template "
                 "writes around it; render growing prefixes of the conversation to find where each turn starts and "
                 "ends, and remember tool calls are assistant turns while tool results are not.",
            forbidden=[encode_chat, assistant_spans])


def check_trained_share(student) -> None:
    """student() -> your prediction (0..1): the share of the targets of the `add` task's training conversations
    (e.g. 'Add 36 and 54.' -> '90', rendered with the official template and tokenizer) that the SFT loss trains."""
    guess = prediction("trained share of `add` conversations", student)
    measured = round(ref.measured_trained_share("add"), 3)
    judge_prediction("trained share of `add` conversations", guess, measured,
                     isinstance(guess, (int, float)) and abs(guess - measured) <= 0.04,
                     "Render one conversation and count its tokens turn by turn: which turn is the longest, "
                     "and is it trained?")


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
    g = torch.Generator().manual_seed(seed(9))
    inputs = [(torch.randn(o, i, generator=g), torch.randn(r, i, generator=g), torch.randn(o, r, generator=g), alpha)
              for o, i, r, alpha in [(8, 8, 8, 16.0), (4, 6, 1, 1.0), (8, 5, 2, 16.0), (16, 12, 4, 8.0)]]
    compare("fixed_lora_merge", student, ref.lora_merge, inputs, atol=1e-5,
            hint="the bug hides when the layer is square and the rank equals its width (input 1). Which size does "
                 "the LoRA scaling divide by, and which axis of which matrix holds it?",
            forbidden=[LoRALinear.merged])


def _lora_run(student, at: int, rank: int, alpha: float, bias: bool) -> dict:
    """student(x, base, A, B, alpha) on a seeded frozen nn.Linear (12 -> 8), A and B: its output and merged layer."""
    g = torch.Generator().manual_seed(at)
    base = nn.Linear(12, 8, bias=bias).requires_grad_(False)
    with torch.no_grad():
        base.weight.copy_(torch.randn(8, 12, generator=g))
        if bias:
            base.bias.copy_(torch.randn(8, generator=g))
    x = torch.randn(3, 5, 12, generator=g)                                  # (batch, tokens, in)
    A, B = torch.randn(rank, 12, generator=g), torch.randn(8, rank, generator=g)
    with torch.no_grad():
        output, merged = student(x, base, A, B, alpha)
        return {"output": output, "merged weight": merged.weight.detach(),
                "merged bias": merged.bias.detach() if merged.bias is not None else None, "merged output": merged(x)}


def check_lora_layer(student) -> None:
    """student(x (..., in), base nn.Linear, A (r, in), B (out, r), alpha) -> (the LoRA layer's output (..., out), a
    plain nn.Linear holding the merged weight and the base's bias), compared with qwen_min.model.lora.LoRALinear."""
    g = torch.Generator().manual_seed(seed(90))
    inputs = [(int(torch.randint(0, 10_000, (1,), generator=g)), rank, alpha, bias)
              for rank, alpha, bias in [(4, 8.0, False), (2, 16.0, True), (1, 1.0, True)]]
    compare("lora_layer", lambda *args: _lora_run(student, *args), lambda *args: _lora_run(ref.lora_layer, *args),
            inputs, atol=1e-5,
            hint="the update is x A^T B^T, added to the base output and scaled by alpha / rank (the rank is A's first "
                 "dimension); the merged layer holds W + (alpha / rank) B A and keeps the base's bias.",
            forbidden=[LoRALinear.forward, LoRALinear.merged, merge_lora])


PACKAGE_EQUIVALENTS = {
    "check_assistant_labels": [lambda tok, messages, tools: encode_chat(tok, messages, tools)[1]],
    "check_fixed_lora_merge": [_package_merge],
    "check_lora_layer": [ref.lora_layer],
}
