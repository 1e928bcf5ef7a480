"""Reference answers and the shared setting of notebooks/08_pretraining.ipynb's exercises
(see __init__.py)."""

from __future__ import annotations

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises.watch import answer
from qwen_min.model.qwen import Qwen, causal_lm_loss

VOCAB = 50


def tiny_model(seed: int) -> Qwen:
    torch.manual_seed(seed)
    return Qwen(QwenConfig.from_name("tiny", vocab_size=VOCAB))


def micro_batches(seed: int) -> list[dict[str, torch.Tensor]]:
    """Micro-batches of different lengths whose rows count different numbers of targets (-100 elsewhere)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for rows, t in [(2, 12), (3, 7), (1, 20)]:
        ids = torch.randint(0, VOCAB, (rows, t), generator=g)
        labels = ids.clone()
        labels[torch.rand(rows, t, generator=g) < 0.4] = -100  # masked targets, as in SFT
        batches.append({"input_ids": ids, "labels": labels})
    return batches


def flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in model.parameters()])


@answer("ch08_pretraining.check_token_weighted_accumulation")
def one_big_batch(model, micro_batches) -> None:
    """Every micro-batch's rows right-padded into one batch, one backward of the mean over its targets."""
    t = max(b["input_ids"].shape[1] for b in micro_batches)
    ids = torch.cat([torch.nn.functional.pad(b["input_ids"], (0, t - b["input_ids"].shape[1])) for b in micro_batches])
    labels = torch.cat([torch.nn.functional.pad(b["labels"], (0, t - b["labels"].shape[1]), value=-100)
                        for b in micro_batches])
    causal_lm_loss(model(ids), labels).backward()  # right padding changes no logit of a real token (causal)


@answer("ch08_pretraining.check_fixed_train")
def fixed_train(model, batches, lr):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for ids in batches:
        _, loss = model(ids, labels=ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return torch.tensor(losses)
