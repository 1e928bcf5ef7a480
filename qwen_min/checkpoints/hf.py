"""Load and save models in the Hugging Face layout: `config.json` + safetensors (one file, or shards with an index).

    model = qm.from_pretrained("path/to/Qwen2.5-0.5B-Instruct", dtype=torch.bfloat16)
    qm.save_pretrained(model, "out/")      # transformers' AutoModelForCausalLM.from_pretrained("out/") loads it
    model = qm.from_pretrained("model.gguf")   # a GGUF file goes to qwen_min.checkpoints.gguf_loader

Design choices
- Tensor names need no mapping: `qm.Qwen` uses Hugging Face's names (see model/qwen.py).
- The model is built on the meta device (shapes only, no memory), then every tensor
  is read from the memory-mapped file one at a time, converted to the requested
  dtype/device and handed over with `load_state_dict(assign=True)`. So at most one
  full copy of the weights exists, plus one tensor in flight.
- Strict: every expected tensor must be present with the right shape and every tensor
  in the files must be expected; each failure is one error naming the file and the
  tensor. Tied models: Hugging Face omits `lm_head.weight`; a file that has it anyway
  is accepted only when it equals the embedding.
- Saving drops `lm_head.weight` of tied models (as transformers does) and splits into
  `model-0000i-of-0000n.safetensors` shards plus `model.safetensors.index.json` when the
  weights exceed `max_shard_bytes`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from qwen_min.checkpoints.gguf_loader import load_gguf
from qwen_min.config import QwenConfig
from qwen_min.formats import torch_dtype
from qwen_min.model.qwen import Qwen
from qwen_min.paths import read_json

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SUPPORTED_ARCHITECTURES = ("Qwen2ForCausalLM", "Qwen2MoeForCausalLM")
TIED_HEAD, EMBEDDING = "lm_head.weight", "model.embed_tokens.weight"


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model its config.json describes."""


def from_pretrained(path: str | Path, dtype: torch.dtype | str = torch.float32, device: str | torch.device = "cpu") -> Qwen:
    """A `Qwen` in eval mode from a Hugging Face folder or a `.gguf` file, weights in `dtype` (or fp32, bf16, fp16)."""
    if isinstance(dtype, str):
        dtype = torch_dtype(dtype)
    path = Path(path)
    if path.suffix == ".gguf":
        return load_gguf(path, dtype=dtype, device=device)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such checkpoint folder (expected config.json + safetensors, or a .gguf file)")
    cfg = read_config(path / "config.json")
    with torch.device("meta"):
        model = Qwen(cfg)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        del expected[TIED_HEAD]
    tensors: dict[str, torch.Tensor] = {}
    for file, names in safetensors_files(path).items():
        tensors.update(read_tensors(file, names, expected, dtype, device))
    if cfg.tie_word_embeddings and TIED_HEAD in tensors:
        head = tensors.pop(TIED_HEAD)
        if not torch.equal(head, tensors.get(EMBEDDING, head)):
            raise CheckpointError(f"{path}: {TIED_HEAD} differs from {EMBEDDING} but config.json says tie_word_embeddings")
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise CheckpointError(f"{path}: missing tensor(s) {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    model.load_state_dict(tensors, assign=True)
    return model.eval()


def read_config(file: Path) -> QwenConfig:
    d = read_json(file, "a Hugging Face model folder needs config.json", CheckpointError)
    unsupported = [a for a in d.get("architectures") or [] if a not in SUPPORTED_ARCHITECTURES]
    if unsupported:
        raise CheckpointError(f"{file}: unsupported architecture {unsupported[0]!r} "
                              f"(qwen_min loads {', '.join(SUPPORTED_ARCHITECTURES)})")
    return QwenConfig.from_hf_dict(d, source=str(file))


def safetensors_files(folder: Path) -> dict[Path, list[str] | None]:
    """safetensors file -> the tensor names the index puts there (None: whatever the single file holds)."""
    index_file = folder / INDEX_FILE
    if index_file.exists():
        try:
            weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index_file}: not a safetensors index with a weight_map ({e})") from None
        files: dict[Path, list[str]] = {}
        for name, file in weight_map.items():
            files.setdefault(folder / file, []).append(name)
        return files
    if (folder / SINGLE_FILE).exists():
        return {folder / SINGLE_FILE: None}
    raise FileNotFoundError(f"{folder}: no {SINGLE_FILE} and no {INDEX_FILE}")


def read_tensors(file: Path, names: list[str] | None, expected: dict[str, tuple], dtype, device) -> dict[str, torch.Tensor]:
    """Read one safetensors file, checking every name and shape; the index's `names`, when given, must be exactly its contents."""
    if not file.exists():
        raise FileNotFoundError(f"{file}: missing (listed in {INDEX_FILE})")
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            present = set(f.keys())
            if names is not None and set(names) != present:
                unlisted, absent = sorted(present - set(names)), sorted(set(names) - present)
                detail = (f"the index lists {absent[0]}, which it does not hold" if absent
                          else f"it holds {unlisted[0]}, which the index does not list")
                raise CheckpointError(f"{file}: disagrees with {INDEX_FILE}: {detail}")
            out = {}
            for name in sorted(present):
                shape = tuple(f.get_slice(name).get_shape())
                if name not in expected and name != TIED_HEAD:
                    raise CheckpointError(f"{file}: unexpected tensor {name} {shape} (not part of this config's model)")
                want = expected.get(name, expected.get(EMBEDDING))
                if shape != want:
                    raise CheckpointError(f"{file}: tensor {name} has shape {shape}, the config implies {want}")
                out[name] = f.get_tensor(name).to(device=device, dtype=dtype)  # one tensor in flight at a time
            return out
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own SafetensorError for truncated or corrupt files
        raise CheckpointError(f"{file}: cannot read safetensors ({e})") from None


def save_pretrained(model: nn.Module, folder: str | Path, max_shard_bytes: int = 5_000_000_000) -> None:
    """Write config.json and the weights in their current dtype; shards + index above `max_shard_bytes`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        del state[TIED_HEAD]
    dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
    # a model that describes its own config.json (the reward model: a classifier head) writes that one
    config = model.hf_config() if hasattr(model, "hf_config") else model.config.to_hf_dict()
    config |= {"dtype": dtype, "torch_dtype": dtype}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += t.nbytes
    for stale in folder.glob("model*.safetensors*"):  # an older save with another sharding must not linger
        stale.unlink()
    if len(shards) == 1:
        save_file(state, str(folder / SINGLE_FILE), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    index = {"metadata": {"total_size": sum(t.nbytes for t in state.values())}, "weight_map": weight_map}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
