"""The chapter 11 exercise checker of the aggregation weights accepts the right answer and rejects wrong ones."""

import pytest

from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch11_grpo import check_token_weights


def _weights(mask, aggregation, max_completion_length):
    mask = mask.double()
    if aggregation == "sequence":
        return mask / mask.sum(-1, keepdim=True).clamp(min=1) / len(mask)
    if aggregation == "token":
        return mask / mask.sum().clamp(min=1)
    return mask / (len(mask) * max_completion_length)


def test_token_weights_checker():
    check_token_weights(_weights)
    with pytest.raises(ExerciseFailed, match="token_weights: wrong"):  # DAPO's weights for every aggregation
        check_token_weights(lambda mask, aggregation, length: _weights(mask, "token", length))
    with pytest.raises(ExerciseFailed, match="token_weights: wrong"):  # Dr. GRPO over the padded width, not the max
        check_token_weights(lambda mask, aggregation, length: _weights(mask, aggregation, mask.shape[1]))
