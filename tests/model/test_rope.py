"""RoPE, YaRN and Position Interpolation ("linear") against transformers' Qwen2 rotary embedding, plus the
relative-position property. (NTK-aware scaling: test_dual_chunk.py.)"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Qwen2Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding, apply_rotary_pos_emb

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises import ch02_rope as ex
from qwen_min.course.exercises.ch02_rope import check_rope_at_positions
from qwen_min.course.exercises.reference import ch02_rope as ref
from qwen_min.model.rope import RotaryEmbedding, apply_rope, default_inv_freq, rope_frequencies

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}
ROPE_CASES = {
    "default-1e4": dict(rope_theta=1e4),
    "default-1e6-hd64": dict(rope_theta=1e6, hidden_size=256),
    "yarn": dict(rope_scaling=YARN, max_position_embeddings=128),
    "yarn-qwen-long": dict(rope_theta=1e6, hidden_size=512, num_attention_heads=4, num_key_value_heads=4,
                           max_position_embeddings=131072,
                           rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}),
    "yarn-no-truncate": dict(rope_scaling=YARN | {"truncate": False, "factor": 3.0}, max_position_embeddings=96),
    "yarn-betas-mscale": dict(rope_scaling=YARN | {"beta_fast": 16, "beta_slow": 2, "mscale": 0.8, "mscale_all_dim": 0.5}),
    "yarn-attention-factor": dict(rope_scaling=YARN | {"attention_factor": 1.3, "factor": 8.0}, rope_theta=5e5),
    "linear": dict(rope_scaling={"rope_type": "linear", "factor": 4.0}),  # Position Interpolation
    "linear-1e6-hd64": dict(rope_theta=1e6, hidden_size=256, rope_scaling={"rope_type": "linear", "factor": 2.5}),
}


def _configs(name):
    cfg = QwenConfig.from_name("tiny", **ROPE_CASES[name])
    hf = Qwen2Config(**cfg.to_hf_dict())
    return cfg, hf


@pytest.mark.parametrize("name", ROPE_CASES)
def test_frequencies_and_attention_factor_match_transformers(name):
    cfg, hf = _configs(name)
    inv_freq, scale = rope_frequencies(cfg)
    rope_type = hf.rope_parameters["rope_type"]
    if rope_type == "default":
        ref_inv_freq, ref_scale = Qwen2RotaryEmbedding.compute_default_rope_parameters(hf)
    else:
        ref_inv_freq, ref_scale = ROPE_INIT_FUNCTIONS[rope_type](hf)
    assert torch.equal(inv_freq, ref_inv_freq)
    assert scale == ref_scale


@pytest.mark.parametrize("name", ROPE_CASES)
def test_cos_sin_and_rotation_match_transformers(name):
    cfg, hf = _configs(name)
    g = torch.Generator().manual_seed(0)
    # positions beyond the original context (YaRN's point) and per-row positions (left padding)
    positions = torch.randint(0, 4 * cfg.max_position_embeddings, (2, 9), generator=g)
    q = torch.randn(2, cfg.num_attention_heads, 9, cfg.head_dim, generator=g)
    k = torch.randn(2, cfg.num_key_value_heads, 9, cfg.head_dim, generator=g)
    cos, sin = RotaryEmbedding(cfg)(positions, torch.float32)
    ref_cos, ref_sin = Qwen2RotaryEmbedding(hf)(q, positions)
    assert torch.equal(cos, ref_cos) and torch.equal(sin, ref_sin)
    ref_q, ref_k = apply_rotary_pos_emb(q, k, ref_cos, ref_sin)
    assert torch.equal(apply_rope(q, cos, sin), ref_q) and torch.equal(apply_rope(k, cos, sin), ref_k)


def test_rotary_embedding_survives_meta_construction():
    cfg = QwenConfig.from_name("tiny")
    with torch.device("meta"):
        rope = RotaryEmbedding(cfg)
    cos, _ = rope(torch.arange(4)[None], torch.float32)
    assert cos.device.type == "cpu" and torch.equal(cos, RotaryEmbedding(cfg)(torch.arange(4)[None], torch.float32)[0])


@pytest.mark.parametrize("theta", [1e4, 1e6])
def test_scores_depend_only_on_relative_position(theta):
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 1, 64, generator=g, dtype=torch.float64), torch.randn(1, 1, 1, 64, generator=g, dtype=torch.float64)
    inv_freq = default_inv_freq(64, theta).double()

    def rotated(x, pos):
        angles = torch.tensor([[pos]], dtype=torch.float64)[..., None] * inv_freq
        angles = torch.cat((angles, angles), -1)
        return apply_rope(x, angles.cos(), angles.sin())

    pairs = [(5, 2), (103, 100), (10_003, 10_000), (7, 7), (900, 900)]
    scores = {(m, n): (rotated(q, m) * rotated(k, n)).sum().item() for m, n in pairs}
    assert scores[(5, 2)] == pytest.approx(scores[(103, 100)], abs=1e-9) == pytest.approx(scores[(10_003, 10_000)], abs=1e-9)
    assert scores[(7, 7)] == pytest.approx((q * k).sum().item(), abs=1e-9) == pytest.approx(scores[(900, 900)], abs=1e-9)
    assert abs(scores[(5, 2)] - scores[(7, 7)]) > 1e-3  # and it does depend on the offset


def test_rope_exercise_checkers_accept_hand_written_answers_and_reject_wrong_ones():
    def rope(x, positions, theta):  # written out: no qwen_min.model.rope inside
        d = x.shape[-1]
        angles = positions[:, None, :, None].float() / theta ** (torch.arange(0, d, 2).float() / d)
        first, second = x[..., : d // 2], x[..., d // 2:]
        return torch.cat((first * angles.cos() - second * angles.sin(), second * angles.cos() + first * angles.sin()), -1)

    def interleaved(x, positions, theta):  # the original paper's pairing, not Qwen's
        d = x.shape[-1]
        angles = positions[:, None, :, None].float() / theta ** (torch.arange(0, d, 2).float() / d)
        even, odd = x[..., 0::2], x[..., 1::2]
        out = torch.stack((even * angles.cos() - odd * angles.sin(), odd * angles.cos() + even * angles.sin()), -1)
        return out.flatten(-2)

    check_rope_at_positions(rope)
    with pytest.raises(ExerciseFailed, match="rope_at_positions: wrong"):
        check_rope_at_positions(interleaved)
    with pytest.raises(ExerciseFailed, match="rope_at_positions: wrong"):
        check_rope_at_positions(ex.buggy_rope)

    def yarn(head_dim, theta, factor, original_context, truncate=True):
        def pair_for(turns):
            return head_dim * math.log(original_context / (turns * 2 * math.pi)) / (2 * math.log(theta))

        low, high = pair_for(32), pair_for(1)
        if truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, head_dim - 1)
        ramp = ((torch.arange(head_dim // 2).float() - low) / max(high - low, 0.001)).clamp(0, 1)
        base = 1.0 / theta ** (torch.arange(0, head_dim, 2).float() / head_dim)
        return base / factor * ramp + base * (1 - ramp), 0.1 * math.log(factor) + 1.0

    ex.check_yarn(yarn)
    with pytest.raises(ExerciseFailed, match="yarn: wrong"):  # ramp ends not rounded to whole pairs
        ex.check_yarn(lambda *args: yarn(*args, truncate=False))
    with pytest.raises(ExerciseFailed, match="yarn: wrong"):  # no attention factor
        ex.check_yarn(lambda *args: (yarn(*args)[0], 1.0))


def test_rope_permutation_prediction():
    assert ref.measured_permutation_effect() == (False, True)
    ex.check_permutation(lambda: (False, True))
    for wrong in [(True, True), (False, False), "no"]:
        with pytest.raises(ExerciseFailed, match="you predicted"):
            ex.check_permutation(lambda: wrong)
