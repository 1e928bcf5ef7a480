"""`qwen-min bench tokenizer`: encode throughput and BPE training time of qwen_min against HF `tokenizers`
(Rust) and `tiktoken` (Rust, given Qwen's vocabulary), measured in one run on the same text.

Design choices
- Single thread for everyone: TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1 are set before
  `tokenizers` is imported; encoding calls `encode` per document, never the batch (threaded) API.
- Fresh instances: each tokenizer is loaded, then makes ONE timed pass over the text, so our word
  cache starts empty (loading time is not counted, for any of them).
- The text is `mixed_corpus` (many scripts, code, emoji, odd whitespace), at least 1 MB.
- Results are ratios (qwen_min / reference), never absolute claims; the MB/s are printed for context.
- tiktoken gets Qwen's vocabulary as mergeable ranks (Qwen's ids are in merge order, so id == rank)
  and the same regex, but no NFC step: its ids are reported as an agreement rate, not a reference.
"""

from __future__ import annotations

import os
import time

from qwen_min.bench.corpus import mixed_corpus
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.tokenizer.bpe_training import DEFAULT_SPECIAL_TOKENS, train_bpe
from qwen_min.tokenizer.files import QWEN_PRETOKENIZE_REGEX


def add_arguments(p):
    p.add_argument("--mb", type=float, default=1.0, help="megabytes of text to encode (at least 1)")
    p.add_argument("--train-mb", type=float, default=2.0, help="megabytes of text to train on")
    p.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size for the training comparison")
    p.add_argument("--seed", type=int, default=0)


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def tiktoken_encoding(tok):
    import tiktoken

    ranks = {tok.token_bytes(i): i for i in tok.vocab.values()}
    return tiktoken.Encoding(name="qwen2.5", pat_str=tok.files.pattern, mergeable_ranks=ranks,
                             special_tokens=dict(tok.added_tokens))


def bench_encode(docs: list[str]) -> dict:
    from tokenizers import Tokenizer as HFTokenizer

    ours = Tokenizer.from_pretrained(official_tokenizer_dir())
    hf = HFTokenizer.from_file(str(official_tokenizer_dir() / "tokenizer.json"))
    hf.encode_special_tokens = True  # the same plain-text mode as our default
    tik = tiktoken_encoding(ours)
    ids_ours, t_ours = _timed(lambda: [ours.encode(d) for d in docs])
    ids_hf, t_hf = _timed(lambda: [hf.encode(d).ids for d in docs])
    ids_tik, t_tik = _timed(lambda: [tik.encode_ordinary(d) for d in docs])
    same_tik = sum(a == b for a, b in zip(ids_tik, ids_hf)) / len(docs)
    return {"ours_s": t_ours, "hf_s": t_hf, "tiktoken_s": t_tik, "identical_to_hf": ids_ours == ids_hf,
            "tiktoken_docs_identical": same_tik}


def bench_train(texts: list[str], vocab_size: int) -> dict:
    from tokenizers import Regex, normalizers, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import BPE


    ours, t_ours = _timed(lambda: train_bpe(texts, vocab_size, DEFAULT_SPECIAL_TOKENS))
    hf = HFTokenizer(BPE())
    hf.normalizer = normalizers.NFC()
    hf.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(DEFAULT_SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    _, t_hf = _timed(lambda: hf.train_from_iterator(texts, trainer))
    import json

    hf_merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(hf.to_str())["model"]["merges"]]
    return {"ours_s": t_ours, "hf_s": t_hf, "same_merges": ours.merges == hf_merges}


def run(args):
    if args.mb < 1:
        raise ValueError("--mb must be at least 1 (the benchmark encodes at least 1 MB)")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["RAYON_NUM_THREADS"] = "1"

    text = mixed_corpus(int(args.mb * 1e6), seed=args.seed)
    docs = text.split("\n\n")
    mb = len(text.encode("utf-8")) / 1e6
    print(f"encode: {mb:.2f} MB, {len(docs)} documents, one pass, fresh instances, single thread")
    e = bench_encode(docs)
    print(f"  qwen_min   {mb / e['ours_s']:6.2f} MB/s   ids identical to tokenizers: {e['identical_to_hf']}")
    print(f"  tokenizers {mb / e['hf_s']:6.2f} MB/s   -> qwen_min / tokenizers = {e['hf_s'] / e['ours_s']:.2f}x")
    print(f"  tiktoken   {mb / e['tiktoken_s']:6.2f} MB/s   -> qwen_min / tiktoken   = {e['tiktoken_s'] / e['ours_s']:.2f}x"
          f"   (documents with ids identical to tokenizers: {e['tiktoken_docs_identical']:.1%}, it has no NFC)")
    train_text = mixed_corpus(int(args.train_mb * 1e6), seed=args.seed + 1)
    print(f"train: {len(train_text.encode('utf-8')) / 1e6:.2f} MB, vocab_size {args.vocab_size}, single thread")
    t = bench_train(train_text.split("\n\n"), args.vocab_size)
    print(f"  qwen_min {t['ours_s']:.1f} s, tokenizers BpeTrainer {t['hf_s']:.1f} s -> training time ratio "
          f"{t['ours_s'] / t['hf_s']:.1f}x slower; identical merges: {t['same_merges']}")
    if not (e["identical_to_hf"] and t["same_merges"]):
        raise RuntimeError("qwen_min disagrees with tokenizers on this text")
