"""`qwen-min consolidate RUN_DIR --out FOLDER`: a sharded checkpoint (checkpoint.dcp/) as our usual model folder.

    torchrun --nproc_per_node=2 -m qwen_min pretrain --shard fsdp --out runs/fsdp --stop-at 400
    qwen-min consolidate runs/fsdp --out runs/fsdp-model      # config.json, model.safetensors, tokenizer files
    python -c "import transformers as t; t.AutoModelForCausalLM.from_pretrained('runs/fsdp-model')"

Design choices
- One process, no process group: DCP reads every rank's slices and stitches them into full tensors, so
  a checkpoint written by any number of processes consolidates on a laptop (memory: one full model).
- The model's shape comes from the config.json the checkpoint stores (trainer.pt), the tokenizer from
  the run folder's tokenizer/ when it has one (pretrain runs; SFT/DPO runs use their --init's).
- Written to FOLDER.tmp, then renamed: an existing FOLDER is never overwritten, a failure leaves nothing.
- LoRA runs are refused (their adapters are merged by the training command at the end of the run).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from qwen_min.checkpoints.hf import save_pretrained
from qwen_min.config import QwenConfig
from qwen_min.model.qwen import Qwen
from qwen_min.train import dcp


def add_arguments(p):
    p.add_argument("run_dir", type=Path, help="a run folder holding checkpoint.dcp/ (or that folder itself)")
    p.add_argument("--out", type=Path, required=True,
                   help="model folder to write (config.json, model.safetensors, tokenizer files); must not exist")


def consolidate(run_dir: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the sharded checkpoint of `run_dir` as a model folder `out`; returns the checkpoint's step."""
    run_dir, out = Path(run_dir), Path(out)
    folder = run_dir / dcp.SHARDED
    if not dcp.exists(folder):
        if not (run_dir / ".metadata").is_file():  # nor the checkpoint folder itself
            raise FileNotFoundError(f"{run_dir}: no sharded checkpoint ({dcp.SHARDED}/, written by --shard fsdp)")
        folder = run_dir
    meta = dcp.read_trainer_state(folder)
    if out.exists():
        raise FileExistsError(f"{out} exists: choose another --out (nothing was written)")
    if meta.get("config") is None:
        raise ValueError(f"{folder}: the checkpoint stores no model config (not a Qwen model)")
    if any("lora_" in name for name in meta["shapes"]):
        raise ValueError(f"{folder}: a LoRA run; its training command merges the adapters into model/ at the end")
    model = Qwen(QwenConfig.from_hf_dict(meta["config"], source=str(folder / dcp.TRAINER_FILE)))
    dcp.load_model_weights(folder, model)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(model, tmp)
    tokenizer = (folder.parent if folder.name == dcp.SHARDED else run_dir) / "tokenizer"
    if (tokenizer / "tokenizer.json").is_file():
        for file in tokenizer.iterdir():
            if file.is_file():
                shutil.copy2(file, tmp / file.name)
    os.replace(tmp, out)
    return meta["step"]


def run(args) -> int:
    step = consolidate(args.run_dir, args.out)
    print(f"step {step} -> {args.out}: {', '.join(sorted(p.name for p in args.out.iterdir()))}")
    return 0
