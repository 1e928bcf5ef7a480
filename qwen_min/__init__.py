"""qwen_min: Qwen2.5 from scratch in PyTorch, checked against the real checkpoint and tokenizer.

    import qwen_min as qm
    model, tok = qm.load("0.5B", format="bf16")       # the official checkpoint, fetched once
    print(tok.decode(qm.generate(model, tok.encode("def fib(n):"), max_new_tokens=32)))

Design choice: the public names are imported lazily (PEP 562 `__getattr__`), so
`import qwen_min` is instant and the tokenizer works without importing torch.
`_EXPORTS` below is the whole public surface and where each name lives.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # configuration and the default checkpoint
    "QwenConfig": "qwen_min.config",
    "default_checkpoint": "qwen_min.checkpoints.fetch",
    "checkpoint_path": "qwen_min.checkpoints.load",
    "load": "qwen_min.checkpoints.load",
    # chapter 1: tokenizer
    "Tokenizer": "qwen_min.tokenizer.bpe",
    "StreamingDecoder": "qwen_min.tokenizer.bpe",
    "train_bpe": "qwen_min.tokenizer.bpe_training",
    # chapters 2-5: the model
    "Qwen": "qwen_min.model.qwen",
    "KVCache": "qwen_min.model.attention",
    "from_pretrained": "qwen_min.checkpoints.hf",
    "save_pretrained": "qwen_min.checkpoints.hf",
    # chapter 6: generation
    "generate": "qwen_min.generation",
    "chat_defaults": "qwen_min.generation",
    # chapter 8: pretraining (the loop is shared by chapters 9 and 10)
    "Trainer": "qwen_min.train.trainer",
    "TrainConfig": "qwen_min.train.trainer",
    # chapter 9: supervised fine-tuning
    "encode_chat": "qwen_min.train.sft",
    "apply_lora": "qwen_min.model.lora",
    "merge_lora": "qwen_min.model.lora",
    # chapter 10: DPO
    "dpo_loss": "qwen_min.train.dpo",
    # chapter 7: quantisation
    "quantize": "qwen_min.quant.quantize",
    "save_gguf": "qwen_min.checkpoints.gguf_writer",
    # chapter 11: reward model and GRPO
    "RewardModel": "qwen_min.model.reward",
    "grpo_loss": "qwen_min.train.grpo",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qwen_min' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
