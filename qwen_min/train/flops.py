"""How much arithmetic a training step costs, and how much the machine can do: the two halves of MFU.

    MFU = (tokens/s x training FLOPs per token) / peak FLOP/s of the hardware

    >>> cfg = QwenConfig.from_name("tiny", vocab_size=4096)
    >>> flops_per_token(cfg, seq_len=256)           # 6 x 353,344 matmul weights + 12 x 2 layers x 64 x 256
    2513280

Design choices
- FLOPs per token follow the PaLM paper (appendix B): 6 N for the forward and backward pass through N
  matmul weights (2 per multiply-add, x3 because the backward pass costs twice the forward), plus
  12 x layers x (heads x head_dim) x seq_len for the attention scores and the weighted sum of values.
  The causal mask would let a kernel skip half of the attention; PaLM, nanoGPT and most reports still
  count it in full, and so do we, so figures compare.
- N counts the LM head even when it is tied to the embedding (the head is a matmul, the embedding a
  lookup), and only the experts a token uses in a mixture-of-experts model. Norm gains and biases are
  counted too: they are a rounding error.
- The peak is measured, not looked up: the best rate of large square matmuls in the dtype training
  uses (fp32 on CPU, bf16 on CUDA), on this machine, now. On a shared CPU the figure moves with the
  load, so a benchmark measures it in the same run as the thing it compares.
"""

from __future__ import annotations

import time

import torch

from qwen_min.config import QwenConfig


def matmul_parameters(cfg: QwenConfig) -> int:
    """Weights a token is multiplied by: non-embedding (active) parameters plus the LM head."""
    return cfg.num_parameters(non_embedding=True, active=True) + cfg.vocab_size * cfg.hidden_size


def flops_per_token(cfg: QwenConfig, seq_len: int) -> int:
    """Training FLOPs (forward + backward) per token at context `seq_len`, PaLM's 6N + 12 L H Q T."""
    attention = 12 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * seq_len
    return 6 * matmul_parameters(cfg) + attention


def measure_matmul_peak(device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                        size: int | None = None, repeats: int = 5) -> float:
    """Best FLOP/s of a (size x size) @ (size x size) matmul over `repeats` timed runs.

    Defaults: fp32 and 1024 on CPU (about 200 GFLOP/s measured on 2 cores), bf16 and 8192 on CUDA.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
    size = size or (8192 if cuda else 1024)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    inner = 10 if cuda else 3
    a @ b  # warm-up: thread pools, cuBLAS handles
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            a @ b
        sync()
        best = min(best, (time.perf_counter() - start) / inner)
    return 2 * size**3 / best
