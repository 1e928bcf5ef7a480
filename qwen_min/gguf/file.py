"""The GGUF container (llama.cpp's single-file format): header, metadata and tensor table.

A GGUF file is three things back to back:

    header      b"GGUF", version (2 or 3), number of tensors, number of metadata entries
    metadata    key -> typed value, e.g. "qwen2.block_count" -> 24, "tokenizer.ggml.tokens" -> [151936 strings]
    tensor info name, dims (innermost first), quantisation type, offset into the data section
    (padding to `general.alignment`, 32 by default)
    data        the tensors, each a run of fixed-size *blocks*: e.g. Q8_0 packs 32 weights into
                34 bytes (one fp16 scale d + 32 int8 q, weight = d * q)

Design choices
- Parsed here in ~80 lines of `struct` reads over a memory map: it is the part of the format
  worth reading once, it gives one-line errors that name the file and the field, and it takes
  ~0.2 s where `gguf.GGUFReader` takes ~15 s (it builds a numpy view per token string of the
  embedded tokenizer). Decoding the *blocks* is gguf/blocks.py's (called by checkpoints/gguf_loader.py);
  the `gguf` package supplies only the names and block sizes of the quantisation types.
- No torch here: the tokenizer reads its vocabulary from this metadata too (tokenizer/files.py).
- GGUF dims are listed innermost first (ggml's ne0, ne1): a (out, in) torch weight is
  stored as dims [in, out]. We reverse them.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GGUF_MAGIC = b"GGUF"

# GGUF metadata value types -> struct format (8 = string and 9 = array are handled apart)
_SCALAR_CODES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


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
            if item_type not in _SCALAR_CODES:
                raise GGUFError(f"{self.path}: corrupted GGUF: array {key!r} has unknown item type {item_type}")
            dtype = np.dtype("<" + _SCALAR_CODES[item_type])
            if self.pos + count * dtype.itemsize > len(self.buf):
                raise GGUFError(f"{self.path}: truncated or corrupted GGUF: array {key!r} of {count:,} items runs past the end")
            items = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).copy()
            self.pos += items.nbytes
            return items
        if value_type not in _SCALAR_CODES:
            raise GGUFError(f"{self.path}: corrupted GGUF: metadata {key!r} has unknown value type {value_type}")
        return self.read(_SCALAR_CODES[value_type])


def read_gguf(path: str | Path) -> GGUFFile:
    """Parse the header, metadata and tensor table of a GGUF file (the tensor data stays on disk).

    >>> f = read_gguf(qm.default_checkpoint())     # the header and tensor table only: instant
    >>> f.metadata["general.architecture"], f.tensors["output.weight"].type_name
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
