"""`qm.save_gguf`: a small model with the real vocabulary written as F32, F16 and Q8_0, then read back by
`gguf.GGUFReader`, by `qm.from_pretrained` (exact for F32/F16, Q8_0 within its quantisation error) and by
transformers' GGUF loader (logits equal to ours on the same file, 1e-4 in fp32)."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

import qwen_min as qm
from qwen_min.checkpoints.gguf_writer import gguf_name
from qwen_min.gguf.blocks import dequantize_q8_0, quantize_q8_0

VOCAB = 151936  # the real vocabulary, so the official tokenizer fits; hidden 64 keeps the model ~40 MB


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = qm.QwenConfig.from_name("tiny", vocab_size=VOCAB, intermediate_size=192)
    return qm.Qwen(cfg).eval()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    return {dtype: qm.save_gguf(model, folder / f"tiny-{dtype}.gguf", dtype=dtype) for dtype in ("F32", "F16", "Q8_0")}


IDS = torch.tensor([[9707, 11, 1879, 0, 151644, 77091, 198, 750, 15801, 1445]])


def rounded(model, to):
    """The model's state dict as the file stores it: matrices rounded by `to`, vectors exact."""
    return {k: (to(v) if v.ndim == 2 else v) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("dtype, to", [
    ("F32", lambda w: w),
    ("F16", lambda w: w.half().float()),
    ("Q8_0", lambda w: torch.from_numpy(dequantize_q8_0(quantize_q8_0(w.numpy())))),
])
def test_from_pretrained_reads_it_back(model, files, dtype, to):
    loaded = qm.from_pretrained(files[dtype])
    assert loaded.config.tie_word_embeddings and loaded.config.vocab_size == VOCAB
    expected = rounded(model, to)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_q8_0_file_logits_within_quantisation_error(model, files):
    with torch.no_grad():
        reference, ours = model(IDS), qm.from_pretrained(files["Q8_0"])(IDS)
    assert (ours - reference).abs().max() < 0.02 * reference.abs().max()


def test_gguf_reader_reads_metadata_tensors_and_tokenizer(model, files):
    reader = gguf.GGUFReader(files["Q8_0"])
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    assert field("general.architecture") == "qwen2" and field("qwen2.block_count") == model.config.num_hidden_layers
    assert field("qwen2.embedding_length") == 64 and field("qwen2.attention.head_count_kv") == model.config.num_key_value_heads
    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.eos_token_id") == 151645
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32  # vectors stay F32
    assert "output.weight" not in types  # tied: written once
    assert len(reader.tensors) == len(model.state_dict()) - 1


def test_tokenizer_round_trips(files, official_tokenizer_dir):
    ours, official = qm.Tokenizer.from_pretrained(files["F32"]), qm.Tokenizer.from_pretrained(official_tokenizer_dir)
    text = "def f(x):\n    return x ** 2  # 平方 <|im_end|>"
    assert ours.encode(text, allowed_special="all") == official.encode(text, allowed_special="all")


def test_gguf_names_invert_the_loader_map():
    assert gguf_name("model.layers.11.self_attn.q_proj.bias") == "blk.11.attn_q.bias"
    assert gguf_name("lm_head.weight") == "output.weight"
    with pytest.raises(ValueError, match="no GGUF name"):
        gguf_name("model.layers.0.mlp.experts.0.up_proj.weight")


def test_refuses_bad_dtype_and_quantised_models(tmp_path):
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=512, intermediate_size=192))
    with pytest.raises(ValueError, match="unknown GGUF dtype"):
        qm.save_gguf(model, tmp_path / "x.gguf", dtype="Q4_K")
    with pytest.raises(ValueError, match="went through qm.quantize"):
        qm.save_gguf(qm.quantize(model, "int8"), tmp_path / "x.gguf")


@pytest.mark.slow
def test_transformers_loads_it_with_equal_logits(model, files):
    import accelerate  # noqa: F401  (pinned in requirements.lock: transformers needs it to read GGUF files)
    from transformers import AutoModelForCausalLM

    path = files["F32"]
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    ours = qm.from_pretrained(path)
    with torch.no_grad():
        np.testing.assert_allclose(hf(IDS).logits.numpy(), ours(IDS).numpy(), atol=1e-4, rtol=0)


def test_commands_quantize_a_written_checkpoint(files, capsys):
    """`generate --format int8` and `bench generate --compare formats --formats ... --batch ...` on a file save_gguf
    wrote."""
    from qwen_min.cli import main

    path = str(files["F32"])
    assert main(["generate", "def f(x):", "--checkpoint", path, "--format", "int8", "--max-new-tokens", "3"]) == 0
    assert main(["bench", "generate", "--checkpoint", path, "--compare", "formats", "--formats", "fp32,bf16,int8",
                 "--batch", "1,2",
                 "--prompt-tokens", "4", "--new-tokens", "3", "--repeats", "1", "--profile"]) == 0
    out = capsys.readouterr().out
    for fmt in ("fp32", "bf16", "int8"):  # (int4's groups of 128 do not fit this model's 64 features)
        assert f"\n{fmt:7}     2 " in out, fmt
        assert f"\n{fmt}, batch 1: one decode step" in out, fmt  # --profile: the first batch size
    assert "batch 2: decode speed vs bf16: fp32" in out
    assert "aten::_weight_int8pack_mm" in out.split("int8, batch 1: one decode step")[1]  # the kernel shows in the profile
    assert main(["bench", "generate", "--checkpoint", path, "--compare", "formats", "--formats", "fp8"]) == 2


def test_llama_cpp_decodes_the_written_file_like_qwen_min(tmp_path, monkeypatch):
    """llama.cpp (when llama-cpp-cffi is installed and loads) reads a save_gguf F32 file and decodes the same greedy
    tokens as qwen_min; without it, the bench says why in one line."""
    from qwen_min.bench import generation_speed as bench

    torch.manual_seed(0)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=VOCAB, intermediate_size=192)).eval()
    with torch.no_grad():  # larger weights than the init, so the greedy reply varies instead of repeating one token
        for p in model.parameters():
            p.normal_(0, 0.3 if p.dim() == 2 else 0.1).add_(1.0 if p.dim() == 1 else 0.0)
    path = qm.save_gguf(model, tmp_path / "varied.gguf", dtype="F32")
    prompt = IDS[0].tolist()
    theirs, reason = bench.llama_cpp_decode(path, prompt, new_tokens=8, repeats=1)
    if theirs is None:
        assert reason.startswith(("llama-cpp-cffi is not installed", "llama.cpp's library does not load"))
    else:
        ours = qm.generate(qm.from_pretrained(path), prompt, max_new_tokens=8, stop_ids=())
        assert theirs["tokens"] == ours and len(set(ours)) > 3
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: None)
    missing = f"llama-cpp-cffi is not installed ({bench.LLAMA_CPP_INSTALL})"
    assert bench.llama_cpp_decode(path, prompt, 8) == (None, missing)
