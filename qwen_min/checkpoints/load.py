"""`qm.load`: a model in a number format, with its tokenizer, from any name of a checkpoint. Every command,
notebook and evaluation goes through it.

    model, tok = qm.load("0.5B")                              # the official 0.5B (fetched once), fp32
    model, tok = qm.load("1.5B", format="int4")                # weight-only int4, bf16 activations
    model, tok = qm.load("runs/sft", format="bf16")            # a run folder of ours: its model/
    model, tok = qm.load("model.gguf", format="auto", batch=8) # the fastest lossless format here for 8 rows
    model, tok = qm.load("results/rl/grpo")                    # LoRA adapters: their base (itself adapters), merged

Design choices
- A checkpoint is named one way everywhere (`--checkpoint` on every command): "0.5B" or "1.5B" (the official
  GGUF files, fetched and verified on first use), a .gguf file, a Hugging Face folder (config.json +
  safetensors), or a run folder of ours (`qwen-min pretrain/sft/dpo/grpo --out DIR`: its DIR/model/).
- Weights are read in fp32 (or in the float format asked for) and then converted once, in place
  (`quant.quantize.to_format`): quantising from fp32 is what the quality table measures. "auto" measures which
  lossless format decodes `batch` rows fastest on this machine (quant/fastest.py) before converting.
- A folder of LoRA adapters (adapter.json + adapter.safetensors, what `--lora` runs of dpo and grpo write)
  is read as its base checkpoint, named in adapter.json and loaded the same way (so adapters on adapters
  work), plus the adapters merged into the fp32 weights (model/lora.py); then the format conversion.
- The tokenizer is the checkpoint's own (tokenizer.json in the folder, or the vocabulary inside the .gguf),
  unless `tokenizer=` names another one.
- int4-gptq chooses its codes on calibration text: `calibration` is the ids, or a function of the tokenizer
  that makes them (eval/perplexity.py's `calibration_ids`, which the commands pass).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from qwen_min.checkpoints.fetch import CHECKPOINTS, default_checkpoint
from qwen_min.checkpoints.hf import from_pretrained
from qwen_min.formats import FLOAT, check_format, torch_dtype
from qwen_min.model.lora import ADAPTER_CONFIG, load_adapters, read_adapter_config
from qwen_min.model.qwen import Qwen
from qwen_min.quant.fastest import fastest_format
from qwen_min.quant.quantize import to_format
from qwen_min.tokenizer.bpe import Tokenizer

RUN_MODEL = "model"  # a run folder keeps its final weights here (train/trainer.py's callers)
CHECKPOINT_HELP = ("0.5B or 1.5B (the official Qwen2.5-Coder-Instruct checkpoints, fetched on first use), a .gguf "
                   "file, a Hugging Face folder, or a run folder of ours (its model/)")  # every --checkpoint's help


def checkpoint_path(checkpoint: str | Path | None, log=print) -> Path:
    """A `--checkpoint` value -> the file or folder to read: None or "0.5B" -> the 0.5B, "1.5B" -> the 1.5B
    (fetched on first use), a run folder -> its model/, anything else a .gguf file or Hugging Face folder.

    >>> checkpoint_path("3B")
    Traceback (most recent call last):
    ...
    ValueError: no checkpoint '3B': expected 0.5B, 1.5B, a .gguf file, a Hugging Face folder or a run folder
    """
    if checkpoint in (None, "default"):  # "default": the older name of the 0.5B on the training commands
        checkpoint = "0.5B"
    if str(checkpoint) in CHECKPOINTS:
        return default_checkpoint(str(checkpoint), log=log)
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise ValueError(f"no checkpoint {str(checkpoint)!r}: expected {', '.join(CHECKPOINTS)}, a .gguf file, "
                         "a Hugging Face folder or a run folder")
    if path.is_dir() and not (path / "config.json").exists() and not (path / ADAPTER_CONFIG).exists() and \
            any((path / RUN_MODEL / name).exists() for name in ("config.json", ADAPTER_CONFIG)):
        return path / RUN_MODEL
    return path


def load(checkpoint: str | Path | None = "0.5B", format: str = "fp32", device: str | torch.device = "cpu",
         batch: int = 1, tokenizer: str | Path | None = None,
         calibration: torch.Tensor | Callable[[Tokenizer], torch.Tensor] | None = None,
         log=print) -> tuple[Qwen, Tokenizer]:
    """(model in eval mode, tokenizer): `checkpoint` read and put in `format` (formats.py) on `device`."""
    check_format(format)
    path = checkpoint_path(checkpoint, log=log)
    if tokenizer is not None and not Path(tokenizer).exists():  # before the weights: it is the quicker to refuse
        raise FileNotFoundError(f"--tokenizer {tokenizer}: no such folder or file")
    read_as = format if format in FLOAT else "fp32"
    if (path / ADAPTER_CONFIG).exists():  # LoRA adapters: merged in fp32 onto their base, then converted
        model, tok = load(read_adapter_config(path)["base"], "fp32", device=device, tokenizer=tokenizer, log=log)
        log(f"merging the LoRA adapters of {path} ...")
        model = load_adapters(model, path).to(torch_dtype(read_as))
    else:
        log(f"loading {path} ({format}) ...")
        model = from_pretrained(path, dtype=read_as, device=device)
        tok = Tokenizer.from_pretrained(tokenizer or path)
    if format == "auto":
        format = fastest_format(model.config, batch=batch, device=device)
        log(f"format auto: {format} decodes {batch} row{'s' if batch != 1 else ''} fastest here")
    if format != read_as:
        if format == "int4-gptq" and callable(calibration):
            calibration = calibration(tok)
        to_format(model, format, calibration=calibration)
    return model.eval(), tok
