"""The GGUF block formats, written out: Q8_0 and Q4_0 both ways, and a decoder for every type the official files hold.

A GGUF tensor is a run of fixed-size blocks along each row. In a block, d, m and dmin are
little-endian fp16 numbers; "nibbles" are two 4-bit codes per byte: in a 32-weight block codes
0..15 are the low nibbles of its 16 bytes and codes 16..31 the high ones (K-quants below).
Byte offsets:

    type  weights bytes  layout                                                    weight
    Q8_0     32    34    0 d | 2 32 int8 q                                         d * q
    Q4_0     32    18    0 d | 2 16 bytes of nibbles                               d * (q - 8)
    Q4_1     32    20    0 d | 2 m | 4 16 bytes of nibbles                         d * q + m
    Q5_0     32    22    0 d | 2 qh | 6 16 bytes of nibbles                        d * (q - 16)
    Q5_1     32    24    0 d | 2 m | 4 qh | 8 16 bytes of nibbles                  d * q + m
    Q4_K    256   144    0 d | 2 dmin | 4 12 bytes of scales | 16 128 of nibbles   d * sc[j] * q - dmin * mn[j]
    Q6_K    256   210    0 128 bytes ql | 128 64 bytes qh | 192 16 int8 sc | 208 d d * sc[j] * (q - 32)
    F32, F16, BF16: one number per 4, 2, 2 bytes (BF16 is the top half of a float32)

- Q5_0, Q5_1: qh is a little-endian uint32 whose bit i is the 5th bit (16) of code i.
- Q4_K (llama.cpp's `dequantize_row_q4_K`): 8 sub-blocks j of 32 weights. The nibbles are 4
  groups of 32 bytes, group g holding sub-block 2g in its low nibbles and 2g + 1 in its high
  ones. Each sub-block has a 6-bit scale sc[j] and a 6-bit min mn[j] (`get_scale_min_k4`):
  for j < 4 the low 6 bits of scale bytes j and j + 4; for j >= 4 byte j + 4 holds their low
  4 bits (sc low nibble, mn high nibble) and the top 2 bits of bytes j - 4 and j their high 2.
- Q6_K (`dequantize_row_q6_K`): 16 sub-blocks j of 16 weights, an int8 scale sc[j] each, and
  6-bit codes. Each half of 128 weights uses 64 bytes of ql and 32 of qh: weight i < 64 of the
  half takes the low nibble of ql byte i, weight 64 + i its high nibble; qh byte l holds the top
  2 bits of weights l, l + 32, l + 64, l + 96 (bits 0-1, 2-3, 4-5, 6-7).

Design choices
- Encoding is bit for bit what `gguf.quants.quantize` (and ggml-quants.c's `quantize_row_*_ref`)
  write, which tests/quant/test_quantize.py checks: the scale is computed in float32 and its *float32*
  inverse scales the weights (the fp16 rounding of d is not used for the codes), and
  rounding is C's `roundf`, half away from zero (numpy's `round` goes half to even).
- Q4_0 is symmetric about the value of largest magnitude m: d = m / -8, so m lands exactly on
  code 0 (d * (0 - 8) = m) and the other side of the grid stops at -7 * d, one level short.
- Decoding is bit for bit what `gguf.quants.dequantize` returns (tests/gguf/test_blocks.py,
  every tensor of both official checkpoints): float32 arithmetic in its order. Q4_K is
  (d * sc) * q - (dmin * mn), both products rounded before the subtraction; d * q + m is two
  roundings (numpy never fuses a multiply-add); codes are exact small integers in float32.
- Vectorised over blocks: a decoder reshapes its bytes to (n_blocks, block bytes) and works on
  columns. The loader hands it a few rows at a time so that the temporaries stay in cache.
- numpy in, numpy out: bytes are uint8 arrays (..., blocks * block bytes), the layout of a
  GGUF tensor's rows; a decoder returns float32 (..., blocks * block weights).

>>> import numpy as np
>>> x = np.linspace(-1, 1, 32, dtype=np.float32)[None]
>>> quantize_q8_0(x).shape, quantize_q4_0(x).shape
((1, 34), (1, 18))
>>> float(np.abs(dequantize_q8_0(quantize_q8_0(x)) - x).max()) < 1 / 254 + 1e-6
True
>>> block = np.zeros((1, 144), np.uint8)                    # one Q4_K super-block: 256 weights
>>> block[0, 0:4] = np.array([1, 0.5], np.float16).view(np.uint8)     # d = 1, dmin = 0.5
>>> block[0, 4], block[0, 8] = 2, 3                         # sub-block 0: sc = 2, mn = 3 (the others: 0, 0)
>>> block[0, 16] = 0x75                                     # codes 5 (weight 0) and 7 (weight 32, sub-block 1)
>>> w = dequantize_q4_k(block)                              # sub-block 0: 1 * 2 * q - 0.5 * 3
>>> w.shape, w[0, :2].tolist(), float(w[0, 32])
((1, 256), [8.5, -1.5], 0.0)
"""

from __future__ import annotations

import numpy as np

BLOCK = 32
Q8_0_BYTES = 2 + BLOCK
Q4_0_BYTES = 2 + BLOCK // 2
SUPER = 256  # the K-quant super-block (ggml's QK_K)


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


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    """float rows (..., n) -> Q4_0 bytes (..., n / 32 * 18)."""
    blocks = _blocks(x)
    m = np.take_along_axis(blocks, np.abs(blocks).argmax(axis=1)[:, None], axis=1)  # (n_blocks, 1), signed
    d = m / np.float32(-8)
    q = np.clip(np.trunc(blocks * _inverse(d) + np.float32(8.5)), 0, 15).astype(np.uint8)  # (n_blocks, 32)
    packed = q[:, :BLOCK // 2] | (q[:, BLOCK // 2:] << 4)  # (n_blocks, 16)
    out = np.concatenate([d.astype(np.float16).view(np.uint8), packed], axis=1)  # (n_blocks, 18)
    return out.reshape(*np.shape(x)[:-1], -1)


# ---------------------------------------------------------------------------- decoding
def _split(data: np.ndarray, block_bytes: int) -> np.ndarray:
    return np.asarray(data, dtype=np.uint8).reshape(-1, block_bytes)  # (n_blocks, block_bytes)


def _rows_of(values: np.ndarray, data: np.ndarray) -> np.ndarray:
    return values.reshape(*np.shape(data)[:-1], -1)  # back to the rows the bytes came in


def _f16(blocks: np.ndarray, at: int) -> np.ndarray:
    """The fp16 number at byte `at` of every block, as float32 (n_blocks, 1)."""
    return blocks[:, at:at + 2].view(np.float16).astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """Bytes (..., k) -> codes 0..15 (..., 2k): the k low nibbles, then the k high ones."""
    return np.concatenate([packed & 15, packed >> 4], axis=-1)


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """The 4 bytes of a little-endian uint32 (n_blocks, 4) -> bit i of it at column i, as 0 or 16 (n_blocks, 32)."""
    return np.unpackbits(qh, axis=-1, bitorder="little") << 4


def dequantize_f32(data: np.ndarray) -> np.ndarray:
    """F32 bytes (..., 4n) -> float32 (..., n), a view of the bytes."""
    return np.asarray(data, dtype=np.uint8).view(np.float32)


def dequantize_f16(data: np.ndarray) -> np.ndarray:
    """F16 bytes (..., 2n) -> float32 (..., n)."""
    return np.asarray(data, dtype=np.uint8).view(np.float16).astype(np.float32)


def dequantize_bf16(data: np.ndarray) -> np.ndarray:
    """BF16 bytes (..., 2n) -> float32 (..., n): the 16 bits become the top half of a float32."""
    return (np.asarray(data, dtype=np.uint8).view(np.uint16).astype(np.uint32) << 16).view(np.float32)


def dequantize_q8_0(data: np.ndarray) -> np.ndarray:
    """Q8_0 bytes (..., m * 34) -> float32 rows (..., m * 32)."""
    blocks = _split(data, Q8_0_BYTES)
    q = blocks[:, 2:].view(np.int8).astype(np.float32)  # (n_blocks, 32)
    return _rows_of(_f16(blocks, 0) * q, data)


def dequantize_q4_0(data: np.ndarray) -> np.ndarray:
    """Q4_0 bytes (..., m * 18) -> float32 rows (..., m * 32)."""
    blocks = _split(data, Q4_0_BYTES)
    q = _nibbles(blocks[:, 2:]).astype(np.float32)  # (n_blocks, 32), 0..15
    return _rows_of(_f16(blocks, 0) * (q - 8), data)


def dequantize_q4_1(data: np.ndarray) -> np.ndarray:
    """Q4_1 bytes (..., m * 20) -> float32 rows (..., m * 32)."""
    blocks = _split(data, 20)
    q = _nibbles(blocks[:, 4:]).astype(np.float32)  # (n_blocks, 32), 0..15
    return _rows_of(_f16(blocks, 0) * q + _f16(blocks, 2), data)


def dequantize_q5_0(data: np.ndarray) -> np.ndarray:
    """Q5_0 bytes (..., m * 22) -> float32 rows (..., m * 32)."""
    blocks = _split(data, 22)
    q = (_nibbles(blocks[:, 6:]) | _fifth_bits(blocks[:, 2:6])).astype(np.float32)  # (n_blocks, 32), 0..31
    return _rows_of(_f16(blocks, 0) * (q - 16), data)


def dequantize_q5_1(data: np.ndarray) -> np.ndarray:
    """Q5_1 bytes (..., m * 24) -> float32 rows (..., m * 32)."""
    blocks = _split(data, 24)
    q = (_nibbles(blocks[:, 8:]) | _fifth_bits(blocks[:, 4:8])).astype(np.float32)  # (n_blocks, 32), 0..31
    return _rows_of(_f16(blocks, 0) * q + _f16(blocks, 2), data)


def _q4_k_scales(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 12 scale bytes of Q4_K super-blocks (n, 12) -> 6-bit scales and mins, (n, 8) each (`get_scale_min_k4`)."""
    a, b, c = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]  # (n, 4) each
    sc = np.concatenate([a & 63, (c & 15) | ((a >> 6) << 4)], axis=1)  # j < 4: low bits of a; j >= 4: c's low nibble
    mn = np.concatenate([b & 63, (c >> 4) | ((b >> 6) << 4)], axis=1)  # ... of b; c's high nibble
    return sc, mn


def dequantize_q4_k(data: np.ndarray) -> np.ndarray:
    """Q4_K bytes (..., m * 144) -> float32 rows (..., m * 256)."""
    blocks = _split(data, 144)
    sc, mn = _q4_k_scales(blocks[:, 4:16])  # (n_blocks, 8) each
    scale = _f16(blocks, 0) * sc.astype(np.float32)  # (n_blocks, 8): d * sc[j]
    low = _f16(blocks, 2) * mn.astype(np.float32)  # (n_blocks, 8): dmin * mn[j]
    q = _nibbles(blocks[:, 16:].reshape(-1, 4, 32)).reshape(-1, 8, 32).astype(np.float32)  # (n_blocks, 8, 32)
    return _rows_of(scale[..., None] * q - low[..., None], data)


def dequantize_q6_k(data: np.ndarray) -> np.ndarray:
    """Q6_K bytes (..., m * 210) -> float32 rows (..., m * 256)."""
    blocks = _split(data, 210)
    low = _nibbles(blocks[:, :128].reshape(-1, 2, 64))  # (n_blocks, 2, 128): per half, its 128 low 4 bits
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)[:, None]  # (4, 1): weights l, l + 32, l + 64, l + 96
    high = (blocks[:, 128:192].reshape(-1, 2, 1, 32) >> shifts) & 3  # (n_blocks, 2, 4, 32): their top 2 bits
    q = (low | (high.reshape(-1, 2, 128) << 4)).reshape(-1, 16, 16).astype(np.float32)  # (n_blocks, 16, 16), 0..63
    scale = _f16(blocks, 208) * blocks[:, 192:208].view(np.int8).astype(np.float32)  # (n_blocks, 16): d * sc[j]
    return _rows_of(scale[..., None] * (q - 32), data)
