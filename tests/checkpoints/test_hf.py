"""Hugging Face folders in and out: transformers -> qwen_min -> transformers is exact; bad checkpoints give one clear error."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

import qwen_min as qm
from qwen_min.checkpoints.hf import CheckpointError
from qwen_min.config import QwenConfig


def _reference(tmp_path, tied: bool, shard: str | None = None):
    """A random transformers Qwen2ForCausalLM saved as a Hugging Face folder (sharded when `shard` is given)."""
    cfg = QwenConfig.from_name("tiny", vocab_size=211, intermediate_size=48, tie_word_embeddings=tied,
                               num_attention_heads=6, num_key_value_heads=2, hidden_size=48, rope_theta=3e4)
    hf_cfg = Qwen2Config(**cfg.to_hf_dict())
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    ref = Qwen2ForCausalLM(hf_cfg)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.2)
    folder = tmp_path / "hf"
    ref.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    return ref.eval(), folder


def _hf_logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("tied,shard", [(True, None), (False, None), (True, "20KB"), (False, "30KB")])
def test_transformers_to_qwen_min_to_transformers_is_exact(tmp_path, tied, shard):
    ref, folder = _reference(tmp_path, tied, shard)
    assert (folder / "model.safetensors.index.json").exists() == bool(shard)
    ids = torch.randint(0, 211, (2, 13), generator=torch.Generator().manual_seed(1))
    want = _hf_logits(ref, ids)
    model = qm.from_pretrained(folder)
    model.set_attn_impl("eager")
    assert not model.training
    with torch.no_grad():
        assert torch.equal(model(ids), want)
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    out = tmp_path / "ours"
    qm.save_pretrained(model, out, max_shard_bytes=25_000 if shard else 5_000_000_000)
    assert (out / "model.safetensors.index.json").exists() == bool(shard)
    back = AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    assert back.config.tie_word_embeddings == tied
    assert torch.equal(_hf_logits(back, ids), want)
    for name, t in ref.state_dict().items():
        assert torch.equal(back.state_dict()[name], t), name
    again = qm.from_pretrained(out)  # and our own files load back too
    again.set_attn_impl("eager")
    with torch.no_grad():
        assert torch.equal(again(ids), want)


def test_loads_in_the_requested_dtype(tmp_path):
    ref, folder = _reference(tmp_path, tied=True)
    model = qm.from_pretrained(folder, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    for name, t in ref.state_dict().items():
        assert torch.equal(model.state_dict()[name], t.to(torch.bfloat16)), name
    qm.save_pretrained(model, tmp_path / "bf16")
    saved = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert saved["dtype"] == "bfloat16"
    assert {t.dtype for t in load_file(tmp_path / "bf16" / "model.safetensors").values()} == {torch.bfloat16}


def test_gguf_paths_go_to_the_gguf_loader(tmp_path, monkeypatch):
    calls = []
    fake = lambda path, dtype, device: calls.append((path, dtype, device)) or "model"  # noqa: E731
    monkeypatch.setattr("qwen_min.checkpoints.hf.load_gguf", fake)
    assert qm.from_pretrained(tmp_path / "m.gguf", dtype=torch.bfloat16, device="cpu") == "model"
    assert calls == [(tmp_path / "m.gguf", torch.bfloat16, "cpu")]


# ---------------------------------------------------------------------------- bad input
def _edit_config(folder, **changes):
    d = json.loads((folder / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    (folder / "config.json").write_text(json.dumps(d))


def _edit_tensors(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _add_tensor(name, value):
    return lambda folder: _edit_tensors(folder, lambda t: t.update({name: value}))


BAD = {
    "missing config key": (lambda f: _edit_config(f, hidden_size=None), ValueError,
                           r"config\.json: missing key\(s\) hidden_size"),
    "unsupported architecture": (lambda f: _edit_config(f, architectures=["LlamaForCausalLM"]), ValueError,
                                 r"config\.json: unsupported architecture 'LlamaForCausalLM'"),
    "unsupported model_type": (lambda f: _edit_config(f, model_type="llama"), ValueError,
                               r"config\.json: unsupported model_type"),
    "missing tensor": (lambda f: _edit_tensors(f, lambda t: t.pop("model.layers.1.self_attn.k_proj.bias")), ValueError,
                       r"missing tensor\(s\) model\.layers\.1\.self_attn\.k_proj\.bias"),
    "unexpected tensor": (_add_tensor("model.layers.1.self_attn.o_proj.bias", torch.zeros(48)), ValueError,
                          r"model\.safetensors: unexpected tensor model\.layers\.1\.self_attn\.o_proj\.bias"),
    "wrong shape": (_add_tensor("model.norm.weight", torch.ones(47)), ValueError,
                    r"model\.safetensors: tensor model\.norm\.weight has shape \(47,\), the config implies \(48,\)"),
    "truncated file": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:-100]), ValueError,
                       r"model\.safetensors: cannot read safetensors"),
    "untied head in a tied model": (_add_tensor("lm_head.weight", torch.zeros(211, 48)), ValueError,
                                    r"lm_head\.weight differs from model\.embed_tokens\.weight"),
    "no config.json": (lambda f: (f / "config.json").unlink(), FileNotFoundError, r"config\.json: missing"),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), FileNotFoundError, r"no model\.safetensors"),
    "config.json not JSON": (lambda f: (f / "config.json").write_text("{"), ValueError, r"config\.json: not valid JSON"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_checkpoints_fail_with_one_clear_error(tmp_path, case):
    _, folder = _reference(tmp_path, tied=True)
    break_it, error, message = BAD[case]
    break_it(folder)
    with pytest.raises(error, match=message):
        qm.from_pretrained(folder)


def test_bad_sharded_checkpoints_fail_with_one_clear_error(tmp_path):
    _, folder = _reference(tmp_path, tied=False, shard="30KB")
    index_file = folder / "model.safetensors.index.json"
    index = json.loads(index_file.read_text())
    first = sorted(set(index["weight_map"].values()))[0]
    moved = next(n for n, f in index["weight_map"].items() if f != first)
    index["weight_map"][moved] = first  # the index now points at the wrong shard
    index_file.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=f"{first}: disagrees with model.safetensors.index.json: the index lists {moved}"):
        qm.from_pretrained(folder)
    (folder / first).unlink()
    with pytest.raises(FileNotFoundError, match=f"{first}: missing"):
        qm.from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="no such checkpoint folder"):
        qm.from_pretrained(tmp_path / "nowhere")
