"""qm.Tokenizer against HF `tokenizers` loaded from the official tokenizer.json: ids, decoding, streaming, files."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
import unicodedata

import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen_min import paths
from qwen_min.bench.corpus import mixed_corpus
from qwen_min.tokenizer.bpe import BYTE_TO_CHAR, StreamingDecoder, Tokenizer
from qwen_min.tokenizer.files import TokenizerFileError

PROPERTY = settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def tok(official_tokenizer_dir):
    return Tokenizer.from_pretrained(official_tokenizer_dir)


@pytest.fixture(scope="module")
def corpus():
    return mixed_corpus(1_050_000, seed=0)


@pytest.fixture(scope="module")
def official_json(official_tokenizer_dir):
    return json.loads((official_tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))


def hf_with_added(official_json, keep):
    """HF tokenizers from the official file with only the added tokens in `keep`, returning official ids.

    `tokenizers` renumbers added tokens when some are removed, so its ids are mapped back by content.
    """
    from tokenizers import Tokenizer as HFTokenizer

    data = dict(official_json, added_tokens=[t for t in official_json["added_tokens"] if t["content"] in keep])
    hf = HFTokenizer.from_str(json.dumps(data))
    official = {t["content"]: t["id"] for t in official_json["added_tokens"]}
    back = {hf.token_to_id(c): i for c, i in official.items() if c in keep}
    return lambda text: [back.get(i, i) for i in hf.encode(text).ids]


def first_difference(a, b, tok):
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"first difference at token {i}: {a[i:i + 5]} vs {b[i:i + 5]} near {tok.decode(b[max(0, i - 5):i + 5])!r}"


# ---------------------------------------------------------------------------- the corpus itself
def test_corpus_is_large_and_mixed(corpus):
    assert len(corpus.encode("utf-8")) >= 1_000_000
    for what, pattern in {
        "Chinese": r"\p{Han}{4}", "Japanese": r"\p{Hiragana}|\p{Katakana}", "Korean": r"\p{Hangul}{2}",
        "Arabic": r"\p{Arabic}{3}", "Hindi": r"\p{Devanagari}{3}", "Russian": r"\p{Cyrillic}{3}",
        "code": r"\ndef \w+\(", "ZWJ emoji": "\u200d", "skin tone": "[\U0001f3fb-\U0001f3ff]", "flag": "\U0001f1eb\U0001f1f7",
        "combining mark": r"\p{Mn}", "tab": "\t", "CRLF": "\r\n", "no-break space": "\u00a0", "ideographic space": "\u3000",
        "long digit run": r"\d{30}", "special token": regex.escape("<|im_start|>"), "tool call": "<tool_call>",
    }.items():
        assert regex.search(pattern, corpus), f"the corpus has no {what}"


# ---------------------------------------------------------------------------- pre-tokenizer
@pytest.mark.slow
def test_pretokenizer_agrees_on_every_code_point(tok, hf_tokenizers_official):
    """Every code point c in "/cA": a letter gives '/cA', a digit '/', 'c', 'A', a space '/', 'cA', else '/c', 'A'."""
    from qwen_min.tokenizer.bpe import token_string_to_bytes

    def hf_split(text):
        return [token_string_to_bytes(p).decode("utf-8") for p, _ in hf_tokenizers_official.pre_tokenizer.pre_tokenize_str(text)]

    code_points = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000 and c not in (0x0A, 0x0D)]
    probe = lambda chars: "".join(f"/{c}A\n" for c in chars)  # noqa: E731
    for start in range(0, len(code_points), 1 << 16):
        chunk = code_points[start:start + (1 << 16)]
        if tok.pattern.findall(probe(chunk)) != hf_split(probe(chunk)):
            bad = [c for c in chunk if tok.pattern.findall(probe(c)) != hf_split(probe(c))]
            pytest.fail(f"{len(bad)} code points split differently from tokenizers, first U+{ord(bad[0]):04X}")


# ---------------------------------------------------------------------------- encode parity
def test_encode_matches_hf_with_specials_allowed(tok, corpus, hf_tokenizers_official):
    want = hf_tokenizers_official.encode(corpus).ids
    got = tok.encode(corpus, allowed_special="all")
    assert got == want, first_difference(got, want, tok)


def test_encode_plain_text_matches_hf_without_special_tokens(tok, corpus, official_json, hf_tokenizers_official):
    got = tok.encode(corpus)
    non_special = {t["content"] for t in official_json["added_tokens"] if not t["special"]}
    want = hf_with_added(official_json, non_special)(corpus)
    assert got == want, first_difference(got, want, tok)
    assert not set(got) & set(tok.special_tokens.values())
    # the same reference reached another way: tokenizers' own "special tokens as text" switch
    hf_tokenizers_official.encode_special_tokens = True
    try:
        assert got == hf_tokenizers_official.encode(corpus).ids
    finally:
        hf_tokenizers_official.encode_special_tokens = False


def test_allowed_special_subset(tok, official_json):
    text = "<|im_start|>user\nhi<|im_end|>\n<tool_call>{}</tool_call><|endoftext|>"
    allowed = {"<|im_start|>", "<|im_end|>"}
    reference = hf_with_added(official_json, allowed | {"<tool_call>", "</tool_call>"})
    assert tok.encode(text, allowed_special=allowed) == reference(text)
    assert tok.encode(text, allowed_special="<|im_end|>") == tok.encode(text, allowed_special={"<|im_end|>"})


def test_non_special_added_tokens_are_always_matched(tok, hf_tokenizers_official):
    text = "<tool_call>\n{}\n</tool_call>"
    want = hf_tokenizers_official.encode(text).ids
    assert tok.encode(text) == tok.encode(text, allowed_special="all") == want
    assert want[0] == tok.added_tokens["<tool_call>"]


def test_unknown_allowed_special_is_an_error(tok):
    with pytest.raises(ValueError, match=r"'<\|im_middle\|>' is not a special token"):
        tok.encode("x", allowed_special={"<|im_end|>", "<|im_middle|>"})


def test_nfc_first(tok, official_json, hf_tokenizers_official):
    from tokenizers import Tokenizer as HFTokenizer

    text = "cafe\u0301 A\u030a \u1100\u1161"
    with_nfc = hf_tokenizers_official.encode(text).ids
    without = HFTokenizer.from_str(json.dumps(dict(official_json, normalizer=None))).encode(text).ids
    assert with_nfc != without
    assert tok.encode(text) == with_nfc
    assert Tokenizer(dataclasses.replace(tok.files, normalizer=None)).encode(text) == without


def test_added_tokens_are_cut_out_before_nfc(tok, hf_tokenizers_official):
    """The documented quirk: '>' + U+0338 composes to '≯' under NFC, but not across an added token."""
    text = "<tool_call>\u0338 <|im_end|>\u0338"
    assert tok.encode(text, allowed_special="all") == hf_tokenizers_official.encode(text).ids
    assert tok.decode(tok.encode(text)) != unicodedata.normalize("NFC", text)


def test_long_pieces_without_spaces(tok, hf_tokenizers_official):
    rng = random.Random(0)
    han = "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(20_000))
    for text in (han, "a" * 30_000, " " * 5_000 + "x", "9" * 1_000, "\U0001F600" * 2_000):
        assert tok.encode(text) == hf_tokenizers_official.encode(text).ids


@PROPERTY
@given(st.text())
def test_property_roundtrip_and_parity(s):
    tok, hf = _shared()
    ids = tok.encode(s)
    assert tok.decode(ids) == unicodedata.normalize("NFC", s)
    assert tok.encode(s, allowed_special="all") == hf.encode(s).ids
    stream = StreamingDecoder(tok)
    assert "".join(stream.push(i) for i in ids) + stream.flush() == tok.decode(ids)


_SHARED = {}


def _shared():
    """hypothesis does not mix with function-scoped fixtures: build the pair once per process."""
    if not _SHARED:
        from tokenizers import Tokenizer as HFTokenizer

        _SHARED["pair"] = (Tokenizer.from_pretrained(paths.official_tokenizer_dir()),
                           HFTokenizer.from_file(str(paths.official_tokenizer_dir() / "tokenizer.json")))
    return _SHARED["pair"]


# ---------------------------------------------------------------------------- decoding
def test_decode_matches_hf(tok, corpus, hf_tokenizers_official):
    ids = tok.encode(corpus[:200_000], allowed_special="all")
    assert tok.decode(ids) == hf_tokenizers_official.decode(ids, skip_special_tokens=False)
    assert tok.decode(ids, skip_special=True) == hf_tokenizers_official.decode(ids, skip_special_tokens=True)


def test_decode_of_broken_utf8_matches_hf(tok, hf_tokenizers_official):
    """Random ids cut characters anywhere: both replace invalid bytes by U+FFFD the same way."""
    rng = random.Random(0)
    for _ in range(300):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randint(1, 12))]
        assert tok.decode(ids) == hf_tokenizers_official.decode(ids, skip_special_tokens=False), ids


def test_decode_rejects_unknown_ids(tok):
    with pytest.raises(ValueError, match="token id 151665 is not in this tokenizer"):
        tok.decode([1, 151665])
    with pytest.raises(ValueError, match="token id -1"):
        tok.decode([-1])


@settings(PROPERTY, max_examples=500)
@given(st.lists(st.integers(0, 151_664), max_size=12))
def test_property_streaming_equals_decode(ids):
    tok, _ = _shared()
    stream = StreamingDecoder(tok)
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) + stream.flush() == tok.decode(ids)


def test_streaming_holds_back_incomplete_characters(tok):
    byte_ids = [tok.vocab[c] for c in "ðŁĺĤ"]  # the four bytes of 😂 (F0 9F 98 82) as single-byte tokens
    stream = StreamingDecoder(tok)
    assert [stream.push(i) for i in byte_ids] == ["", "", "", "😂"]
    assert stream.push(byte_ids[0]) == "" and stream.flush() == "\ufffd"
    assert stream.push(tok.encode("ok")[0]) == "ok"  # flush reset the decoder


# ---------------------------------------------------------------------------- files
def test_vocab_merges_folder_equals_tokenizer_json(tok, official_tokenizer_dir, tmp_path, corpus):
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((official_tokenizer_dir / name).read_bytes())
    other = Tokenizer.from_pretrained(tmp_path)
    assert other.vocab == tok.vocab and other.merges == tok.merges
    assert other.added_tokens == tok.added_tokens and other.special_tokens == tok.special_tokens
    text = corpus[:100_000]
    assert other.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")


def test_save_pretrained_loads_in_hf_with_identical_ids(tok, tmp_path, corpus, hf_tokenizers_official):
    from tokenizers import Tokenizer as HFTokenizer

    tok.save_pretrained(tmp_path)
    text = corpus[:100_000]
    assert HFTokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(text).ids == hf_tokenizers_official.encode(text).ids
    assert Tokenizer.from_pretrained(tmp_path).encode(text) == tok.encode(text)


def test_special_ids(tok, hf_tokenizers_official):
    assert tok.eos_id == tok.im_end_id == hf_tokenizers_official.token_to_id("<|im_end|>")
    assert tok.pad_id == tok.endoftext_id == hf_tokenizers_official.token_to_id("<|endoftext|>")
    assert tok.im_start_id == hf_tokenizers_official.token_to_id("<|im_start|>")
    assert tok.stop_ids == (tok.eos_id, tok.endoftext_id)
    assert len(tok.special_tokens) == 20 and set(tok.added_tokens) - set(tok.special_tokens) == {"<tool_call>", "</tool_call>"}
    assert tok.vocab_size == hf_tokenizers_official.get_vocab_size(with_added_tokens=True)


@pytest.mark.slow
def test_gguf_tokenizer_equals_official(tok, gguf_path, corpus, official_tokenizer_dir):
    from qwen_min.tokenizer.files import read_tokenizer_json

    from_gguf = Tokenizer.from_pretrained(gguf_path)
    assert from_gguf.vocab == tok.vocab and from_gguf.merges == tok.merges
    assert from_gguf.special_tokens == tok.special_tokens and from_gguf.added_tokens == tok.added_tokens
    assert from_gguf.files.chat_template == read_tokenizer_json(official_tokenizer_dir / "tokenizer.json").chat_template
    assert (from_gguf.eos_id, from_gguf.pad_id) == (tok.eos_id, tok.pad_id)
    text = corpus[:50_000]
    assert from_gguf.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file or folder"),
    ("empty folder", "no tokenizer.json, nor vocab.json"),
    ("bad json", "not valid JSON"),
    ("not bpe", "not a BPE tokenizer.json"),
    ("unknown merge token", "not in the vocabulary"),
    ("missing byte", "lacks the single-byte token"),
    ("bad gguf", "truncated or corrupted GGUF"),
])
def test_bad_files_fail_with_one_clear_error(tmp_path, case, message):
    path = tmp_path / "tok"
    path.mkdir()
    byte_vocab = {c: i for i, c in enumerate(sorted(BYTE_TO_CHAR.values()))}
    model = {"type": "BPE", "vocab": byte_vocab, "merges": ["a b"]}
    if case == "missing":
        path = tmp_path / "nowhere"
    elif case == "bad json":
        (path / "tokenizer.json").write_text("{not json")
    elif case == "not bpe":
        (path / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece"}}))
    elif case == "unknown merge token":
        (path / "tokenizer.json").write_text(json.dumps({"model": dict(model, merges=["a zz"])}))
    elif case == "missing byte":
        (path / "tokenizer.json").write_text(json.dumps({"model": dict(model, vocab={"a": 0}, merges=[])}))
    elif case == "bad gguf":
        path = tmp_path / "broken.gguf"
        path.write_bytes(b"GGUF" + b"\0" * 10)
    with pytest.raises(TokenizerFileError, match=message) as info:
        Tokenizer.from_pretrained(path)
    assert "\n" not in str(info.value) and (str(path) in str(info.value) or case in ("unknown merge token", "missing byte"))


def test_no_reference_library_imported_at_run_time(official_tokenizer_dir):
    code = (
        "import sys, qwen_min as qm\n"
        f"tok = qm.Tokenizer.from_pretrained({str(official_tokenizer_dir)!r})\n"
        "tok.decode(tok.encode(tok.render_chat([{'role': 'user', 'content': 'hi'}], [{'a': 1}]), allowed_special='all'))\n"
        "qm.train_bpe(['some text'], 300)\n"
        "bad = [m for m in ('torch', 'tokenizers', 'tiktoken', 'transformers', 'jinja2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_exercise_checkers_reject_wrong_answers():
    import codecs

    from qwen_min.course.exercises import ExerciseFailed
    from qwen_min.course.exercises import ch01_tokenizer as ch

    ch.check_token_count(lambda: len(ch.official_tokenizer().encode(ch.PREDICT_TEXT)))
    with pytest.raises(ExerciseFailed, match="you predicted 9"):  # one token per word
        ch.check_token_count(lambda: 9)
    ch.check_decode(lambda tok, ids: b"".join(tok.token_bytes(i) for i in ids).decode("utf-8", errors="replace"))
    with pytest.raises(ExerciseFailed, match="decode: wrong"):  # decodes token by token: cut characters become U+FFFD
        ch.check_decode(ch.buggy_decode)

    def stream(tok, ids):  # bytes held back until they complete a character: the lead byte says how many it needs
        pieces, pending = [], b""
        for i in ids:
            pending += tok.token_bytes(i)
            cut = len(pending)
            for back in range(1, min(3, len(pending)) + 1):
                if pending[-back] >= 0xC0:
                    need = 2 if pending[-back] < 0xE0 else 3 if pending[-back] < 0xF0 else 4
                    cut = len(pending) - back if need > back else len(pending)
                    break
                if pending[-back] < 0x80:
                    break
            pieces.append(pending[:cut].decode("utf-8", errors="replace"))
            pending = pending[cut:]
        return pieces + [pending.decode("utf-8", errors="replace")]

    def incremental(tok, ids):  # the standard library's incremental decoder: right, and refused (the exercise forbids it)
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return [utf8.decode(tok.token_bytes(i)) for i in ids] + [utf8.decode(b"", final=True)]

    ch.check_stream(stream)
    with pytest.raises(ExerciseFailed, match="calls the package's own"):
        ch.check_stream(incremental)
    with pytest.raises(ExerciseFailed, match="stream: wrong"):  # no holding back
        ch.check_stream(lambda tok, ids: [tok.token_bytes(i).decode("utf-8", errors="replace") for i in ids] + [""])
    with pytest.raises(ExerciseFailed, match="stream: wrong"):  # drops what is left at the end
        ch.check_stream(lambda tok, ids: stream(tok, ids)[:-1] + [""])

