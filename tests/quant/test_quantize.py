"""Weight-only quantisation: the int8 / int4 quantisers round-trip, the GGUF Q8_0 / Q4_0 blocks are
bit-exact with `gguf.quants.quantize`, the kernel path of `QuantLinear` equals dequantise-then-matmul,
and `qm.quantize` turns a model into one that still predicts (nearly) the same tokens."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from torch import nn

import qwen_min as qm
from qwen_min.gguf.blocks import dequantize_q4_0, dequantize_q8_0, quantize_q4_0, quantize_q8_0, round_half_away
from qwen_min.quant.absmax import dequantize_int8, quantize_int8
from qwen_min.quant.groups import dequantize_int4, quantize_int4
from qwen_min.quant.linear import QuantLinear, int4_grid, int8_grid, kernel_available
from qwen_min.quant.quantize import weight_bytes

Q = gguf.GGMLQuantizationType
TINY = dict(vocab_size=512, intermediate_size=192)  # the tiny config's 172 is not a multiple of the kernels' 16


def weights(rows=64, cols=256, seed=0) -> torch.Tensor:
    """Gaussian weights with per-row magnitudes spread over two decades and a few outliers, like trained ones."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * torch.logspace(-3, -1, rows)[:, None]
    w[::7, 3] *= 20
    return w


# ---------------------------------------------------------------------------- the quantisers
def test_int8_round_trip_error_is_at_most_half_a_step():
    w = weights()
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and q.abs().max() == 127 and scale.shape == (64,)
    err = (dequantize_int8(q, scale) - w).abs()
    assert (err <= scale[:, None] / 2 * (1 + 1e-5)).all()
    assert torch.equal(quantize_int8(dequantize_int8(q, scale))[0], q)  # quantising the grid gives the grid back


def test_int8_zero_row_and_exact_grid():
    w = torch.zeros(2, 16)
    w[1, :3] = torch.tensor([127.0, -64.0, 1.0])
    q, scale = quantize_int8(w)
    assert scale.tolist() == [1.0, 1.0] and torch.equal(dequantize_int8(q, scale), w)


@pytest.mark.parametrize("group_size", [32, 128])
def test_int4_groups_round_trip(group_size):
    w = weights()
    q, scale, minimum = quantize_int4(w, group_size)
    assert q.dtype == torch.uint8 and q.max() <= 15 and scale.shape == (64, 256 // group_size)
    err = (dequantize_int4(q, scale, minimum) - w).abs().reshape(64, -1, group_size)
    assert (err <= scale[..., None] / 2 * (1 + 1e-4) + 1e-7).all()
    # each group's min and max land exactly on codes 0 and 15
    assert (q.reshape(64, -1, group_size).amin(-1) == 0).all() and (q.reshape(64, -1, group_size).amax(-1) == 15).all()


def test_int4_smaller_groups_are_more_accurate():
    w = weights()
    errors = {g: (dequantize_int4(*quantize_int4(w, g)) - w).pow(2).mean() for g in (32, 128)}
    assert errors[32] < errors[128]


def test_int4_rejects_a_group_size_that_does_not_divide_the_row():
    with pytest.raises(ValueError, match="does not divide"):
        quantize_int4(torch.zeros(4, 96), 64)


# ---------------------------------------------------------------------------- GGUF blocks vs gguf
def gguf_like_rows(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((48, 256)) * rng.exponential(1.0, (48, 1))).astype(np.float32)
    x[0, :32] = 0  # an all-zero block: d = 0
    x[1, :32] = np.arange(32) * 0.5 - 8  # exact halves: roundf vs round-half-even
    x[2, :32] = -3.0  # a constant block
    x[3, 5] = 1e4  # an outlier
    return x


@pytest.mark.parametrize("mine, ref_type, undo", [(quantize_q8_0, Q.Q8_0, dequantize_q8_0),
                                                  (quantize_q4_0, Q.Q4_0, dequantize_q4_0)])
def test_gguf_blocks_bit_exact(mine, ref_type, undo):
    x = gguf_like_rows()
    ours, theirs = mine(x), gguf.quants.quantize(x, ref_type)
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)
    assert np.array_equal(undo(ours), gguf.quants.dequantize(theirs, ref_type))


def test_round_half_away_from_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, 2.4999998], dtype=np.float32)
    assert round_half_away(x).tolist() == [1, 2, 3, -1, -3, 0, 2]


def test_q8_0_round_trip_error():
    x = gguf_like_rows()
    err = np.abs(dequantize_q8_0(quantize_q8_0(x)) - x).reshape(-1, 32)
    d = np.abs(x).reshape(-1, 32).max(1, keepdims=True) / 127
    assert (err <= d * (0.5 + 127 * 2**-11) + 1e-6).all()  # half a step, plus d's own fp16 rounding times |q| <= 127


def test_blocks_reject_ragged_rows():
    with pytest.raises(ValueError, match="whole blocks"):
        quantize_q8_0(np.zeros((2, 40), dtype=np.float32))


# ---------------------------------------------------------------------------- the kernel path
@pytest.mark.parametrize("fmt, group_size", [("int8", 128), ("int4", 128), ("int4", 32)])
@pytest.mark.parametrize("rows", [1, 8, 33])
def test_kernel_equals_dequantise_then_matmul(fmt, group_size, rows):
    """Tolerance: the kernel computes in bf16, so max |error| <= 1% of max |output| (bf16 has an 8-bit mantissa)."""
    torch.manual_seed(0)
    linear = nn.Linear(256, 96, bias=True)
    linear.weight.data = weights(96, 256)
    layer = QuantLinear.from_linear(linear, fmt, group_size)
    x = torch.randn(rows, 256).bfloat16()
    w = dequantize_int8(*int8_grid(linear.weight)) if fmt == "int8" else dequantize_int4(*int4_grid(linear.weight, group_size))
    reference = x.float() @ w.T + linear.bias.bfloat16().float()
    out = layer(x)
    assert out.dtype == torch.bfloat16 and out.shape == (rows, 96)
    assert (out.float() - reference).abs().max() <= 0.01 * reference.abs().max()
    assert (layer.dequantized_weight() - w).abs().max() <= 0.005 * w.abs().max()


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_kernel_grid_is_the_plain_quantiser_with_bf16_scales(fmt):
    """int8_grid / int4_grid differ from quant/absmax.py / quant/groups.py only by the bf16 rounding of the scales."""
    w = weights()
    plain = dequantize_int8(*quantize_int8(w)) if fmt == "int8" else dequantize_int4(*quantize_int4(w, 32))
    grid = dequantize_int8(*int8_grid(w)) if fmt == "int8" else dequantize_int4(*int4_grid(w, 32))
    step = w.abs().amax(1, keepdim=True) / (127 if fmt == "int8" else 7)
    assert ((grid - plain).abs() <= step).all() and (grid - w).norm() < 1.05 * (plain - w).norm()


def test_quant_linear_keeps_the_input_dtype_and_batch_shape():
    layer = QuantLinear.from_linear(nn.Linear(64, 32), "int8")
    assert layer(torch.randn(2, 3, 64)).shape == (2, 3, 32) and layer(torch.randn(2, 64)).dtype == torch.float32


def test_quant_linear_refuses_shapes_the_kernels_cannot_take():
    with pytest.raises(ValueError, match="in_features divisible by 16"):
        QuantLinear.from_linear(nn.Linear(40, 32), "int8")
    with pytest.raises(ValueError, match="out_features divisible by 16"):
        QuantLinear.from_linear(nn.Linear(64, 40), "int4", group_size=32)
    with pytest.raises(ValueError, match="unknown format"):
        QuantLinear.from_linear(nn.Linear(64, 32), "int3")


def test_kernel_availability_is_stated_per_device():
    assert kernel_available("int8", "cpu") and kernel_available("int4", "cpu")
    assert not kernel_available("int8", "cuda") and not kernel_available("int4", "cuda")


# ---------------------------------------------------------------------------- the whole model
@pytest.mark.parametrize("fmt, tolerance", [("int8", 0.02), ("int4", 0.1)])
def test_quantize_model(fmt, tolerance):
    torch.manual_seed(0)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", **TINY)).eval()
    ids = torch.randint(0, 512, (2, 12))
    reference = model(ids)
    fp32_bytes = weight_bytes(model)
    qm.quantize(model, fmt, group_size=32)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert not linears, "every nn.Linear is replaced"
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16 and model.lm_head.fmt == "int8"
    assert weight_bytes(model) < fp32_bytes / 2.5
    logits = model(ids).float()
    assert (logits - reference).abs().max() < tolerance * reference.abs().max()  # random weights: int4 g32 is ~5% off
    assert len(qm.generate(model, [1, 2, 3], max_new_tokens=4, stop_ids=())) == 4


def test_quantize_rejects_unknown_formats():
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", **TINY))
    with pytest.raises(ValueError, match="unknown format"):
        qm.quantize(model, "fp8")


# ---------------------------------------------------------------------------- chapter 07's checkers
def test_ch07_q8_0_checker_accepts_a_right_answer_and_rejects_a_flipped_bit():
    from qwen_min.course.exercises import ExerciseFailed
    from qwen_min.course.exercises import ch07_quantization as ex

    def q8_0(x):
        b = x.reshape(-1, 32)
        d = np.abs(b).max(1, keepdims=True) / np.float32(127)
        with np.errstate(divide="ignore"):
            v = b * np.where(d == 0, np.float32(0), np.float32(1) / d)
        q = round_half_away(v).astype(np.int8)
        return np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], 1).reshape(x.shape[0], -1)

    ex.check_q8_0(q8_0)
    with pytest.raises(ExerciseFailed, match="wrong on input"):
        ex.check_q8_0(lambda x: q8_0(x) ^ np.uint8(1))
