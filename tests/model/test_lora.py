"""LoRA adapters saved alone: the round trip gives the merged model's logits, a bad file is one clear error."""

from __future__ import annotations

import json

import pytest
import torch

import qwen_min as qm
from qwen_min.model.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, apply_lora, load_adapters, merge_lora, save_adapters

CFG = qm.QwenConfig.from_name("tiny", vocab_size=256)
IDS = torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(1))


def trained_lora(rank=4, alpha=8.0, targets=("q_proj", "up_proj"), seed=0):
    """A tiny base model and a copy of it with random (non-zero) adapters, as after training."""
    torch.manual_seed(seed)
    base = qm.Qwen(CFG).eval()
    model = qm.Qwen(CFG).eval()
    model.load_state_dict(base.state_dict())
    apply_lora(model, rank, alpha, targets)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.05)
    return base, model


def test_saved_adapters_on_the_base_give_the_trained_model(tmp_path):
    base, model = trained_lora()
    save_adapters(model, tmp_path / "adapters", base="0.5B")
    config = json.loads((tmp_path / "adapters" / ADAPTER_CONFIG).read_text())
    assert (config["base"], config["rank"], config["alpha"], config["targets"]) == ("0.5B", 4, 8.0, ["q_proj", "up_proj"])
    with torch.no_grad():
        expected = model(IDS)
        loaded = load_adapters(base, tmp_path / "adapters")
        assert not torch.equal(loaded(IDS), qm.Qwen(CFG).eval()(IDS))
        torch.testing.assert_close(loaded(IDS), expected, atol=1e-5, rtol=1e-5)
    assert not any("lora" in name for name in loaded.state_dict())  # merged: plain Linear layers
    n_lora = sum(p.numel() for n, p in model.named_parameters() if "lora" in n)
    assert (tmp_path / "adapters" / ADAPTER_WEIGHTS).stat().st_size < 4 * n_lora + 10_000  # adapters only, fp32


def test_qm_load_reads_adapters_on_adapters(tmp_path, official_tokenizer_dir):
    """A run folder whose model/ holds adapters on another run's adapters (GRPO on DPO): both merged onto the base."""
    base, first = trained_lora(seed=0)
    qm.save_pretrained(base, tmp_path / "base")
    qm.Tokenizer.from_pretrained(official_tokenizer_dir).save_pretrained(tmp_path / "base")
    save_adapters(first, tmp_path / "dpo" / "model", base=str(tmp_path / "base"))
    second = merge_lora(first)
    apply_lora(second, rank=2, alpha=4.0, targets=("v_proj",))
    with torch.no_grad():
        for name, p in second.named_parameters():
            if name.endswith("lora_B"):
                p.normal_(0, 0.05)
        expected = second(IDS)
    save_adapters(second, tmp_path / "grpo" / "model", base=str(tmp_path / "dpo"))
    assert json.loads((tmp_path / "grpo" / "model" / ADAPTER_CONFIG).read_text())["base"] == "../../dpo"  # relative
    (tmp_path / "moved").mkdir()
    for name in ("base", "dpo", "grpo"):  # the runs move together: the relative bases still resolve
        (tmp_path / name).rename(tmp_path / "moved" / name)
    model, tok = qm.load(tmp_path / "moved" / "grpo", log=lambda msg: None)
    with torch.no_grad():
        torch.testing.assert_close(model(IDS), expected, atol=1e-5, rtol=1e-5)
    assert tok.vocab_size == qm.Tokenizer.from_pretrained(official_tokenizer_dir).vocab_size  # the base's tokenizer


def test_missing_or_truncated_adapters_are_one_clear_error(tmp_path):
    base, model = trained_lora()
    folder = save_adapters(model, tmp_path / "adapters", base="0.5B")
    weights = folder / ADAPTER_WEIGHTS
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="sha256 differs.*truncated"):
        load_adapters(qm.Qwen(CFG), folder)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="the tensors are not"):
        load_adapters(qm.Qwen(CFG), folder)
    (folder / ADAPTER_CONFIG).unlink()
    with pytest.raises(FileNotFoundError, match="adapter.json: no such file"):
        load_adapters(qm.Qwen(CFG), folder)


def test_adapters_of_another_shape_are_refused(tmp_path):
    _, model = trained_lora(targets=("q_proj",))
    folder = save_adapters(model, tmp_path / "adapters", base="0.5B")
    wider = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=256, hidden_size=128, intermediate_size=256))
    with pytest.raises(ValueError, match="has shape"):
        load_adapters(wider, folder)


def test_a_model_without_adapters_has_nothing_to_save(tmp_path):
    with pytest.raises(ValueError, match="no LoRA layers"):
        save_adapters(qm.Qwen(CFG), tmp_path, base="0.5B")
