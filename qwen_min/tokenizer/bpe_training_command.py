"""`qwen-min train-tokenizer`: train a byte-level BPE tokenizer on text files (chapter 1).

    qwen-min train-tokenizer data/corpora/shakespeare/*.txt --vocab-size 4096 --out my_tokenizer
"""

from __future__ import annotations

from pathlib import Path

from qwen_min.tokenizer.bpe_training import DEFAULT_SPECIAL_TOKENS, train_bpe


def add_arguments(p):
    p.add_argument("files", nargs="+", type=Path, help="UTF-8 text files to train on")
    p.add_argument("--vocab-size", type=int, default=8192, help="tokens in all: 256 bytes + merges + specials")
    p.add_argument("--special", action="append", default=None, metavar="TOKEN",
                   help=f"a special token (repeatable; default {' '.join(DEFAULT_SPECIAL_TOKENS)})")
    p.add_argument("--out", type=Path, required=True, help="folder for tokenizer.json, vocab.json, merges.txt")


def run(args) -> int:
    texts = []
    for path in args.files:
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    tok = train_bpe(texts, args.vocab_size, args.special or DEFAULT_SPECIAL_TOKENS, progress=True)
    folder = tok.save_pretrained(args.out)
    print(f"{len(tok.merges)} merges, {tok.vocab_size} tokens -> {folder}/tokenizer.json")
    return 0
