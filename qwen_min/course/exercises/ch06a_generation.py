"""Checkers for the exercises of notebook 06a_generation (references: reference/ch06a_generation.py).

    from qwen_min.course.exercises import ch06a_generation as ex
    ex.check_top_p(my_top_p)              # build: my_top_p(logits (b, vocab), top_p) -> logits, removed tokens at -inf
    ex.check_greedy_decode(my_decode)     # debug: my_decode(model, prompt_ids, n) -> n new ids, with a KVCache;
                                          #        ex.buggy_greedy_decode holds the planted bug

References: `qwen_min.generation.process_logits` and `qwen_min.generate` (greedy, no stop token).
"""

from __future__ import annotations

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import compare, seed
from qwen_min.course.exercises.ch06_checkpoint import as_float_tensor
from qwen_min.course.exercises.reference import ch06a_generation as ref
from qwen_min.generation import generate, process_logits
from qwen_min.model.attention import KVCache
from qwen_min.model.qwen import Qwen


def check_top_p(student) -> None:
    """student(logits (b, vocab), top_p) -> logits with the tokens outside the nucleus at -inf."""
    g = torch.Generator().manual_seed(seed(6))
    cases = [(1, 10, 1.0, 0.5), (3, 100, 3.0, 0.8), (2, 1000, 0.5, 0.95)]  # (batch, vocab, logit scale, top_p)
    inputs = [(torch.randn(b, v, generator=g) * s, p) for b, v, s, p in cases]
    compare("top_p", as_float_tensor(student), as_float_tensor(ref.top_p), inputs, atol=1e-5,
            hint="sort by probability, best first; a token stays when the tokens ranked above it do not yet reach "
                 "top_p, so the most likely token always stays; the kept logits are unchanged and go back to their "
                 "original order.",
            forbidden=[process_logits])


@torch.no_grad()
def buggy_greedy_decode(model, prompt_ids, n):
    """The n greedy new ids after prompt_ids, prefilled once into a KVCache, then one token per step (one planted bug)."""
    cache = KVCache(model.config, 1, len(prompt_ids) + n)
    logits = model(torch.tensor([prompt_ids]), cache=cache)  # (1, t, vocab)
    new = []
    for _ in range(n):
        new.append(logits[0, 0].argmax().item())
        logits = model(torch.tensor([new[-1:]]), cache=cache)  # (1, 1, vocab)
    return new


def check_greedy_decode(student) -> None:
    """student(model, prompt_ids: list[int], n) -> the n greedy new ids (list of int), decoded with a KVCache."""
    torch.manual_seed(6)
    cfg = QwenConfig.from_name("tiny", vocab_size=300)
    model = Qwen(cfg).eval()
    with torch.no_grad():  # weights large enough that the reply varies
        for p in model.parameters():
            p.normal_(0, 0.3 if p.dim() == 2 else 0.1).add_(1.0 if p.dim() == 1 else 0.0)
    g = torch.Generator().manual_seed(seed(6))
    inputs = [(model, torch.randint(0, 300, (t,), generator=g).tolist(), n) for t, n in [(1, 5), (7, 12), (20, 8)]]
    compare("greedy_decode", student, ref.greedy_decode, inputs,
            hint="it is right for a 1-token prompt. Which logits predict the token after the prompt, and "
                 "which positions does the prefill return?",
            forbidden=[generate])


PACKAGE_EQUIVALENTS = {
    "check_top_p": [lambda logits, p: process_logits(logits, top_p=p)],
    "check_greedy_decode": [lambda m, prompt, n: generate(m, prompt, max_new_tokens=n, stop_ids=())],
}
