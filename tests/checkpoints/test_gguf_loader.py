"""The GGUF loader on small files written here with `gguf.GGUFWriter`: every quantisation type the
real checkpoint uses (and more) decoded bit-identically to `gguf.quants.dequantize`, the config
read from the metadata, logits equal to transformers' GGUF loader, and one clear error for each
kind of bad file. The real checkpoint is covered in test_real_checkpoint.py."""

from __future__ import annotations

import re

import gguf
import numpy as np
import pytest
import torch

import qwen_min as qm
from qwen_min.checkpoints.gguf_loader import _HF_NAMES, GGUFError, load_gguf, load_gguf_state_dict, read_gguf
from qwen_min.cli import main as cli_main

Q = gguf.GGMLQuantizationType
# hidden and intermediate sizes are multiples of 256, the K-quant block
TINY = qm.QwenConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=1024, rope_theta=10_000.0, tie_word_embeddings=False)
# one type per kind of tensor, covering what the default checkpoint mixes (Q4_K, Q5_0, Q6_K, Q8_0, F32) and more
TYPES = {"token_embd": Q.Q5_0, "output": Q.Q8_0, "attn_q": Q.Q4_K, "attn_k": Q.Q4_0, "attn_v": Q.Q8_0,
         "attn_output": Q.F16, "ffn_gate": Q.Q5_1, "ffn_up": Q.BF16, "ffn_down": Q.Q6_K}
GGUF_NAMES = {hf.replace("{i}", str(i)): g.replace("{i}", str(i))
              for g, hf in _HF_NAMES.items() for i in range(TINY.num_hidden_layers)}


def k_quant_bytes(rows: int, cols: int, qtype, rng) -> np.ndarray:
    """Random K-quant blocks with sane fp16 super-block scales (gguf can decode K-quants but not encode them)."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (rows, cols // block, size), dtype=np.uint8)
    scale = rng.uniform(1e-3, 2e-3, (rows, cols // block, 1)).astype(np.float16).view(np.uint8)
    if qtype == Q.Q4_K:  # d, dmin, 12 bytes of 6-bit scales, 128 bytes of nibbles
        raw[..., 0:2], raw[..., 2:4] = scale, scale
    elif qtype == Q.Q6_K:  # 128 low nibbles, 64 high bits, 16 int8 scales, then d
        raw[..., 208:210] = scale
    return raw.reshape(rows, -1)


def write_gguf(path, cfg=TINY, types=TYPES, arch="qwen2", seed=0, drop=(), extra=None):
    """A GGUF file holding a random Qwen of `cfg`, each tensor kind stored in its type from `types` (norms, biases: F32)."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_token_list([f"t{i}" for i in range(cfg.vocab_size)])  # transformers reads the vocab size from it
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in qm.Qwen(cfg).state_dict().items()}
    if cfg.tie_word_embeddings:
        del shapes["lm_head.weight"]
    for hf, shape in shapes.items():
        name = GGUF_NAMES[hf]
        if name in drop:
            continue
        qtype = types.get(name.split(".")[-2], Q.F32) if len(shape) == 2 else Q.F32
        values = rng.normal(0, 0.05 if len(shape) == 2 else 1.0, shape).astype(np.float32)
        if qtype == Q.F32:
            w.add_tensor(name, values)
        elif qtype == Q.F16:
            w.add_tensor(name, values.astype(np.float16))
        elif qtype in (Q.Q4_K, Q.Q6_K):
            w.add_tensor(name, k_quant_bytes(*shape, qtype, rng), raw_dtype=qtype)
        else:
            w.add_tensor(name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
    for name, array in (extra or {}).items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_tensors_bit_identical_to_gguf_dequantize(tiny_gguf):
    cfg, state = load_gguf_state_dict(tiny_gguf)
    reader = gguf.GGUFReader(str(tiny_gguf))
    assert {t.tensor_type for t in reader.tensors} >= {Q.Q4_K, Q.Q5_0, Q.Q6_K, Q.Q8_0, Q.F32, Q.F16, Q.BF16}
    assert len(state) == len(reader.tensors)
    hf_of = {g: hf for hf, g in GGUF_NAMES.items()}
    for t in reader.tensors:
        want = torch.from_numpy(np.array(gguf.quants.dequantize(t.data, t.tensor_type)))
        got = state[hf_of[t.name]]
        assert got.dtype == torch.float32
        assert torch.equal(got, want.reshape(got.shape)), t.name
        assert got.abs().max() > 0, t.name


def test_config_from_metadata(tiny_gguf):
    cfg, _ = load_gguf_state_dict(tiny_gguf)
    assert cfg == TINY
    f = read_gguf(tiny_gguf)
    assert f.metadata["general.architecture"] == "qwen2"
    assert f.tensors["blk.0.attn_q.weight"].type_name == "Q4_K"
    assert f.tensors["blk.1.ffn_down.weight"].shape == (TINY.hidden_size, TINY.intermediate_size)  # (out, in)


def test_logits_match_transformers_gguf_loader(tiny_gguf):
    from transformers import AutoModelForCausalLM

    model = qm.from_pretrained(tiny_gguf)
    hf = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name, dtype=torch.float32).eval()
    hf_state = hf.state_dict()
    for name, t in model.state_dict().items():
        assert torch.equal(t, hf_state[name]), name
    ids = torch.randint(0, TINY.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model(ids) - hf(ids).logits).abs().max().item()
    assert diff <= 1e-5


def test_dtype_device_and_untied_head(tiny_gguf):
    fp32, bf16 = load_gguf(tiny_gguf), load_gguf(tiny_gguf, dtype=torch.bfloat16)
    for (name, a), b in zip(fp32.state_dict().items(), bf16.state_dict().values()):
        assert b.dtype == torch.bfloat16 and torch.equal(b, a.to(torch.bfloat16)), name
    assert not fp32.training
    assert fp32.lm_head.weight.data_ptr() != fp32.model.embed_tokens.weight.data_ptr()
    assert not torch.equal(fp32.lm_head.weight, fp32.model.embed_tokens.weight)


def test_tied_when_no_output_tensor(tmp_path):
    cfg = TINY.replace(tie_word_embeddings=True)
    model = load_gguf(write_gguf(tmp_path / "tied.gguf", cfg=cfg))
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert model.lm_head.weight.device.type == "cpu"


def _assert_one_line_error(path, match, capsys):
    with pytest.raises(GGUFError, match=match) as info:
        qm.from_pretrained(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    # the command line turns it into one line on stderr and exit status 2, no traceback
    assert cli_main(["generate", "--checkpoint", str(path), "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("qwen-min generate: error: ") and re.search(match, err[-1])


@pytest.mark.parametrize("keep", [3, 100, 20_000, -1000])
def test_truncated_file(tiny_gguf, tmp_path, keep, capsys):
    data = tiny_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:keep])
    _assert_one_line_error(cut, "truncated|not a GGUF", capsys)


def test_corrupted_files(tiny_gguf, tmp_path, capsys):
    data = bytearray(tiny_gguf.read_bytes())
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04" + data[4:])
    _assert_one_line_error(bad, "not a GGUF file", capsys)
    bad.write_bytes(data[:4] + (7).to_bytes(4, "little") + data[8:])
    _assert_one_line_error(bad, "version 7", capsys)
    f = read_gguf(tiny_gguf)
    kinds = bytearray(data)
    kinds[24 + 8 + len("general.architecture")] = 99  # the value type of the first metadata entry
    bad.write_bytes(kinds)
    _assert_one_line_error(bad, "unknown value type 99", capsys)
    assert f.metadata["general.architecture"] == "qwen2"
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    _assert_one_line_error(empty, "empty file", capsys)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        qm.from_pretrained(tmp_path / "nope.gguf")


def test_wrong_architecture(tmp_path, capsys):
    _assert_one_line_error(write_gguf(tmp_path / "llama.gguf", arch="llama"), "architecture 'llama' is not supported", capsys)


def test_unsupported_quantisation_type(tmp_path, capsys):
    path = write_gguf(tmp_path / "int.gguf", drop={"blk.0.attn_norm.weight"},
                      extra={"blk.0.attn_norm.weight": np.ones(TINY.hidden_size, dtype=np.int32)})
    _assert_one_line_error(path, "'blk.0.attn_norm.weight' uses quantisation type I32", capsys)


def test_missing_and_unexpected_tensors(tmp_path, capsys):
    _assert_one_line_error(write_gguf(tmp_path / "m.gguf", drop={"blk.1.ffn_up.weight"}),
                           "missing tensor.*model.layers.1.mlp.up_proj.weight", capsys)
    _assert_one_line_error(write_gguf(tmp_path / "u.gguf", extra={"blk.0.attn_sinks.weight": np.ones(4, np.float32)}),
                           "unexpected tensor 'blk.0.attn_sinks.weight'", capsys)
    extra_layer = {"blk.2.attn_norm.weight": np.ones(TINY.hidden_size, np.float32)}
    _assert_one_line_error(write_gguf(tmp_path / "l.gguf", extra=extra_layer),
                           r"unexpected tensor\(s\) model.layers.2.input_layernorm.weight", capsys)
