"""Reference answers and the measurement of notebooks/09_sft.ipynb's exercises (see __init__.py)."""

import functools

from qwen_min.course.exercises.watch import answer
from qwen_min.model.lora import LoRALinear
from qwen_min.model.qwen import IGNORE_INDEX
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tasks.checkable import make_examples
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.train.sft import encode_chat


@functools.lru_cache(maxsize=1)
def official_tokenizer() -> Tokenizer:
    return Tokenizer.from_pretrained(official_tokenizer_dir())


@answer("ch09_sft.check_assistant_labels")
def assistant_labels(tok, messages, tools):
    return encode_chat(tok, messages, tools)[1]


@answer("ch09_sft.check_trained_share")
@functools.cache  # deterministic: a graded cell that runs the checker again does not repeat the experiment
def measured_trained_share(task: str = "add", n: int = 200) -> float:
    """Share of the next-token targets (positions 1..t-1) of `n` training conversations of `task` that are trained,
    with the official tokenizer and the default system prompt."""
    tok = official_tokenizer()
    rows = [encode_chat(tok, ex.messages) for ex in make_examples([task], "train", n, seed=0)]
    trained = sum(sum(label != IGNORE_INDEX for label in labels[1:]) for _, labels in rows)
    return trained / sum(len(ids) - 1 for ids, _ in rows)


@answer("ch09_sft.check_fixed_lora_merge")
def lora_merge(weight, A, B, alpha):
    rank = A.shape[0]  # A is (r, in)
    return weight + B @ A * (alpha / rank)


@answer("ch09_sft.check_lora_layer")
def lora_layer(x, base, A, B, alpha):
    """The package's LoRALinear around `base` holding A and B: its output on x and its merged nn.Linear."""
    layer = LoRALinear(base, rank=A.shape[0], alpha=alpha)
    layer.lora_A.data, layer.lora_B.data = A, B
    return layer(x), layer.merged()
