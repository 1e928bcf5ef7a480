"""Checkers for the exercises of notebooks/08c_long_context.ipynb (references: reference/ch08c_long_context.py).

    from qwen_min.course.exercises.ch08c_long_context import check_dca_distances, check_loss_at_4x, check_fixed_merge
    check_dca_distances(my_dca_distances)   # build: my_dca_distances(n, chunk_size, local_size) -> (n, n) distances
    check_loss_at_4x(my_prediction)         # predict: my_prediction() -> perplexity at 4x / at 1x, no scaling
    check_fixed_merge(my_merge)             # debug: my_merge((out_x, lse_x), (out_y, lse_y)) -> (out, lse), bug fixed
"""

from __future__ import annotations

import random

import torch

from qwen_min.course.exercises import compare, judge_prediction, prediction, seed
from qwen_min.course.exercises.reference import ch08c_long_context as ref
from qwen_min.model.dual_chunk import dca_distances, dca_query_positions, merge_partials, partial_attention


def check_dca_distances(student) -> None:
    """student(n, chunk_size, local_size) -> LongTensor (n, n): entry [i, j] is the relative distance (query position
    minus key position) Dual Chunk Attention gives query i and key j for j <= i, in vLLM's convention (successive-chunk
    query position capped at chunk_size, inter-chunk at min(2 cl - 1, chunk_size)), and -1 for j > i."""
    rng = random.Random(seed(0))
    inputs = [(12, 10, 4), (7, 10, 4), (40, 8, 3), (64, 16, 4), (33, 9, 1)]
    inputs += [(rng.randrange(8, 60), chunk, rng.randrange(1, chunk - 1)) for chunk in (rng.randrange(4, 20) for _ in range(2))]
    compare("dca_distances", student, ref.dca_distance_table, inputs, atol=0,
            hint="cl = chunk_size - local_size; a key sits at j % cl whatever the query; the query's position depends "
                 "on how many chunks apart the two tokens are (0, 1, or 2 and more). Print row 10 of (12, 10, 4).",
            forbidden=[dca_distances, dca_query_positions])


def check_loss_at_4x(student) -> None:
    """student() -> float: your prediction of perplexity(positions 3L..4L) / perplexity(positions 0..L) on held-out
    text rows of 4 L tokens, for a small model trained on Shakespeare at L = 64 tokens (`reference.trained_at_64_tokens`) and
    run with no scaling at all. Within a factor 1.5 counts as right."""
    guess = prediction("perplexity at 4x", student)
    measured = round(ref.measured_ratio_at_4x(*ref.trained_at_64_tokens()), 3)
    close = isinstance(guess, (int, float)) and guess > 0 and max(guess / measured, measured / guess) <= 1.5
    judge_prediction("perplexity at 4x", guess, measured, close,
                     "RoPE scores depend on distances only. Which distances does a token at 3L-4L meet that no token "
                     "met in training, and how much of ordinary text's next token depends on those far tokens? "
                     "Then compare with the passkey, which depends on nothing else.")


def _partials(at: int, scale: float, empty: str = "") -> tuple:
    """Two (output, log-sum-exp) partial attentions of the same queries over two disjoint sets of keys."""
    g = torch.Generator().manual_seed(at)
    q = torch.randn(2, 4, 5, 16, generator=g) * scale  # large scale: logits in the hundreds
    k, v = torch.randn(2, 2, 11, 16, generator=g), torch.randn(2, 2, 11, 16, generator=g)
    sees = torch.ones(1, 1, 5, 11, dtype=torch.bool)
    if empty:  # one side sees no key at all for the first two queries (a case with no keys: lse = -inf)
        sees[..., :2, slice(None, 6) if empty == "x" else slice(6, None)] = False
    x = partial_attention(q, k[:, :, :6], v[:, :, :6], sees[..., :6])
    y = partial_attention(q, k[:, :, 6:], v[:, :, 6:], sees[..., 6:])
    return x, y


def check_fixed_merge(student) -> None:
    """student(x, y) -> (out, lse): x and y are (output (b, h, B, d), log-sum-exp (b, h, B, 1)) of one softmax attention
    over two disjoint sets of keys; return the attention over their union and its log-sum-exp: the notebook's
    `buggy_merge`, fixed. A side with no key has log-sum-exp -inf and output 0."""
    inputs = [_partials(seed(0), 1.0), _partials(seed(1), 30.0), _partials(seed(2), 1.0, empty="x"),
              _partials(seed(3), 30.0, empty="y")]

    def as_tensor(pair):
        out, lse = pair
        return torch.cat([out.flatten(), torch.where(torch.isfinite(lse), lse, torch.full_like(lse, -1e30)).flatten()])

    compare("fixed_merge", lambda x, y: as_tensor(student(x, y)), lambda x, y: as_tensor(ref.merged(x, y)), inputs,
            atol=1e-4, hint="right on small scores, wrong on large ones: what is exp(300) in float32? Subtract the "
                            "largest log-sum-exp first (and think about a side that saw no key).",
            forbidden=[merge_partials])


PACKAGE_EQUIVALENTS = {
    "check_dca_distances": [lambda n, c, l: dca_distances(n, c, l)],
    "check_fixed_merge": [lambda x, y: merge_partials(x, y)],
}
