"""Checkers for the exercises of notebook 06_official_checkpoint.

    from qwen_min.course.exercises import ch06_checkpoint as ex
    ex.check_dequantize_q5_0(my_q5_0)     # build: my_q5_0(blocks uint8 (n, 22)) -> float32 (n, 32)
    ex.check_top_p(my_top_p)              # build: my_top_p(logits (b, vocab), top_p) -> logits, removed tokens at -inf
    ex.check_greedy_decode(my_decode)     # debug: my_decode(model, prompt_ids, n) -> n new ids, with a KVCache;
                                          #        ex.buggy_greedy_decode holds the planted bug

References: `gguf.quants.dequantize` (the loader's own decoders, gguf/blocks.py, equal it bit for bit;
the student may call neither), `qwen_min.generation.process_logits` and `qwen_min.generate` (greedy, no stop token).
"""

from __future__ import annotations

import numpy as np
import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import compare
from qwen_min.generation import generate, process_logits
from qwen_min.gguf.blocks import dequantize_q5_0
from qwen_min.model.attention import KVCache
from qwen_min.model.qwen import Qwen


def _as_tensor(fn):
    """Run fn, return a float tensor with -inf as a finite stand-in (so removed tokens compare equal)."""
    def wrapped(*args):
        out = fn(*args)
        out = torch.as_tensor(np.asarray(out) if not isinstance(out, torch.Tensor) else out).float()
        return torch.nan_to_num(out, neginf=-1e30)
    return wrapped


def _q5_0_reference(blocks: np.ndarray) -> np.ndarray:
    import gguf

    return gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q5_0)


def check_dequantize_q5_0(student) -> None:
    """student(blocks: uint8 (n, 22)) -> float32 (n, 32), the weights of n Q5_0 blocks."""
    import gguf

    rng = np.random.default_rng(6)
    inputs = []
    for n, scale in [(1, 1.0), (4, 0.02), (16, 3.0)]:
        weights = (rng.standard_normal((n, 32)) * scale).astype(np.float32)
        inputs.append((gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q5_0),))
    compare("dequantize_q5_0", _as_tensor(student), _as_tensor(_q5_0_reference), inputs, atol=0.0,
            hint="check the three parts separately: the scale (fp16, view the two bytes, do not convert them as "
                 "integers), the 5th bits (which bit belongs to which value), the nibbles (which half of a byte "
                 "holds the first 16 values); the 5-bit values are unsigned, centred on 16.",
            forbidden=[gguf.quants.dequantize, dequantize_q5_0])


def check_top_p(student) -> None:
    """student(logits (b, vocab), top_p) -> logits with the tokens outside the nucleus at -inf."""
    g = torch.Generator().manual_seed(6)
    cases = [(1, 10, 1.0, 0.5), (3, 100, 3.0, 0.8), (2, 1000, 0.5, 0.95)]  # (batch, vocab, logit scale, top_p)
    inputs = [(torch.randn(b, v, generator=g) * s, p) for b, v, s, p in cases]
    compare("top_p", _as_tensor(student), _as_tensor(lambda logits, p: process_logits(logits, top_p=p)), inputs, atol=1e-5,
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
    g = torch.Generator().manual_seed(6)
    inputs = [(model, torch.randint(0, 300, (t,), generator=g).tolist(), n) for t, n in [(1, 5), (7, 12), (20, 8)]]
    compare("greedy_decode", student, lambda m, prompt, n: generate(m, prompt, max_new_tokens=n, stop_ids=()), inputs,
            hint="it is right for a 1-token prompt. Which logits predict the token after the prompt, and "
                 "which positions does the prefill return?",
            forbidden=[generate])


PACKAGE_EQUIVALENTS = {
    "check_dequantize_q5_0": [_q5_0_reference, dequantize_q5_0],
    "check_top_p": [lambda logits, p: process_logits(logits, top_p=p)],
    "check_greedy_decode": [lambda m, prompt, n: generate(m, prompt, max_new_tokens=n, stop_ids=())],
}
