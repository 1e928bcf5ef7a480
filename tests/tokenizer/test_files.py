"""data/qwen2.5/: the official tokenizer files, rebuilt from the default checkpoint.

Checks that the files are what the rebuild script makes from the GGUF, that they have the
official structure (the Qwen2.5 report and the official tokenizer.json), and that HF `tokenizers` reading them gives the same
ids as transformers' own tokenizer for the GGUF (after NFC, which the GGUF tokenizer lacks)."""

import importlib.util
import json
import unicodedata
from pathlib import Path

import pytest

from qwen_min.paths import official_tokenizer_dir

# not imported from conftest: tests/ and notebooks/ each have a conftest.py, and `import conftest` would get either
REPO = Path(__file__).resolve().parents[2]

FILES = ["tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "generation_config.json"]
QWEN_REGEX = (  # the Split pre-tokenizer of the official tokenizer.json, verbatim
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

MIXED = [
    "The quick brown fox jumps over the lazy dog. It's 2024; we'll see what they've done.",
    "Qwen2.5 是阿里云研发的大语言模型系列。你好，世界！今天天气怎么样？",
    "日本語のテキストも正しく分割されるべきです。カタカナ、ひらがな、漢字。",
    "한국어 문장도 포함합니다. 안녕하세요!",
    "مرحبا بالعالم، هذه جملة عربية.", "नमस्ते दुनिया, यह हिंदी है।", "Привет, мир! Это русский текст.",
    "def fib(n):\n\tif n < 2:\n\t\treturn n\n    return fib(n - 1) + fib(n - 2)\r\n",
    "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }",
    "👨‍👩‍👧‍👦 👍🏽 🇫🇷🇯🇵 🏳️‍🌈 ✨",
    "café cafe\u0301 Å A\u030a ñ n\u0303 ﬁ",  # composed and decomposed forms: NFC must unify them
    "tabs\tand  double  spaces\u00a0no-break\u3000ideographic   \n\n\n  trailing   ",
    "3.14159265358979323846264338327950288419716939937510 and 1,000,000",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<tool_call>{}</tool_call><|endoftext|>",
    "<|im_start |> <|fake|> <tool_call <|endoftext",
]


def _load_rebuild_module():
    spec = importlib.util.spec_from_file_location("rebuild", REPO / "data" / "rebuild.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_files_are_exactly_what_the_rebuild_script_makes(tmp_path, gguf_path):
    _load_rebuild_module().rebuild_qwen_tokenizer(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (official_tokenizer_dir() / name).read_bytes(), name


def test_official_structure():
    data = json.loads((official_tokenizer_dir() / "tokenizer.json").read_text())
    assert data["normalizer"] == {"type": "NFC"}
    split, byte_level = data["pre_tokenizer"]["pretokenizers"]
    assert split["pattern"]["Regex"] == QWEN_REGEX and split["behavior"] == "Isolated"
    assert byte_level["type"] == "ByteLevel" and byte_level["use_regex"] is False
    assert len(data["model"]["vocab"]) == 151_643 and len(data["model"]["merges"]) == 151_387
    added = {t["id"]: (t["content"], t["special"]) for t in data["added_tokens"]}
    assert sorted(added) == list(range(151_643, 151_665))  # 22 control tokens
    assert added[151643] == ("<|endoftext|>", True) and added[151644] == ("<|im_start|>", True)
    assert added[151645] == ("<|im_end|>", True)
    assert added[151657] == ("<tool_call>", False) and added[151658] == ("</tool_call>", False)
    assert sum(special for _, special in added.values()) == 20
    config = json.loads((official_tokenizer_dir() / "tokenizer_config.json").read_text())
    assert len(config["chat_template"]) == 2507
    assert "You are Qwen, created by Alibaba Cloud. You are a helpful assistant." in config["chat_template"]
    assert config["eos_token"] == "<|im_end|>" and config["pad_token"] == "<|endoftext|>"
    generation = json.loads((official_tokenizer_dir() / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [151645, 151643]


def test_nfc_is_applied(hf_tokenizers_official):
    assert hf_tokenizers_official.encode("cafe\u0301").ids == [924, 58858]  # NFC joins e + acute


@pytest.mark.slow
def test_ids_equal_transformers_gguf_tokenizer(hf_tokenizers_official, hf_gguf_tokenizer):
    texts = MIXED + ["\n".join(MIXED)] * 2 + [" ".join(MIXED[i:] + MIXED[:i]) for i in range(len(MIXED))]
    n_tokens = 0
    for text in texts:
        ours = hf_tokenizers_official.encode(text, add_special_tokens=False).ids
        reference = hf_gguf_tokenizer(unicodedata.normalize("NFC", text), add_special_tokens=False)["input_ids"]
        assert ours == reference, text
        n_tokens += len(ours)
    assert n_tokens > 2000
    # and the GGUF tokenizer itself lacks NFC (why data/qwen2.5 adds it back)
    assert hf_gguf_tokenizer("cafe\u0301", add_special_tokens=False)["input_ids"] == [924, 1859, 53839]
