"""The chapter 9 exercise checkers accept right answers and reject plausible wrong ones and the package's own."""

import pytest
import torch

from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch09_sft import (
    PACKAGE_EQUIVALENTS,
    check_assistant_labels,
    check_fixed_lora_merge,
    check_lora_layer,
    check_trained_share,
)
from qwen_min.course.exercises.reference.ch09_sft import measured_trained_share
from qwen_min.model.qwen import IGNORE_INDEX


def _labels(tok, messages, tools, newline=False):
    """Assistant labels from rendered prefixes, written without the package; `newline`: also train the '\\n' after."""
    text = tok.render_chat(messages, tools)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            start = len(tok.render_chat(messages[:i], tools, add_generation_prompt=True))
            end = len(tok.render_chat(messages[:i + 1], tools)) - (0 if newline else 1)
            spans.append((len(text[:start].encode()), len(text[:end].encode())))
    labels, offset = [], 0
    for t in tok.encode(text, allowed_special="all"):
        labels.append(t if any(a <= offset < b for a, b in spans) else IGNORE_INDEX)
        offset += len(tok.token_bytes(t))
    return labels


def test_assistant_labels_checker():
    check_assistant_labels(_labels)
    with pytest.raises(ExerciseFailed, match="assistant_labels: wrong"):
        check_assistant_labels(lambda tok, messages, tools: _labels(tok, messages, tools, newline=True))


def test_trained_share_checker():
    measured = measured_trained_share("add")
    assert 0.0 < measured < 0.2  # the default system prompt dominates a short conversation
    check_trained_share(lambda: round(measured, 2))
    with pytest.raises(ExerciseFailed, match="you predicted"):
        check_trained_share(lambda: 0.5)


def test_fixed_lora_merge_checker():
    check_fixed_lora_merge(lambda w, a, b, alpha: w + (alpha / a.shape[0]) * b @ a)
    with pytest.raises(ExerciseFailed, match="fixed_lora_merge: wrong on input 2"):  # the planted bug
        check_fixed_lora_merge(lambda w, a, b, alpha: w + (alpha / b.shape[0]) * b @ a)


def _lora(x, base, A, B, alpha, scale_by_rank=True, keep_bias=True):
    scale = alpha / A.shape[0] if scale_by_rank else alpha
    merged = torch.nn.Linear(base.in_features, base.out_features, bias=keep_bias and base.bias is not None)
    with torch.no_grad():
        merged.weight.copy_(base.weight + scale * B @ A)
        if merged.bias is not None:
            merged.bias.copy_(base.bias)
    return base(x) + scale * (x @ A.T) @ B.T, merged


def test_lora_layer_checker():
    check_lora_layer(_lora)
    with pytest.raises(ExerciseFailed, match="lora_layer: wrong"):  # scaled by alpha, not alpha / rank
        check_lora_layer(lambda *args: _lora(*args, scale_by_rank=False))
    with pytest.raises(ExerciseFailed, match="lora_layer: wrong"):  # the merged layer drops the bias
        check_lora_layer(lambda *args: _lora(*args, keep_bias=False))


@pytest.mark.parametrize("checker, answer", [(name, a) for name, answers in PACKAGE_EQUIVALENTS.items() for a in answers])
def test_checkers_reject_the_package(checker, answer):
    with pytest.raises(ExerciseFailed, match="calls the package's own"):
        globals()[checker](answer)
