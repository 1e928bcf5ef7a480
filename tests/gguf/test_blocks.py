"""qwen_min's own GGUF block decoders (gguf/blocks.py) against `gguf.quants.dequantize`, bit for bit:
every type the loader accepts on random bytes and on realistic blocks, every tensor of both official
checkpoints through the loader, and a planted bug in the Q4_K decoder that the same comparison catches.

"Bit for bit" compares the float32 bit patterns, stricter than `np.array_equal`: -0.0 differs from 0.0
and a NaN equals only the same NaN."""

from __future__ import annotations

import time

import gguf
import numpy as np
import pytest

import qwen_min as qm
from qwen_min.checkpoints.gguf_loader import _decoders, dequantize_tensor, read_gguf
from qwen_min.gguf import blocks as gguf_blocks
from tests.checkpoints.test_gguf_loader import k_quant_bytes

Q = gguf.GGMLQuantizationType
OFFICIAL_TYPES = {Q.F32, Q.Q8_0, Q.Q5_0, Q.Q4_K, Q.Q6_K}  # what the 0.5B and 1.5B files hold between them
ENCODABLE = {Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1}  # gguf.quants.quantize writes these


def assert_bit_identical(ours: np.ndarray, reference: np.ndarray, what: str) -> None:
    """Same dtype (float32), shape and bits; otherwise one line naming how many values differ and the first."""
    ours, reference = np.ascontiguousarray(ours), np.ascontiguousarray(reference)
    assert ours.dtype == reference.dtype == np.float32, (what, ours.dtype, reference.dtype)
    assert ours.shape == reference.shape, (what, ours.shape, reference.shape)
    differ = ours.view(np.uint32) != reference.view(np.uint32)
    if differ.any():
        first = tuple(int(i) for i in np.argwhere(differ)[0])
        raise AssertionError(f"{what}: {int(differ.sum()):,} of {differ.size:,} values differ from gguf.quants.dequantize "
                             f"(first at {first}: {ours[first]!r}, gguf {reference[first]!r})")


def random_bytes(qtype, rows: int, cols: int, rng) -> np.ndarray:
    """Any bit pattern at all: scales may be huge, tiny, inf or NaN, and must still decode like gguf's."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return rng.integers(0, 256, (rows, cols // block * size), dtype=np.uint8)


def realistic_bytes(qtype, rows: int, cols: int, rng) -> np.ndarray:
    """Blocks as a quantiser writes them: encoded by gguf where it can, else random codes under sane fp16 scales."""
    if qtype not in ENCODABLE:
        return k_quant_bytes(rows, cols, qtype, rng)
    x = rng.standard_normal((rows, cols)).astype(np.float32) * rng.uniform(0.01, 3, (rows, 1)).astype(np.float32)
    x[0, :32] = 0  # an all-zero block: d = 0
    x[1, 5] = 1e3  # an outlier
    return gguf.quants.quantize(x, qtype).view(np.uint8).reshape(rows, -1)


@pytest.mark.parametrize("qtype", sorted(_decoders()), ids=lambda q: q.name)
@pytest.mark.parametrize("make", [random_bytes, realistic_bytes])
def test_decoder_bit_identical_to_gguf(qtype, make):
    rng = np.random.default_rng(qtype.value)
    raw = make(qtype, 6, 1024, rng)  # 6 rows of 1024 weights: 4 super-blocks or 32 blocks each
    with np.errstate(invalid="ignore", over="ignore"):  # random scales: inf * 0 and overflows, in both decoders
        ours, reference = _decoders()[qtype](raw), gguf.quants.dequantize(raw, qtype)
    assert ours.shape == (6, 1024)
    assert_bit_identical(ours, reference, qtype.name)
    if make is realistic_bytes:
        assert np.isfinite(ours).all() and ours.std() > 0


def test_decoders_cover_the_official_types_and_the_loader_tests():
    from tests.checkpoints.test_gguf_loader import TYPES

    assert OFFICIAL_TYPES | set(TYPES.values()) <= set(_decoders())


def test_decoders_keep_leading_dims():
    raw = realistic_bytes(Q.Q6_K, 6, 512, np.random.default_rng(0))
    assert gguf_blocks.dequantize_q6_k(raw.reshape(2, 3, -1)).shape == (2, 3, 512)
    assert gguf_blocks.dequantize_q6_k(raw[0]).shape == (512,)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["0.5B", "1.5B"])
def test_every_tensor_of_the_official_checkpoints(name):
    """Through the loader (chunked decoding included), one tensor at a time: ~7 s for the 0.5B, ~24 s for the 1.5B (2 cores)."""
    f = read_gguf(qm.default_checkpoint(name))
    seen, start = set(), time.perf_counter()
    for t in f.tensors.values():
        qtype = Q(t.qtype)
        seen.add(qtype)
        raw = np.frombuffer(f.data, dtype=np.uint8, count=t.nbytes, offset=t.offset).reshape(*t.shape[:-1], -1)
        reference = gguf.quants.dequantize(raw, qtype).reshape(t.shape)
        ours = dequantize_tensor(f, t.name).numpy()
        assert_bit_identical(ours, reference, f"{name} {t.name} ({qtype.name})")
        del raw, reference, ours
    assert seen <= OFFICIAL_TYPES and {Q.F32, Q.Q4_K, Q.Q6_K} <= seen
    print(f"{name}: {len(f.tensors)} tensors of types {sorted(q.name for q in seen)} bit-identical "
          f"in {time.perf_counter() - start:.1f} s")


def test_a_planted_bug_in_q4_k_is_caught(monkeypatch):
    """The comparison can fail: forget the top 2 bits of the scales and mins of sub-blocks 4..7 (bytes 0..7 >> 6)."""
    def scales_without_high_bits(packed):
        sc, mn = real_scales(packed)
        sc[:, 4:], mn[:, 4:] = packed[:, 8:12] & 15, packed[:, 8:12] >> 4  # only the low 4 bits from bytes 8..11
        return sc, mn

    real_scales = gguf_blocks._q4_k_scales
    raw = realistic_bytes(Q.Q4_K, 6, 1024, np.random.default_rng(0))
    reference = gguf.quants.dequantize(raw, Q.Q4_K)
    assert_bit_identical(gguf_blocks.dequantize_q4_k(raw), reference, "Q4_K")
    monkeypatch.setattr(gguf_blocks, "_q4_k_scales", scales_without_high_bits)
    with pytest.raises(AssertionError, match=r"Q4_K: [\d,]+ of 6,144 values differ") as planted:
        assert_bit_identical(gguf_blocks.dequantize_q4_k(raw), reference, "Q4_K")
    print(planted.value)
    first_half = np.s_[:, :128]  # of each super-block: sub-blocks 0..3, which the bug leaves right
    assert gguf_blocks.dequantize_q4_k(raw).reshape(-1, 256)[first_half].tobytes() == \
        reference.reshape(-1, 256)[first_half].tobytes()
