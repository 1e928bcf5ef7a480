"""Read a reward model folder: transformers' `Qwen2ForSequenceClassification` layout with one label (chapter 11).

    qm.save_pretrained(rm, "runs/rm")          # hf.py writes the config rm.hf_config() describes
    rm = load_reward_model("runs/rm")          # and this reads it back (or a folder transformers wrote)

Design choices
- The same strict reads as a causal LM (hf.py's `read_tensors`): every tensor expected, every shape checked,
  one error naming the file and the tensor.
- A folder whose config.json names another architecture (a causal LM, or a classifier with several labels)
  is refused with one line saying so: a causal LM has no score head to read.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from qwen_min.checkpoints.hf import CheckpointError, read_tensors, safetensors_files
from qwen_min.config import QwenConfig
from qwen_min.model.reward import ARCHITECTURE, RewardModel


def load_reward_model(path: str | Path, dtype: torch.dtype = torch.float32, device="cpu") -> RewardModel:
    """A RewardModel in eval mode from a folder written by `qm.save_pretrained(rm, ...)` or by transformers."""
    path = Path(path)
    file = path / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing (a reward model folder holds config.json + safetensors)")
    try:
        d = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{file}: not valid JSON ({e})") from None
    architectures = d.get("architectures") or []
    labels = len(d["id2label"]) if d.get("id2label") else d.get("num_labels", 2)  # transformers' default: 2
    if architectures != [ARCHITECTURE] or labels != 1:
        raise CheckpointError(f"{path}: not a reward model (config.json says architectures {architectures}, "
                              f"{labels} label(s); a reward model is {ARCHITECTURE} with one label: a scalar head "
                              "score.weight)")
    cfg = QwenConfig.from_hf_dict(d, source=str(file))
    with torch.device("meta"):
        rm = RewardModel(cfg, pad_token_id=d.get("pad_token_id"))
    expected = {name: tuple(t.shape) for name, t in rm.state_dict().items()}
    tensors: dict[str, torch.Tensor] = {}
    for shard, names in safetensors_files(path).items():
        tensors.update(read_tensors(shard, names, expected, dtype, device))
    extra = sorted(set(tensors) - set(expected))
    missing = sorted(set(expected) - set(tensors))
    if extra or missing:
        what = f"holds {extra[0]}, which a reward model does not have" if extra else f"lacks {missing[0]}"
        raise CheckpointError(f"{path}: {what} (expected the decoder plus score.weight {expected['score.weight']})")
    rm.load_state_dict(tensors, assign=True)
    return rm.eval()
