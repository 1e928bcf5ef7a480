"""`qm.save_gguf(model, path, dtype="F32" | "F16" | "Q8_0")`: a GGUF file llama.cpp, transformers and qwen_min all load.

    model = qm.from_pretrained(qm.default_checkpoint())
    qm.save_gguf(model, "qwen-0.5b-q8_0.gguf", dtype="Q8_0")   # 8.5 bits per weight, the tokenizer inside
    qm.from_pretrained("qwen-0.5b-q8_0.gguf")                    # loads it back

Design choices
- The container is written by `gguf.GGUFWriter`, the writer llama.cpp's own converters use;
  what this module decides is the *content*: the `qwen2.*` metadata (what gguf_loader.py's
  `gguf_config` reads back), the tokenizer, and one GGUF tensor per parameter, named by
  inverting the loader's `_HF_NAMES` map, so the two directions cannot drift apart.
- Quantisation types follow llama.cpp's converter: matrices take `dtype`, vectors (norm
  weights, q/k/v biases) stay F32 whatever `dtype` says, since they are tiny and a norm weight
  rounded to 8 bits shifts every activation that passes through it. Q8_0 blocks come from
  gguf/blocks.py (bit-exact with `gguf.quants`).
- A tied head is written once, as `token_embd.weight`; no `output.weight` means "tied" to
  every loader (llama.cpp, transformers, ours).
- The tokenizer is the official Qwen2.5 one by default (any folder or .gguf that
  `qm.Tokenizer.from_pretrained` reads can be given): every token with its GGUF type
  (NORMAL, CONTROL for special tokens, USER_DEFINED for added ones, UNUSED for the `[PAD...]`
  rows that pad the vocabulary to the embedding's size), the merges, the chat template, and
  the ids of <|im_end|> (eos) and <|endoftext|> (padding and bos, as in the official files).
- A model already quantised by `qm.quantize` is refused: its int4 layout is the kernel's,
  not a GGUF type. Quantise into the file with dtype="Q8_0" from the float model instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from qwen_min.checkpoints.gguf_loader import _HF_NAMES
from qwen_min.gguf.blocks import BLOCK, quantize_q8_0
from qwen_min.model.rope import ntk_theta
from qwen_min.paths import official_tokenizer_dir
from qwen_min.quant.linear import QuantLinear
from qwen_min.tokenizer.files import read_vocab_files

GGUF_TYPES = ("F32", "F16", "Q8_0")
_GGUF_NAMES = {hf: name for name, hf in _HF_NAMES.items()}  # HF pattern ("{i}" = layer) -> GGUF pattern
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5  # tokenizer.ggml.token_type values


def gguf_name(hf_name: str) -> str:
    """The GGUF tensor name of a Hugging Face parameter name.

    >>> gguf_name("model.layers.3.mlp.down_proj.weight")
    'blk.3.ffn_down.weight'
    """
    parts = hf_name.split(".")
    if len(parts) > 3 and parts[1] == "layers":
        layer = parts[2]
        pattern = ".".join(parts[:2] + ["{i}"] + parts[3:])
        if pattern in _GGUF_NAMES:
            return _GGUF_NAMES[pattern].format(i=layer)
    elif hf_name in _GGUF_NAMES:
        return _GGUF_NAMES[hf_name]
    raise ValueError(f"parameter {hf_name!r} has no GGUF name (qwen_min writes dense qwen2 models)")


def _tokenizer_metadata(writer, tokenizer, vocab_size: int) -> None:
    files = read_vocab_files(tokenizer)
    tokens: list[str | None] = [None] * vocab_size
    types = [UNUSED] * vocab_size
    entries = [(i, t, NORMAL) for t, i in files.vocab.items()]
    entries += [(a.id, a.content, CONTROL if a.special else USER_DEFINED) for a in files.added_tokens]
    for i, text, kind in entries:
        if i >= vocab_size:
            raise ValueError(f"{tokenizer}: token id {i} does not fit the model's vocabulary of {vocab_size}")
        tokens[i], types[i] = text, kind
    tokens = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)]
    ids = {t: i for i, t in enumerate(tokens)}
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([f"{a} {b}" for a, b in files.merges])
    if files.eos_token in ids:
        writer.add_eos_token_id(ids[files.eos_token])
    if files.pad_token in ids:
        writer.add_pad_token_id(ids[files.pad_token])
        writer.add_bos_token_id(ids[files.pad_token])
    writer.add_add_bos_token(False)
    if files.chat_template:
        writer.add_chat_template(files.chat_template)


def _tensor(writer, name: str, t: torch.Tensor, dtype: str) -> None:
    import gguf

    x = t.detach().float().cpu().numpy()
    if x.ndim == 1 or dtype == "F32":
        writer.add_tensor(name, x.astype(np.float32))
    elif dtype == "F16":
        writer.add_tensor(name, x.astype(np.float16))
    else:
        if x.shape[-1] % BLOCK:
            raise ValueError(f"{name}: rows of {x.shape[-1]} are not whole Q8_0 blocks of {BLOCK}")
        writer.add_tensor(name, quantize_q8_0(x), raw_dtype=gguf.GGMLQuantizationType.Q8_0)


def save_gguf(model, path: str | Path, dtype: str = "F32", tokenizer: str | Path | None = None, name: str = "qwen-min") -> Path:
    """Write `model` (a float `qm.Qwen`) as a GGUF file; matrices in `dtype`, vectors in F32; returns the path.

    tokenizer: a folder or .gguf with the tokenizer to embed (default: the official Qwen2.5 tokenizer).
    """
    import gguf

    if dtype not in GGUF_TYPES:
        raise ValueError(f"unknown GGUF dtype {dtype!r} (choose from {', '.join(GGUF_TYPES)})")
    if any(isinstance(m, QuantLinear) for m in model.modules()):
        raise ValueError("save_gguf needs a float model: this one went through qm.quantize; "
                         "save the float model with dtype='Q8_0' instead")
    cfg = model.config
    if getattr(cfg, "num_experts", 0):
        raise ValueError("save_gguf writes dense qwen2 models; this one is a mixture of experts")
    rope_type = (cfg.rope_scaling or {}).get("rope_type", "default")
    if rope_type == "linear" or cfg.dual_chunk_attention_config:  # nothing in our GGUF reader would read them back
        method = "Dual Chunk Attention" if cfg.dual_chunk_attention_config else "rope_scaling 'linear'"
        raise ValueError(f"save_gguf cannot write {method}: the file would silently run without it; "
                         "save the model without it (model.set_context_extension(None)) and set it again after loading")
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    if cfg.head_dim != cfg.hidden_size // cfg.num_attention_heads:
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
    # static NTK-aware scaling is exactly default RoPE with a raised base (model/rope.py): written as that base
    writer.add_rope_freq_base(ntk_theta(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling["factor"])
                              if rope_type == "ntk" else cfg.rope_theta)
    if cfg.rope_scaling and cfg.rope_scaling.get("rope_type") == "yarn":  # what gguf_config reads back
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(cfg.rope_scaling["factor"])
        writer.add_rope_scaling_orig_ctx_len(cfg.rope_scaling["original_max_position_embeddings"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_file_type({"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16,
                          "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[dtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _tokenizer_metadata(writer, tokenizer if tokenizer is not None else official_tokenizer_dir(), cfg.vocab_size)
    for hf, t in model.state_dict().items():
        if hf == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # the head is the embedding: written once
        _tensor(writer, gguf_name(hf), t, dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
