"""`qm.load`: every name of a checkpoint (size, .gguf, Hugging Face folder, run folder) and every format gives the
model that reading the file and converting it by hand gives, and bad input is one clear error."""

from __future__ import annotations

import copy

import pytest
import torch

import qwen_min as qm
from qwen_min.formats import FORMATS, check_format, format_of
from qwen_min.quant import fastest
from qwen_min.quant.quantize import to_format

CFG = qm.QwenConfig.from_name("tiny", vocab_size=256, hidden_size=128, intermediate_size=256)  # int4: groups of 128
IDS = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def folder(tmp_path_factory, official_tokenizer_dir):
    """A run folder of ours: run.json beside model/ (config.json, safetensors, tokenizer.json)."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    qm.save_pretrained(qm.Qwen(CFG).eval(), run / "model")
    qm.Tokenizer.from_pretrained(official_tokenizer_dir).save_pretrained(run / "model")
    (run / "run.json").write_text("{}\n")
    return run


def logits(model):
    with torch.no_grad():
        return model(IDS).float()


@pytest.mark.parametrize("fmt", ["fp32", "bf16", "fp16", "int8", "int4"])
def test_each_format_equals_reading_then_converting_by_hand(folder, fmt):
    model, tok = qm.load(folder, format=fmt, log=lambda msg: None)
    by_hand = qm.from_pretrained(folder / "model")
    by_hand = qm.quantize(by_hand, fmt) if fmt.startswith("int") else by_hand.to(
        {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[fmt])
    assert torch.equal(logits(model), logits(by_hand)) and format_of(model) == fmt
    assert tok.encode("def f(x):") == qm.Tokenizer.from_pretrained(folder / "model").encode("def f(x):")


def test_a_run_folder_and_its_model_folder_name_the_same_checkpoint(folder):
    assert qm.checkpoint_path(folder) == qm.checkpoint_path(folder / "model") == folder / "model"


def test_auto_takes_the_measured_winner_for_the_batch(folder, monkeypatch):
    fastest._CACHE.clear()
    monkeypatch.setattr(fastest, "_layer_seconds",
                        lambda shapes, fmt, batch, device, group_size: {"fp32": 3.0, "bf16": 2.0, "int8": 1.0}[fmt])
    said = []
    model, _ = qm.load(folder, format="auto", batch=4, log=said.append)
    assert format_of(model) == "int8" and "format auto: int8 decodes 4 rows fastest here" in said
    assert torch.equal(logits(model), logits(qm.quantize(qm.from_pretrained(folder / "model"), "int8")))


def test_int4_gptq_needs_calibration_and_uses_it(folder):
    with pytest.raises(ValueError, match="calibration"):
        qm.load(folder, format="int4-gptq", log=lambda msg: None)
    calibration = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(2))
    model, _ = qm.load(folder, format="int4-gptq", calibration=lambda tok: calibration, log=lambda msg: None)
    by_hand = qm.quantize(qm.from_pretrained(folder / "model"), "int4", calibration=calibration, progress=False)
    assert torch.equal(logits(model), logits(by_hand))


def test_bad_names_and_formats_are_one_clear_error(folder):
    with pytest.raises(ValueError, match="no checkpoint '3B'"):
        qm.load("3B")
    with pytest.raises(ValueError, match="unknown format 'fp8'"):
        qm.load(folder, format="fp8")
    with pytest.raises(ValueError, match="already quantised"):
        to_format(qm.quantize(copy.deepcopy(qm.from_pretrained(folder / "model")), "int8"), "bf16")
    assert [check_format(f) for f in FORMATS] == list(FORMATS)
