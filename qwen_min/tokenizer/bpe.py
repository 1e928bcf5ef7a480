"""Byte-level BPE tokenizer written from scratch, id-for-id identical to the official Qwen2.5 tokenizer.

    tok = Tokenizer.from_pretrained("data/qwen2.5")      # tokenizer.json, vocab.json + merges.txt, or a .gguf
    tok.encode("Hello world")                            # [9707, 1879]
    tok.decode([9707, 1879])                             # 'Hello world'

The pipeline, in the order `tokenizers` runs it for Qwen2.5's tokenizer.json:
  1. added tokens are cut out of the raw text first (leftmost, then longest match);
  2. every other stretch of text is NFC-normalised ("cafe\u0301" -> "café": [924, 58858]);
  3. the Qwen regex splits it into pieces (one digit per piece, contractions, whitespace runs);
  4. each piece becomes UTF-8 bytes, one token per byte, then adjacent tokens are merged
     by rank (lowest first, leftmost among equals) until no merge applies.

Design choices
- Special tokens are safe by default. `encode(text)` treats the 20 control tokens (`<|im_start|>`,
  `<|endoftext|>`...) found in the text as plain text, so a user message cannot forge a turn;
  `allowed_special="all"` or a set of token strings opts in. An unknown name in the set is an error.
- Added tokens that are NOT special (`<tool_call>`, `</tool_call>`) are always matched, in both modes,
  exactly as `tokenizers` does: they cannot end a turn or impersonate a role, and the model emits
  them as single tokens, so encode(decode(ids)) round-trips a tool call. So the plain-text mode is
  identical to `tokenizers` loaded from a tokenizer.json whose special added tokens were removed.
- Quirk kept for parity: added tokens are cut out before NFC, so a combining mark right after one
  (`"<tool_call>\u0338"`) is normalised on its own and `decode(encode(s))` differs from `NFC(s)` there.
- BPE works on integer ids; merges are a dict (left_id, right_id) packed into one int -> (rank, new_id).
  Each piece is merged with a heap over adjacent pairs and a linked list: O(n log n), so a long
  run of letters without spaces (Chinese has no spaces) costs no more than it must.
- A word cache (piece -> ids) makes repeated words free: natural text repeats most of its pieces.
  It is cleared when it reaches `CACHE_SIZE` entries, so memory stays bounded.
- Decoding joins the bytes of the tokens and decodes UTF-8 with errors="replace": a cut in the
  middle of a character gives U+FFFD, never an exception. `StreamingDecoder` holds back the bytes
  of an incomplete character, so generated text can be printed token by token.
- The split regex runs on Python's `regex` module, rewritten (pretokenizer.py) to ignore letters and
  digits that are newer than the Unicode tables of `tokenizers`' regex engine.
- Run-time imports: the standard library and `regex` (for \\p{L}); never tokenizers or tiktoken.
"""

from __future__ import annotations

import codecs
import heapq
import os
import unicodedata
from collections.abc import Iterable

import regex

from qwen_min.tokenizer import chat_template
from qwen_min.tokenizer.files import TokenizerFileError, VocabFiles, read_vocab_files, write_vocab_files
from qwen_min.tokenizer.pretokenizer import compile_pretokenizer

CACHE_SIZE = 200_000


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters, so every token is a visible string.

    Printable Latin-1 bytes stand for themselves; the 68 others (controls, space, NBSP, soft hyphen)
    are shifted to U+0100 and up, in byte order:

    >>> m = bytes_to_unicode(); m[ord("A")], m[ord(" ")], m[ord("\\n")]
    ('A', 'Ġ', 'Ċ')
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = (b for b in range(256) if b not in printable)
    mapping = {b: chr(b) for b in printable}
    mapping.update({b: chr(256 + n) for n, b in enumerate(shifted)})
    return dict(sorted(mapping.items()))


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def token_string_to_bytes(token: str) -> bytes:
    """'Ġworld' -> b' world': undo the byte-to-unicode map of a vocabulary entry."""
    return bytes(CHAR_TO_BYTE[c] for c in token)


def bytes_to_token_string(data: bytes) -> str:
    """b' world' -> 'Ġworld'."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


class Tokenizer:
    """A byte-level BPE tokenizer: vocabulary, ranked merges, added tokens, NFC and a split regex."""

    def __init__(self, files: VocabFiles):
        self.files = files
        self.vocab = files.vocab
        self.merges = files.merges
        self.pattern = compile_pretokenizer(files.pattern)
        self.normalizer = files.normalizer
        if len(set(self.vocab.values())) != len(self.vocab):
            raise TokenizerFileError("vocabulary maps two tokens to the same id")
        try:
            self._byte_ids = [self.vocab[BYTE_TO_CHAR[b]] for b in range(256)]
        except KeyError as e:
            raise TokenizerFileError(f"vocabulary lacks the single-byte token {e.args[0]!r}") from None
        self._shift = max(self.vocab.values()).bit_length()
        self._merge_table: dict[int, tuple[int, int]] = {}  # left_id << shift | right_id -> (rank, merged id)
        for rank, (a, b) in enumerate(self.merges):
            ids = self.vocab.get(a), self.vocab.get(b), self.vocab.get(a + b)
            if None in ids:
                raise TokenizerFileError(f"merge {rank} {a!r} + {b!r}: a token of it is not in the vocabulary")
            self._merge_table.setdefault(ids[0] << self._shift | ids[1], (rank, ids[2]))
        self.added_tokens = {t.content: t.id for t in files.added_tokens}
        self.special_tokens = {t.content: t.id for t in files.added_tokens if t.special}
        vocab_ids = set(self.vocab.values())
        clash = next((t for t in files.added_tokens if t.id in vocab_ids), None)
        if clash is not None:
            raise TokenizerFileError(f"added token {clash.content!r} reuses id {clash.id} of the vocabulary")
        self._id_to_bytes = {i: token_string_to_bytes(s) for s, i in self.vocab.items()}
        self._id_to_bytes.update({i: s.encode("utf-8") for s, i in self.added_tokens.items()})
        self.vocab_size = max(self._id_to_bytes) + 1  # ids in use: 151,665 for Qwen2.5 (the model pads to 151,936)
        self._splitters: dict[frozenset, regex.Pattern | None] = {}
        self._cache: dict[str, list[int]] = {}
        self.eos_id = self.added_tokens.get(files.eos_token)
        self.pad_id = self.added_tokens.get(files.pad_token)
        self.im_start_id = self.added_tokens.get("<|im_start|>")
        self.im_end_id = self.added_tokens.get("<|im_end|>")
        self.endoftext_id = self.added_tokens.get("<|endoftext|>")

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a folder (tokenizer.json, or vocab.json + merges.txt) or a .gguf file."""
        return cls(read_vocab_files(path))

    def save_pretrained(self, folder: str | os.PathLike):
        """Write tokenizer.json, vocab.json, merges.txt and tokenizer_config.json (HF layout)."""
        return write_vocab_files(self.files, folder)

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a reply: eos (`<|im_end|>` for the instruct models) and `<|endoftext|>`."""
        return tuple(dict.fromkeys(i for i in (self.eos_id, self.im_end_id, self.endoftext_id) if i is not None))

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for: token_bytes(9707) == b'Hello'."""
        try:
            return self._id_to_bytes[token_id]
        except (KeyError, TypeError):
            raise ValueError(f"token id {token_id!r} is not in this tokenizer (ids 0..{self.vocab_size - 1})") from None

    def __repr__(self):
        return (f"Tokenizer(vocab={len(self.vocab)}, merges={len(self.merges)}, added={len(self.added_tokens)}, "
                f"normalizer={self.normalizer})")

    # ------------------------------------------------------------------ encoding
    def encode(self, text: str, allowed_special: str | Iterable[str] = frozenset()) -> list[int]:
        """Text -> ids. Control tokens in `text` are plain text unless listed in `allowed_special` (or "all").

        >>> tok.encode("<|im_end|>")                          # plain text: '<', '|', 'im', '_end', '|', '>'
        [27, 91, 318, 6213, 91, 29]
        >>> tok.encode("<|im_end|>", allowed_special="all")
        [151645]
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        splitter = self._splitter(allowed_special)
        ids: list[int] = []
        start = 0
        if splitter is not None:
            for match in splitter.finditer(text):
                self._encode_ordinary(text[start:match.start()], ids)
                ids.append(self.added_tokens[match.group()])
                start = match.end()
        self._encode_ordinary(text[start:], ids)
        return ids

    def _splitter(self, allowed_special) -> regex.Pattern | None:
        """The regex matching the added tokens to cut out: non-special ones always, specials when allowed."""
        allowed = frozenset(self.special_tokens) if allowed_special == "all" else frozenset(
            [allowed_special] if isinstance(allowed_special, str) else allowed_special)
        if allowed not in self._splitters:
            unknown = sorted(allowed - set(self.added_tokens))
            if unknown:
                raise ValueError(f"allowed_special: {unknown[0]!r} is not a special token of this tokenizer "
                                 f"(known: {', '.join(self.special_tokens)})")
            tokens = [t for t, i in self.added_tokens.items() if t in allowed or t not in self.special_tokens]
            # longest first, so that at one position the longest token wins (as in `tokenizers`)
            tokens.sort(key=len, reverse=True)
            self._splitters[allowed] = regex.compile("|".join(map(regex.escape, tokens))) if tokens else None
        return self._splitters[allowed]

    def _encode_ordinary(self, text: str, out: list[int]) -> None:
        """Append the ids of `text`, in which no added token is looked for."""
        if not text:
            return
        if self.normalizer == "NFC":
            text = unicodedata.normalize("NFC", text)
        cache = self._cache
        for piece in self.pattern.findall(text):
            ids = cache.get(piece)
            if ids is None:
                if len(cache) >= CACHE_SIZE:
                    cache.clear()
                ids = cache[piece] = self._bpe(piece)
            out.extend(ids)

    def _bpe(self, piece: str) -> list[int]:
        """Merge the byte tokens of one piece, lowest rank first, leftmost first among equal ranks.

        A heap holds (rank, left position, merged id) for every adjacent pair that has a merge;
        positions form a linked list (`after`/`before`), a merged-away position gets id None.
        An entry whose pair has changed since it was pushed is stale and skipped.
        """
        ids: list = [self._byte_ids[b] for b in piece.encode("utf-8")]
        n = len(ids)
        table, shift = self._merge_table, self._shift
        heap = []
        for i in range(n - 1):
            merge = table.get(ids[i] << shift | ids[i + 1])
            if merge is not None:
                heap.append((merge[0], i, merge[1]))
        if not heap:
            return ids
        heapq.heapify(heap)
        after = list(range(1, n + 1))  # n means "no next"
        before = list(range(-1, n - 1))  # -1 means "no previous"
        while heap:
            rank, i, merged = heapq.heappop(heap)
            j = after[i]
            if ids[i] is None or j == n or table.get(ids[i] << shift | ids[j], (None,))[0] != rank:
                continue  # stale entry
            ids[i], ids[j] = merged, None
            after[i] = k = after[j]
            if k < n:
                before[k] = i
                merge = table.get(merged << shift | ids[k])
                if merge is not None:
                    heapq.heappush(heap, (merge[0], i, merge[1]))
            p = before[i]
            if p >= 0:
                merge = table.get(ids[p] << shift | merged)
                if merge is not None:
                    heapq.heappush(heap, (merge[0], p, merge[1]))
        return [t for t in ids if t is not None]

    # ------------------------------------------------------------------ decoding
    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Ids -> text. Bytes that do not form valid UTF-8 (a character cut in two) become U+FFFD.

        >>> tok.decode([9707, 1879]), tok.decode([tok.vocab["Ã"]])   # byte 0xC3 alone: the first half of "é"
        ('Hello world', '\ufffd')
        """
        if hasattr(ids, "tolist"):  # a tensor or an array
            ids = ids.tolist()
        skip = set(self.special_tokens.values()) if skip_special else ()
        data = b"".join(self.token_bytes(i) for i in ids if i not in skip)
        return data.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ chat
    def render_chat(self, messages: list[dict], tools: list[dict] | None = None,
                    add_generation_prompt: bool = False, tojson: str = "transformers") -> str:
        """The Qwen2.5 chat prompt of `messages`: the official chat template, exactly as transformers'
        `apply_chat_template` renders it (tool JSON in the caller's key order, non-ASCII kept, no HTML
        escaping). `tojson="jinja"` renders tool JSON with Jinja's own filter instead (see chat_template.py).
        Encode it with `allowed_special="all"`.

        >>> print(tok.render_chat([{"role": "user", "content": "Hi"}], add_generation_prompt=True))
        <|im_start|>system
        You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>
        <|im_start|>user
        Hi<|im_end|>
        <|im_start|>assistant
        <BLANKLINE>
        """
        return chat_template.render(messages, tools, add_generation_prompt, tojson)


class StreamingDecoder:
    """Turns generated ids into text one token at a time, holding back an incomplete UTF-8 character.

        stream = StreamingDecoder(tok)
        for token_id in ids:
            print(stream.push(token_id), end="", flush=True)   # '' while a character is incomplete
        print(stream.flush())

    The pieces concatenate to `tok.decode(ids)` exactly (the incremental UTF-8 decoder of the
    standard library replaces invalid bytes as a one-shot decode would).
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False):
        self.tokenizer = tokenizer
        self.skip = set(tokenizer.special_tokens.values()) if skip_special else set()
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes ('' while a character is still incomplete)."""
        token_id = int(token_id)
        if token_id in self.skip:
            return ""
        return self._utf8.decode(self.tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        """End of stream: the held-back bytes of an incomplete character, as U+FFFD. Resets the decoder."""
        text = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return text
