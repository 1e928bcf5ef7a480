"""The GGUF block formats Q8_0 and Q4_0, written out: 32 weights per block, one fp16 scale each.

    Q8_0 (34 bytes, 8.5 bits per weight)    d = amax / 127            q = round(x / d) in -127..127   x ~ d * q
    Q4_0 (18 bytes, 4.5 bits per weight)    d = m / -8 (m: the value  q = trunc(x / d + 8.5) in 0..15  x ~ d * (q - 8)
                                            of largest magnitude)

A block is its scale as little-endian fp16 bytes, then the codes: Q8_0 one int8 per weight;
Q4_0 two codes per byte, weights 0..15 of the block in the low nibbles of bytes 0..15 and
weights 16..31 in the high nibbles.

Design choices
- Bit for bit what `gguf.quants.quantize` (and ggml-quants.c's `quantize_row_*_ref`) write,
  which tests/test_quant.py checks: the scale is computed in float32 and its *float32*
  inverse scales the weights (the fp16 rounding of d is not used for the codes), and
  rounding is C's `roundf`, half away from zero (numpy's `round` goes half to even).
- Q4_0 is symmetric about the value of largest magnitude m: m lands exactly on code 0
  (d * (0 - 8) = m) and the other side of the grid stops at -7 * d, one level short.
- numpy in, bytes out (uint8 arrays of shape (rows, blocks * block bytes)): the layout of a
  GGUF tensor's data, which `gguf.quants.dequantize` and the loader read back.

>>> import numpy as np
>>> x = np.linspace(-1, 1, 32, dtype=np.float32)[None]
>>> quantize_q8_0(x).shape, quantize_q4_0(x).shape
((1, 34), (1, 18))
>>> float(np.abs(dequantize_q8_0(quantize_q8_0(x)) - x).max()) < 1 / 254 + 1e-6
True
"""

from __future__ import annotations

import numpy as np

BLOCK = 32
Q8_0_BYTES = 2 + BLOCK
Q4_0_BYTES = 2 + BLOCK // 2


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C's roundf: 2.5 -> 3, -2.5 -> -3 (numpy's round gives 2 and -2). Exact: a - floor(a) has no rounding error."""
    a = np.abs(x)
    return np.sign(x) * (np.floor(a) + (a - np.floor(a) >= 0.5))


def _blocks(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] % BLOCK:
        raise ValueError(f"rows of {x.shape[-1]} values are not whole blocks of {BLOCK}")
    return x.reshape(-1, BLOCK)  # (n_blocks, 32)


def _inverse(d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(d == 0, np.float32(0), np.float32(1) / d)


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """float rows (..., n) -> Q8_0 bytes (..., n / 32 * 34)."""
    blocks = _blocks(x)
    d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)  # (n_blocks, 1), float32
    q = round_half_away(blocks * _inverse(d)).astype(np.int8)  # (n_blocks, 32)
    out = np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1)  # (n_blocks, 34)
    return out.reshape(*np.shape(x)[:-1], -1)


def dequantize_q8_0(data: np.ndarray) -> np.ndarray:
    """Q8_0 bytes (..., m * 34) -> float32 rows (..., m * 32)."""
    blocks = np.asarray(data, dtype=np.uint8).reshape(-1, Q8_0_BYTES)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)  # (n_blocks, 32)
    return (d * q).reshape(*np.shape(data)[:-1], -1)


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    """float rows (..., n) -> Q4_0 bytes (..., n / 32 * 18)."""
    blocks = _blocks(x)
    m = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=1)[:, None], axis=1)  # (n_blocks, 1), signed
    d = m / np.float32(-8)
    q = np.clip(np.trunc(blocks * _inverse(d) + np.float32(8.5)), 0, 15).astype(np.uint8)  # (n_blocks, 32)
    packed = q[:, :BLOCK // 2] | (q[:, BLOCK // 2:] << 4)  # (n_blocks, 16)
    out = np.concatenate([d.astype(np.float16).view(np.uint8), packed], axis=1)  # (n_blocks, 18)
    return out.reshape(*np.shape(x)[:-1], -1)


def dequantize_q4_0(data: np.ndarray) -> np.ndarray:
    """Q4_0 bytes (..., m * 18) -> float32 rows (..., m * 32)."""
    blocks = np.asarray(data, dtype=np.uint8).reshape(-1, Q4_0_BYTES)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n_blocks, 1)
    packed = blocks[:, 2:]
    q = np.concatenate([packed & 15, packed >> 4], axis=1).astype(np.float32)  # (n_blocks, 32)
    return (d * (q - 8)).reshape(*np.shape(data)[:-1], -1)
