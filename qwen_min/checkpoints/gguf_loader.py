"""Load a GGUF checkpoint (llama.cpp's single-file format) into a `qm.Qwen`, without transformers.

The container (header, metadata, tensor table) is parsed by gguf/file.py, the quantised blocks
are decoded by gguf/blocks.py; this module maps them onto a `QwenConfig` and a state dict.

Design choices
- The blocks are decoded by qwen_min's own decoders, one per type the official checkpoints
  hold and a few more (`_decoders`, the one table of what can be loaded). They are bit-identical
  to `gguf.quants.dequantize`, which transformers' GGUF loader calls, on every tensor of both
  official files (tests/gguf/test_blocks.py). `gguf` still names the types (and sizes them, gguf/file.py).
- Decoding runs over chunks of ~64K weights (a few rows) written into one fp32 array, so the
  temporaries stay in cache: decoding the 0.5B takes ~2 s on 2 cores (`gguf`'s ~3.5 s), and
  the whole load ~8-10 s, the same as with `gguf`'s decoder.
- qwen2 q/k weights are stored in Hugging Face order (llama.cpp permutes q/k rows only for
  the `llama` architecture), so the name mapping is all there is: `_HF_NAMES`.
- `output.weight` present means an untied lm_head. The default checkpoint has one (Q8_0)
  beside `token_embd.weight` (Q5_0): they differ by quantisation noise, so we keep both.
- Memory: the model is built on the meta device and the dequantised tensors are *assigned*
  (`load_state_dict(assign=True)`), so weights are never held twice. Each tensor is
  dequantised to fp32 (what `gguf` and transformers produce), then cast to the requested dtype.
- Every problem found is one `GGUFError` line naming the file and the field or tensor.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import numpy as np
import torch

from qwen_min.config import QwenConfig
from qwen_min.gguf import blocks as gguf_blocks
from qwen_min.gguf.file import GGUFError, GGUFFile, GGUFTensor, read_gguf
from qwen_min.model.qwen import Qwen

SUPPORTED_ARCHITECTURES = ("qwen2",)
_CHUNK = 1 << 16  # weights decoded at once: a few rows, small enough to stay in cache

# GGUF tensor name -> Hugging Face Qwen2ForCausalLM name ("{i}" is the layer index)
_HF_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_q.bias": "model.layers.{i}.self_attn.q_proj.bias",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_k.bias": "model.layers.{i}.self_attn.k_proj.bias",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_v.bias": "model.layers.{i}.self_attn.v_proj.bias",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
}


# ---------------------------------------------------------------------------- metadata -> config
def gguf_config(f: GGUFFile) -> QwenConfig:
    """The `QwenConfig` a GGUF file describes (metadata keys are prefixed by the architecture name)."""
    arch = f.metadata.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise GGUFError(f"{f.path}: architecture {arch!r} is not supported (qwen_min loads {', '.join(SUPPORTED_ARCHITECTURES)})")

    def field(key: str, default=None):
        value = f.metadata.get(f"{arch}.{key}", default)
        if value is None:
            raise GGUFError(f"{f.path}: metadata key {arch}.{key} is missing")
        return value

    if "token_embd.weight" not in f.tensors:
        raise GGUFError(f"{f.path}: tensor 'token_embd.weight' is missing")
    heads = int(field("attention.head_count"))
    hidden = int(field("embedding_length"))
    rope_scaling = None
    if f.metadata.get(f"{arch}.rope.scaling.type", "none") == "yarn":
        rope_scaling = {"rope_type": "yarn", "factor": float(field("rope.scaling.factor")),
                        "original_max_position_embeddings": int(field("rope.scaling.original_context_length"))}
    return QwenConfig(
        vocab_size=f.tensors["token_embd.weight"].shape[0],  # the metadata has no vocab size: the embedding rows are it
        hidden_size=hidden,
        intermediate_size=int(field("feed_forward_length")),
        num_hidden_layers=int(field("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=int(field("attention.head_count_kv", heads)),
        head_dim=int(field("attention.key_length", hidden // heads)),
        max_position_embeddings=int(field("context_length")),
        rope_theta=float(field("rope.freq_base", 10_000.0)),
        rope_scaling=rope_scaling,
        # stored as float32 (9.99999997e-07): take float32's shortest decimal, the 1e-6 of config.json
        rms_norm_eps=float(str(np.float32(field("attention.layer_norm_rms_epsilon")))),
        tie_word_embeddings="output.weight" not in f.tensors,
        attention_bias="blk.0.attn_q.bias" in f.tensors,
    )


def hf_name(gguf_name: str) -> str | None:
    """The Hugging Face parameter name of a GGUF tensor, or None if it is not one.

    >>> hf_name("blk.3.ffn_down.weight")
    'model.layers.3.mlp.down_proj.weight'
    """
    layer = re.match(r"blk\.(\d+)\.", gguf_name)
    key = gguf_name.replace(layer.group(0), "blk.{i}.", 1) if layer else gguf_name
    pattern = _HF_NAMES.get(key)
    return pattern.format(i=layer.group(1)) if pattern and layer else pattern


# ---------------------------------------------------------------------------- tensors
@cache
def _decoders() -> dict:
    """{GGMLQuantizationType: decoder of bytes (rows, row bytes) -> float32 (rows, row length)}: what qwen_min loads."""
    import gguf

    Q = gguf.GGMLQuantizationType
    return {Q.F32: gguf_blocks.dequantize_f32, Q.F16: gguf_blocks.dequantize_f16, Q.BF16: gguf_blocks.dequantize_bf16,
            Q.Q8_0: gguf_blocks.dequantize_q8_0, Q.Q4_0: gguf_blocks.dequantize_q4_0, Q.Q4_1: gguf_blocks.dequantize_q4_1,
            Q.Q5_0: gguf_blocks.dequantize_q5_0, Q.Q5_1: gguf_blocks.dequantize_q5_1,
            Q.Q4_K: gguf_blocks.dequantize_q4_k, Q.Q6_K: gguf_blocks.dequantize_q6_k}


def dequantize_tensor(f: GGUFFile, name: str, dtype: torch.dtype = torch.float32,
                      device: str | torch.device = "cpu") -> torch.Tensor:
    """Decode one tensor to fp32 (bit-identical to `gguf.quants.dequantize` and transformers), then cast to dtype on device."""
    t = f.tensors[name]
    decode = _decoders().get(t.qtype)
    if decode is None:
        raise _unsupported(f, t)
    n_rows = int(np.prod(t.shape[:-1], dtype=np.int64))
    raw = np.frombuffer(f.data, dtype=np.uint8, count=t.nbytes, offset=t.offset).reshape(n_rows, -1)  # (rows, row bytes)
    values = np.empty((n_rows, t.shape[-1]), dtype=np.float32)  # (rows, row length)
    step = max(1, _CHUNK // t.shape[-1])
    for i in range(0, n_rows, step):
        values[i:i + step] = decode(raw[i:i + step])
    return torch.from_numpy(values.reshape(t.shape)).to(device=device, dtype=dtype)


def load_gguf_state_dict(path: str | Path, dtype: torch.dtype = torch.float32,
                         device: str | torch.device = "cpu") -> tuple[QwenConfig, dict[str, torch.Tensor]]:
    """(config, state dict with Hugging Face names) of a GGUF checkpoint; every problem is one GGUFError line."""
    f = read_gguf(path)
    cfg = gguf_config(f)
    names = {}
    for name, t in f.tensors.items():
        hf = hf_name(name)
        if hf is None:
            raise GGUFError(f"{f.path}: unexpected tensor {name!r} for a {cfg.num_hidden_layers}-layer qwen2 model")
        names[name] = hf
    _check_types_decodable(f)
    state = {names[name]: dequantize_tensor(f, name, dtype, device) for name in f.tensors}  # one tensor in flight
    return cfg, state


def _check_types_decodable(f: GGUFFile) -> None:
    """Refuse a quantisation type qwen_min cannot decode before spending seconds on the others."""
    for t in f.tensors.values():
        if t.qtype not in _decoders():
            raise _unsupported(f, t)


def _unsupported(f: GGUFFile, t: GGUFTensor) -> GGUFError:
    return GGUFError(f"{f.path}: tensor {t.name!r} uses quantisation type {t.type_name}, which qwen_min cannot decode")


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """A `qm.Qwen` with the weights of a GGUF file, dequantised to `dtype` on `device`.

        model = load_gguf(qm.default_checkpoint())      # ~10-15 s on 2 cores, 2.5 GB in fp32
    """

    cfg, state = load_gguf_state_dict(path, dtype, device)
    with torch.device("meta"):
        model = Qwen(cfg)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        del expected["lm_head.weight"]  # no output.weight in the file: the head is the embedding (model/qwen.py ties it)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        problem = (f"missing tensor(s) {', '.join(missing[:3])}" if missing
                   else f"unexpected tensor(s) {', '.join(unexpected[:3])}")
        raise GGUFError(f"{path}: {problem} for the model its metadata describes")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise GGUFError(f"{path}: tensor for {name} has shape {tuple(state[name].shape)}, the metadata implies {shape}")
    model.load_state_dict(state, assign=True)
    return model.to(device).eval()  # moves the RoPE frequencies, a buffer; the weights are there already
