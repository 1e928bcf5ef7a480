"""Reference answers and the shared setting of notebooks/13_end_to_end.ipynb's exercises (see __init__.py)."""

import functools

import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises.watch import answer
from qwen_min.generation import generate
from qwen_min.model.qwen import Qwen
from qwen_min.tasks.checkable import check_last_number, make_examples, prompt_ids, reply_text
from qwen_min.tokenizer.bpe_training import train_bpe
from qwen_min.tokenizer.chat_template import render
from qwen_min.train.dpo import dpo_loss


@functools.lru_cache(maxsize=1)
def tiny_chat_model():
    """A random tiny Qwen and a 320-token BPE trained on a few conversations. Its matrices are drawn with std 0.5
    (not the 0.02 of training), so greedy replies are varied text rather than one repeated token."""
    examples = make_examples(["add", "reverse", "word_problem"], "train", 20, seed=10)
    tok = train_bpe([render(ex.messages) for ex in examples], 320)
    model = Qwen(QwenConfig.from_name("tiny", vocab_size=tok.vocab_size)).eval()
    g = torch.Generator().manual_seed(10)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.5, generator=g)
    return model, tok


@answer("ch13_end_to_end.check_number_checker")
def number_checker(reply, answer):
    return check_last_number(reply, answer)


@answer("ch13_end_to_end.check_chat_reply")
def chat_reply(model, tok, messages, max_new_tokens):
    return reply_text(tok, generate(model, prompt_ids(tok, messages), max_new_tokens=max_new_tokens, stop_ids=tok.stop_ids))


@answer("ch13_end_to_end.check_preference_accuracy")
def preference_accuracy(*args):
    return dpo_loss(*args)[1]["rewards/accuracies"]
