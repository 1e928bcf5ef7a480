"""Tokenizer file formats: read a vocabulary from tokenizer.json, vocab.json + merges.txt or a GGUF file,
and write the Hugging Face files (tokenizer.json, vocab.json, merges.txt, tokenizer_config.json).

Design choices
- This module only moves data between files and one plain structure, `VocabFiles`;
  the BPE algorithm lives in `tokenizer/bpe.py`. Every reader returns the same structure,
  so `Tokenizer.from_pretrained` works the same whatever the source.
- `tokenizer.json` is written in the layout of the official Qwen2.5 file: NFC normaliser,
  the Qwen pre-tokenizer regex as a `Split`, then `ByteLevel` without its own regex,
  a BPE model, and the added tokens with their `special` flags.
- GGUF stores every token in one list with a type per token. CONTROL (3) tokens are the
  special ones, USER_DEFINED (4) are added but not special (`<tool_call>`), and UNUSED (5)
  rows are embedding padding (`[PAD151665]`...) with no token: they are dropped.
- Errors name the file and what is wrong, in one line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from qwen_min.gguf.file import GGUFError
from qwen_min.gguf.file import read_gguf as read_gguf_container
from qwen_min.paths import read_json

# The pre-tokenizer of Qwen2 / Qwen2.5 (the official tokenizer.json's Split pre-tokenizer). `\p{N}` takes ONE digit at a time.
QWEN_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@dataclass
class AddedToken:
    id: int
    content: str
    special: bool  # True: a control token, plain text unless allowed; False: always matched (e.g. <tool_call>)


@dataclass
class VocabFiles:
    """Everything a byte-level BPE tokenizer is made of, as read from disk."""

    vocab: dict[str, int]  # byte-level token string (GPT-2 byte-to-unicode alphabet) -> id
    merges: list[tuple[str, str]]  # in rank order: merges[0] is applied first
    added_tokens: list[AddedToken] = field(default_factory=list)
    chat_template: str | None = None
    normalizer: str | None = "NFC"  # None: no normalisation (transformers' GGUF tokenizer has none)
    pattern: str = QWEN_PRETOKENIZE_REGEX
    eos_token: str | None = "<|im_end|>"
    pad_token: str | None = "<|endoftext|>"


class TokenizerFileError(ValueError):
    """A tokenizer file is missing or malformed."""


# ---------------------------------------------------------------------------- reading
def read_vocab_files(path: str | os.PathLike) -> VocabFiles:
    """Read a folder (tokenizer.json, or vocab.json + merges.txt) or a .gguf file."""
    path = Path(path)
    if not path.exists():
        raise TokenizerFileError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix == ".gguf":
            return read_gguf(path)
        if path.name == "tokenizer.json":
            return read_tokenizer_json(path)
        raise TokenizerFileError(f"{path}: expected a folder, a tokenizer.json or a .gguf file")
    if (path / "tokenizer.json").exists():
        return read_tokenizer_json(path / "tokenizer.json")
    if (path / "vocab.json").exists() and (path / "merges.txt").exists():
        return read_vocab_merges(path)
    raise TokenizerFileError(f"{path}: no tokenizer.json, nor vocab.json + merges.txt, in this folder")


def _load_json(path: Path):
    return read_json(path, "a tokenizer file", TokenizerFileError)


def read_tokenizer_json(path: Path) -> VocabFiles:
    data = _load_json(path)
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict) or model.get("type") != "BPE" or "vocab" not in model or "merges" not in model:
        raise TokenizerFileError(f"{path}: not a BPE tokenizer.json (model.type, model.vocab and model.merges required)")
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    bad = next((m for m in merges if len(m) != 2), None)
    if bad is not None:
        raise TokenizerFileError(f"{path}: malformed merge {bad!r}")
    added = [AddedToken(t["id"], t["content"], bool(t.get("special", False))) for t in data.get("added_tokens", [])]
    normalizer = (data.get("normalizer") or {}).get("type")
    if normalizer not in (None, "NFC"):
        raise TokenizerFileError(f"{path}: normalizer {normalizer!r} is not supported (NFC or none)")
    pattern = _split_pattern(data.get("pre_tokenizer"), path)
    config = _load_json(path.parent / "tokenizer_config.json") if (path.parent / "tokenizer_config.json").exists() else {}
    return VocabFiles(
        vocab=dict(model["vocab"]), merges=merges, added_tokens=added,
        chat_template=config.get("chat_template"), normalizer=normalizer, pattern=pattern,
        eos_token=_token_text(config.get("eos_token", "<|im_end|>")),
        pad_token=_token_text(config.get("pad_token", "<|endoftext|>")),
    )


def _token_text(token):
    return token.get("content") if isinstance(token, dict) else token


def _split_pattern(pre_tokenizer: dict | None, path: Path) -> str:
    """The regex of the `Split` step in a pre-tokenizer (the Qwen one if there is none)."""
    steps = (pre_tokenizer or {}).get("pretokenizers", [pre_tokenizer] if pre_tokenizer else [])
    for step in steps:
        if step.get("type") == "Split":
            return step["pattern"].get("Regex") or step["pattern"]["String"]
    return QWEN_PRETOKENIZE_REGEX


def read_vocab_merges(folder: Path) -> VocabFiles:
    vocab = _load_json(folder / "vocab.json")
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = []
    for n, line in enumerate(lines, 1):
        if not line or line.startswith("#version"):
            continue
        pair = tuple(line.split(" "))
        if len(pair) != 2:
            raise TokenizerFileError(f"{folder / 'merges.txt'}: line {n} is not two tokens: {line!r}")
        merges.append(pair)
    config = _load_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").exists() else {}
    added = [
        AddedToken(int(i), t["content"], bool(t.get("special", False)))
        for i, t in config.get("added_tokens_decoder", {}).items()
    ]
    return VocabFiles(vocab=vocab, merges=merges, added_tokens=added, chat_template=config.get("chat_template"))


def read_gguf(path: Path) -> VocabFiles:

    try:
        metadata = read_gguf_container(path).metadata
    except GGUFError as e:  # already one line naming the file
        raise TokenizerFileError(str(e)) from None

    def get(key):
        if key not in metadata:
            raise TokenizerFileError(f"{path}: GGUF metadata has no {key!r}")
        return metadata[key]

    if get("tokenizer.ggml.model") != "gpt2":
        raise TokenizerFileError(f"{path}: tokenizer model {get('tokenizer.ggml.model')!r} is not byte-level BPE ('gpt2')")
    tokens, types = get("tokenizer.ggml.tokens"), get("tokenizer.ggml.token_type").tolist()
    vocab, added = {}, []
    for i, (token, kind) in enumerate(zip(tokens, types)):
        if kind == 1:  # NORMAL
            vocab[token] = i
        elif kind in (3, 4):  # CONTROL, USER_DEFINED
            added.append(AddedToken(i, token, special=kind == 3))
    merges = [tuple(m.split(" ")) for m in get("tokenizer.ggml.merges")]
    return VocabFiles(vocab=vocab, merges=merges, added_tokens=added, chat_template=metadata.get("tokenizer.chat_template"),
                      eos_token=tokens[get("tokenizer.ggml.eos_token_id")],
                      pad_token=tokens[get("tokenizer.ggml.padding_token_id")])


# ---------------------------------------------------------------------------- writing
def _byte_level(**extra):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False, **extra}


def tokenizer_json_dict(files: VocabFiles) -> dict:
    """The tokenizer.json structure of `files`, in the official Qwen2.5 layout."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": t.id, "content": t.content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": t.special}
            for t in files.added_tokens
        ],
        "normalizer": {"type": files.normalizer} if files.normalizer else None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": files.pattern}, "behavior": "Isolated", "invert": False},
            _byte_level(),
        ]},
        "post_processor": _byte_level(),
        "decoder": _byte_level(),
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": files.vocab,
            "merges": [f"{a} {b}" for a, b in files.merges],
        },
    }


def tokenizer_config_dict(files: VocabFiles, model_max_length: int = 32768) -> dict:
    specials = [t.content for t in files.added_tokens if t.special and t.content not in (files.eos_token, files.pad_token)]
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(t.id): {"content": t.content, "lstrip": False, "normalized": False, "rstrip": False,
                        "single_word": False, "special": t.special}
            for t in files.added_tokens
        },
        "additional_special_tokens": specials,
        "bos_token": None,
        "chat_template": files.chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": files.eos_token,
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": files.pad_token,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_vocab_files(files: VocabFiles, folder: str | os.PathLike) -> Path:
    """Write tokenizer.json, vocab.json, merges.txt and tokenizer_config.json into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dump = lambda obj: json.dumps(obj, ensure_ascii=False, indent=2) + "\n"  # noqa: E731
    _write_atomic(folder / "tokenizer.json", dump(tokenizer_json_dict(files)))
    _write_atomic(folder / "vocab.json", json.dumps(files.vocab, ensure_ascii=False) + "\n")
    _write_atomic(folder / "merges.txt", "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in files.merges))
    _write_atomic(folder / "tokenizer_config.json", dump(tokenizer_config_dict(files)))
    return folder
