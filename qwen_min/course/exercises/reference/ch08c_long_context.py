"""Reference answers, the measurement and its setting of notebooks/08c_long_context.ipynb's exercises
(see __init__.py)."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises.watch import answer
from qwen_min.eval.position_loss import loss_by_position
from qwen_min.model.dual_chunk import dca_distances, merge_partials
from qwen_min.model.qwen import Qwen
from qwen_min.paths import data_dir
from qwen_min.tokenizer.bpe_training import train_bpe
from qwen_min.train.data import read_documents

TRAIN_LEN = 64  # the exercise's model is trained at 64 tokens


@answer("ch08c_long_context.check_dca_distances")
def dca_distance_table(n, chunk_size, local_size):
    return dca_distances(n, chunk_size, local_size)


@answer("ch08c_long_context.check_fixed_merge")
def merged(x, y):
    return merge_partials(x, y)


@answer("ch08c_long_context.check_loss_at_4x")
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
