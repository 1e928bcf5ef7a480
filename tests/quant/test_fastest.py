"""Choosing the weight format by measurement (quant/fastest.py): which format wins is the machine's business (never
asserted: tests do not time anything); what is tested is that the choice is one of the candidates, cached, and that
bad input is refused. Applying the choice is the loader's (tests/checkpoints/test_load.py)."""

from __future__ import annotations

import copy

import pytest
import torch

import qwen_min as qm
from qwen_min.formats import LOSSLESS
from qwen_min.quant import fastest
from qwen_min.quant.fastest import fastest_format
from qwen_min.quant.quantize import to_format

CFG = qm.QwenConfig.from_name("tiny", vocab_size=256, intermediate_size=192)


def tiny_model():
    torch.manual_seed(0)
    return qm.Qwen(CFG).eval()


def test_fastest_format_measures_once_per_batch_size_and_caches(monkeypatch):
    fastest._CACHE.clear()
    timed = []
    real = fastest._layer_seconds
    monkeypatch.setattr(fastest, "_layer_seconds", lambda shapes, fmt, batch, device, group_size:
                        timed.append((fmt, batch)) or real(shapes, fmt, batch, device, group_size))
    first = fastest_format(CFG, batch=4)
    assert first in LOSSLESS and sorted(f for f, _ in timed) == sorted(LOSSLESS)
    assert fastest_format(CFG, batch=4) == first and len(timed) == len(LOSSLESS)  # cached: nothing timed again
    fastest_format(CFG, batch=2)
    assert len(timed) == 2 * len(LOSSLESS)


def test_fastest_format_picks_the_quickest_measured(monkeypatch):
    fastest._CACHE.clear()
    seconds = {"fp32": 3.0, "bf16": 1.0, "int8": 2.0, "int4": 0.5}
    monkeypatch.setattr(fastest, "_layer_seconds", lambda shapes, fmt, batch, device, group_size: seconds[fmt])
    assert fastest_format(CFG, batch=1) == "bf16"  # int4 is not a default candidate: it costs perplexity
    assert fastest_format(CFG, batch=1, candidates=("int8", "int4"), group_size=32) == "int4"
    assert fastest_format(CFG, batch=1, candidates=("int8", "int4"), group_size=128) == "int8"  # 64 inputs: no group of 128


def test_fastest_format_refuses_bad_input():
    with pytest.raises(ValueError, match="unknown format"):
        fastest_format(CFG, batch=1, candidates=("fp8",))
    with pytest.raises(ValueError, match="batch must be >= 1"):
        fastest_format(CFG, batch=0)


@pytest.mark.parametrize("fmt", ["fp32", "bf16", "int8", "int4"])
def test_to_format_equals_doing_it_by_hand(fmt):
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(1))
    by_hand = tiny_model()
    by_hand = qm.quantize(by_hand, fmt, group_size=32) if fmt.startswith("int") else by_hand.to(
        torch.bfloat16 if fmt == "bf16" else torch.float32)
    converted = to_format(tiny_model(), fmt, group_size=32)
    with torch.no_grad():
        assert torch.equal(converted(ids), by_hand(ids))
    with pytest.raises(ValueError, match="already quantised"):
        to_format(qm.quantize(tiny_model(), "int8"), "bf16")


def test_generate_never_changes_the_weights_it_is_given():
    """Choosing a format is a loading decision: generate has no dtype option and leaves every tensor as it was."""
    model = tiny_model()
    before = copy.deepcopy(model.state_dict())
    qm.generate(model, [[1, 2, 3], [4, 5]], max_new_tokens=4, stop_ids=())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and before.keys() == model.state_dict().keys()
    with pytest.raises(TypeError):
        qm.generate(model, [1, 2], max_new_tokens=2, dtype="auto")
