"""Checkers for the exercises of notebooks/08c_long_context.ipynb.

    from qwen_min.course.exercises.ch08c_long_context import check_dca_distances, check_loss_at_4x, check_fixed_merge
    check_dca_distances(my_dca_distances)   # build: my_dca_distances(n, chunk_size, local_size) -> (n, n) distances
    check_loss_at_4x(my_prediction)         # predict: my_prediction() -> perplexity at 4x / at 1x, no scaling
    check_fixed_merge(my_merge)             # debug: my_merge((out_x, lse_x), (out_y, lse_y)) -> (out, lse), bug fixed
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import compare, judge_prediction, prediction
from qwen_min.eval.position_loss import loss_by_position
from qwen_min.model.dual_chunk import dca_distances, dca_query_positions, merge_partials, partial_attention
from qwen_min.model.qwen import Qwen
from qwen_min.paths import data_dir
from qwen_min.tokenizer.bpe_training import train_bpe
from qwen_min.train.data import read_documents


def check_dca_distances(student) -> None:
    """student(n, chunk_size, local_size) -> LongTensor (n, n): entry [i, j] is the relative distance (query position
    minus key position) Dual Chunk Attention gives query i and key j for j <= i, in vLLM's convention (successive-chunk
    query position capped at chunk_size, inter-chunk at min(2 cl - 1, chunk_size)), and -1 for j > i."""
    inputs = [(12, 10, 4), (7, 10, 4), (40, 8, 3), (64, 16, 4), (33, 9, 1)]
    compare("dca_distances", student, dca_distances, inputs, atol=0,
            hint="cl = chunk_size - local_size; a key sits at j % cl whatever the query; the query's position depends "
                 "on how many chunks apart the two tokens are (0, 1, or 2 and more). Print row 10 of (12, 10, 4).",
            forbidden=[dca_distances, dca_query_positions])


def measured_ratio_at_4x(model, rows: torch.Tensor) -> float:
    """Perplexity over the last quarter of rows (n, 4 L) divided by the perplexity over the first quarter, for a model
    trained at L = its max_position_embeddings, run without any position extension (a copy; the model is untouched)."""
    train_len = model.config.max_position_embeddings
    if rows.shape[1] != 4 * train_len:
        raise ValueError(f"rows must be (n, 4 x {train_len}) token ids, got shape {tuple(rows.shape)}")
    plain = copy.deepcopy(model)
    plain.set_context_extension(None, None, max_position_embeddings=4 * train_len)
    per_position = loss_by_position(plain, rows)  # (4 L - 1,)
    return math.exp(per_position[-train_len:].mean().item() - per_position[:train_len].mean().item())


TRAIN_LEN = 64  # the exercise's model is trained at 64 tokens


@functools.cache
def trained_at_64_tokens() -> tuple[Qwen, torch.Tensor]:
    """(a small Qwen trained on Shakespeare at 64 tokens, 6 held-out rows of 256 tokens): the exercise's setting, built
    here (seeded, ~10 s on 2 cores) so that it needs nothing from the notebook."""
    plays = read_documents(data_dir("corpora", "shakespeare"))[:4]
    tok = train_bpe([doc[:20000] for doc in plays], 384)
    ids = np.asarray(tok.encode("\n".join(doc[:60000] for doc in plays)), dtype=np.int64)
    held_out, train = torch.from_numpy(ids[-6 * 4 * TRAIN_LEN:]), torch.from_numpy(ids[:-6 * 4 * TRAIN_LEN])
    torch.manual_seed(0)
    model = Qwen(QwenConfig.from_name("tiny", vocab_size=tok.vocab_size, max_position_embeddings=TRAIN_LEN,
                                      rope_theta=1e4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        starts = torch.randint(0, len(train) - TRAIN_LEN, (16,), generator=g)
        batch = torch.stack([train[i:i + TRAIN_LEN] for i in starts.tolist()])  # (16, 64)
        _, loss = model(batch, labels=batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), held_out.reshape(6, 4 * TRAIN_LEN)


def check_loss_at_4x(student) -> None:
    """student() -> float: your prediction of perplexity(positions 3L..4L) / perplexity(positions 0..L) on held-out
    text rows of 4 L tokens, for a small model trained on Shakespeare at L = 64 tokens (`trained_at_64_tokens`) and
    run with no scaling at all. Within a factor 1.5 counts as right."""
    guess = prediction("perplexity at 4x", student)
    measured = round(measured_ratio_at_4x(*trained_at_64_tokens()), 3)
    close = isinstance(guess, (int, float)) and guess > 0 and max(guess / measured, measured / guess) <= 1.5
    judge_prediction("perplexity at 4x", guess, measured, close,
                     "RoPE scores depend on distances only. Which distances does a token at 3L-4L meet that no token "
                     "met in training, and how much of ordinary text's next token depends on those far tokens? "
                     "Then compare with the passkey, which depends on nothing else.")


def _partials(seed: int, scale: float, empty: str = "") -> tuple:
    """Two (output, log-sum-exp) partial attentions of the same queries over two disjoint sets of keys."""
    g = torch.Generator().manual_seed(seed)
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
    inputs = [_partials(0, 1.0), _partials(1, 30.0), _partials(2, 1.0, empty="x"), _partials(3, 30.0, empty="y")]

    def as_tensor(pair):
        out, lse = pair
        return torch.cat([out.flatten(), torch.where(torch.isfinite(lse), lse, torch.full_like(lse, -1e30)).flatten()])

    compare("fixed_merge", lambda x, y: as_tensor(student(x, y)), lambda x, y: as_tensor(merge_partials(x, y)), inputs,
            atol=1e-4, hint="right on small scores, wrong on large ones: what is exp(300) in float32? Subtract the "
                            "largest log-sum-exp first (and think about a side that saw no key).",
            forbidden=[merge_partials])


PACKAGE_EQUIVALENTS = {
    "check_dca_distances": [lambda n, c, l: dca_distances(n, c, l)],
    "check_fixed_merge": [lambda x, y: merge_partials(x, y)],
}
