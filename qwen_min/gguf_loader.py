"""Load a GGUF checkpoint (llama.cpp's single-file format) into a `qm.Qwen`, without transformers.

A GGUF file is three things back to back:

    header      b"GGUF", version (2 or 3), number of tensors, number of metadata entries
    metadata    key -> typed value, e.g. "qwen2.block_count" -> 24, "tokenizer.ggml.tokens" -> [151936 strings]
    tensor info name, dims (innermost first), quantisation type, offset into the data section
    (padding to `general.alignment`, 32 by default)
    data        the tensors, each a run of fixed-size *blocks*: e.g. Q8_0 packs 32 weights into
                34 bytes (one fp16 scale d + 32 int8 q, weight = d * q)

Design choices
- The header is parsed here, in ~80 lines of `struct` reads over a memory map: it is the part
  of the format worth reading once, it gives one-line errors that name the file and the field,
  and it takes ~0.2 s where `gguf.GGUFReader` takes ~15 s (it builds a numpy view per token
  string of the embedded tokenizer). The *blocks* are decoded by `gguf.quants.dequantize`,
  the reference implementation of every quantisation type, so results are bit-identical to
  what transformers loads (it calls the same function).
- GGUF dims are listed innermost first (ggml's ne0, ne1): a (out, in) torch weight is
  stored as dims [in, out]. We reverse them.
- qwen2 q/k weights are stored in Hugging Face order (llama.cpp permutes q/k rows only for
  the `llama` architecture), so the name mapping is all there is: `_HF_NAMES`.
- `output.weight` present means an untied lm_head. The default checkpoint has one (Q8_0)
  beside `token_embd.weight` (Q5_0): they differ by quantisation noise, so we keep both.
- Memory: the model is built on the meta device and the dequantised tensors are *assigned*
  (`load_state_dict(assign=True)`), so weights are never held twice. Each tensor is
  dequantised to fp32 (what `gguf` produces), then cast to the requested dtype.
- Every problem found is one `GGUFError` line naming the file and the field or tensor.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qwen_min.config import QwenConfig

GGUF_MAGIC = b"GGUF"
SUPPORTED_ARCHITECTURES = ("qwen2",)

# GGUF metadata value types -> struct format (8 = string and 9 = array are handled apart)
_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9

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


class GGUFError(ValueError):
    """The file is not a GGUF checkpoint qwen_min can load (one line, naming the file)."""


@dataclass
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # torch order (outermost first), e.g. (out_features, in_features)
    qtype: int  # a gguf.GGMLQuantizationType value
    offset: int  # absolute byte offset of the first block in the file
    nbytes: int

    @property
    def type_name(self) -> str:
        import gguf

        try:
            return gguf.GGMLQuantizationType(self.qtype).name
        except ValueError:
            return f"unknown type {self.qtype}"


@dataclass
class GGUFFile:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: dict[str, GGUFTensor]
    data: mmap.mmap  # the whole file, memory-mapped read-only


# ---------------------------------------------------------------------------- the header
class _Cursor:
    """Sequential little-endian reads over the memory map; running off the end is a 'truncated' error."""

    def __init__(self, buf, path: Path):
        self.buf, self.path, self.pos = buf, path, 0

    def read(self, fmt: str):
        try:
            values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        except struct.error:
            raise GGUFError(f"{self.path}: truncated or corrupted GGUF header (ends at byte {len(self.buf):,})") from None
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def string(self, what: str) -> str:
        n = self.read("Q")
        if self.pos + n > len(self.buf):
            raise GGUFError(f"{self.path}: truncated or corrupted GGUF: {what} of {n:,} bytes runs past the end of the file")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{self.path}: corrupted GGUF: {what} is not valid UTF-8") from None

    def value(self, value_type: int, key: str):
        if value_type == _STRING:
            return self.string(f"value of {key!r}")
        if value_type == _ARRAY:
            item_type, count = self.read("IQ")
            if item_type == _STRING:
                return [self.string(f"item of {key!r}") for _ in range(count)]
            if item_type not in _SCALAR_FORMATS:
                raise GGUFError(f"{self.path}: corrupted GGUF: array {key!r} has unknown item type {item_type}")
            dtype = np.dtype("<" + _SCALAR_FORMATS[item_type])
            if self.pos + count * dtype.itemsize > len(self.buf):
                raise GGUFError(f"{self.path}: truncated or corrupted GGUF: array {key!r} of {count:,} items runs past the end")
            items = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
            self.pos += items.nbytes
            return items
        if value_type not in _SCALAR_FORMATS:
            raise GGUFError(f"{self.path}: corrupted GGUF: metadata {key!r} has unknown value type {value_type}")
        return self.read(_SCALAR_FORMATS[value_type])


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse the header, metadata and tensor table of a GGUF file (the tensor data stays on disk).

    >>> f = read_gguf(qm.default_checkpoint())                                  # doctest: +SKIP
    >>> f.metadata["general.architecture"], f.tensors["output.weight"].type_name  # doctest: +SKIP
    ('qwen2', 'Q8_0')
    """
    import gguf

    path = Path(path)
    with open(path, "rb") as f:  # FileNotFoundError / IsADirectoryError are clear OSErrors already
        if path.stat().st_size == 0:
            raise GGUFError(f"{path}: empty file, not a GGUF checkpoint")
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    cur = _Cursor(data, path)
    magic = bytes(data[:4])
    if magic != GGUF_MAGIC:
        raise GGUFError(f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    cur.pos = 4
    version, n_tensors, n_metadata = cur.read("IQQ")
    if version not in (2, 3):
        raise GGUFError(f"{path}: GGUF version {version} is not supported (2 or 3; a big-endian file reads as a huge version)")
    metadata = {}
    for _ in range(n_metadata):
        key = cur.string("metadata key")
        metadata[key] = cur.value(cur.read("I"), key)
    infos = []
    for _ in range(n_tensors):
        name = cur.string("tensor name")
        n_dims = cur.read("I")
        if not 1 <= n_dims <= 4:
            raise GGUFError(f"{path}: corrupted GGUF: tensor {name!r} has {n_dims} dimensions")
        dims = [cur.read("Q") for _ in range(n_dims)]
        qtype, offset = cur.read("IQ")
        infos.append((name, tuple(reversed(dims)), qtype, offset))
    alignment = int(metadata.get("general.alignment", 32))
    data_start = -(-cur.pos // alignment) * alignment
    tensors = {}
    for name, shape, qtype, offset in infos:
        if qtype not in gguf.GGML_QUANT_SIZES:
            raise GGUFError(f"{path}: tensor {name!r} has unknown quantisation type id {qtype}")
        block_size, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)]
        if shape[-1] % block_size:
            raise GGUFError(f"{path}: corrupted GGUF: tensor {name!r} rows of {shape[-1]} are not whole blocks of {block_size}")
        nbytes = int(np.prod(shape[:-1], dtype=np.int64)) * (shape[-1] // block_size) * type_size
        tensor = GGUFTensor(name, shape, qtype, data_start + offset, nbytes)
        if tensor.offset + nbytes > len(data):
            raise GGUFError(f"{path}: truncated GGUF: tensor {name!r} needs bytes up to {tensor.offset + nbytes:,}, "
                            f"the file has {len(data):,}")
        tensors[name] = tensor
    return GGUFFile(path, version, metadata, tensors, data)


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
def dequantize_tensor(f: GGUFFile, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Decode one tensor with `gguf.quants.dequantize` (fp32, bit-identical to transformers), then cast to dtype."""
    import gguf

    t = f.tensors[name]
    qtype = gguf.GGMLQuantizationType(t.qtype)
    raw = np.frombuffer(f.data, dtype=np.uint8, count=t.nbytes, offset=t.offset)
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = raw.reshape(*t.shape[:-1], t.shape[-1] // block_size * type_size)
    try:
        values = gguf.quants.dequantize(raw, qtype)
    except NotImplementedError:
        raise _unsupported(f, name, qtype) from None
    values = np.array(values, dtype=np.float32, copy=not values.flags.writeable)  # F32 comes back as a read-only view
    return torch.from_numpy(values.reshape(t.shape)).to(dtype)


def load_gguf_state_dict(path: str | Path, dtype: torch.dtype = torch.float32) -> tuple[QwenConfig, dict[str, torch.Tensor]]:
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
    state = {names[name]: dequantize_tensor(f, name, dtype) for name in f.tensors}
    return cfg, state


def _check_types_decodable(f: GGUFFile) -> None:
    """Refuse an unsupported quantisation type before spending seconds on the others (decode one zero block)."""
    import gguf

    for qtype in sorted({t.qtype for t in f.tensors.values()}):
        q = gguf.GGMLQuantizationType(qtype)
        block = np.zeros(gguf.GGML_QUANT_SIZES[q][1], dtype=np.uint8)
        try:
            gguf.quants.dequantize(block, q)
        except NotImplementedError:
            raise _unsupported(f, next(t.name for t in f.tensors.values() if t.qtype == qtype), q) from None


def _unsupported(f: GGUFFile, name: str, qtype) -> GGUFError:
    return GGUFError(f"{f.path}: tensor {name!r} uses quantisation type {qtype.name}, which gguf.quants cannot decode")


def load_gguf(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """A `qm.Qwen` with the weights of a GGUF file, dequantised to `dtype` on `device`.

    >>> model = load_gguf(qm.default_checkpoint())  # ~7 s, 2.5 GB in fp32     # doctest: +SKIP
    """
    from qwen_min.model import Qwen

    cfg, state = load_gguf_state_dict(path, dtype)
    with torch.device("meta"):
        model = Qwen(cfg)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        del expected["lm_head.weight"]  # no output.weight in the file: the head is the embedding (model.py ties it)
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        problem = (f"missing tensor(s) {', '.join(missing[:3])}" if missing
                   else f"unexpected tensor(s) {', '.join(unexpected[:3])}")
        raise GGUFError(f"{path}: {problem} for the model its metadata describes")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise GGUFError(f"{path}: tensor for {name} has shape {tuple(state[name].shape)}, the metadata implies {shape}")
    model.load_state_dict(state, assign=True)
    return model.to(device).eval()
