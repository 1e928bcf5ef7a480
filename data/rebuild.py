"""Rebuild the files under data/ from their sources, so their provenance is reproducible.

    python data/rebuild.py qwen2.5     # data/qwen2.5/: the official tokenizer files, from the default checkpoint

qwen2.5: tokenizer.json, vocab.json, merges.txt and tokenizer_config.json are read out of
the GGUF metadata of the default checkpoint (Qwen2.5-Coder-0.5B-Instruct, fetched with
`qwen-min fetch`): 151,643 byte-level tokens, 151,387 merges, 22 added tokens (the 20
CONTROL tokens special, `<tool_call>` / `</tool_call>` not) and the chat template. The
NFC normaliser and the pre-tokenizer regex are those of the official tokenizer.json
(the GGUF records the pre-tokenizer only by name, "qwen2").
generation_config.json holds the sampling defaults published with the Qwen2.5 instruct
models; GGUF does not carry them, so they are written from the values below.
Licence: Apache-2.0, as the Qwen2.5 release (see data/README.md).
"""

import argparse
import json
import sys
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
    from qwen_min.fetch import default_checkpoint
    from qwen_min.tokenizer_files import read_gguf, write_vocab_files

    files = read_gguf(default_checkpoint())
    write_vocab_files(files, out)
    (out / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2) + "\n")
    print(f"wrote {out}: {len(files.vocab):,} tokens, {len(files.merges):,} merges, "
          f"{len(files.added_tokens)} added tokens, chat template {len(files.chat_template):,} characters")


TARGETS = {"qwen2.5": rebuild_qwen_tokenizer}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", choices=[*TARGETS, []], default=list(TARGETS))
    for name in parser.parse_args().targets or TARGETS:
        TARGETS[name](DATA / name)
    sys.exit(0)
