"""The chapter 13 exercise checkers accept the reference and reject plausible wrong answers."""

import re

import pytest

from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch13_end_to_end import check_chat_reply, check_number_checker, check_preference_accuracy
from qwen_min.generation import generate
from qwen_min.tasks.checkable import check_last_number, reply_text
from qwen_min.train.dpo import dpo_loss


def _last_number(reply, answer):  # written out, as a student would
    text = reply.rsplit("answer is", 1)[1] if "answer is" in reply else reply
    numbers = re.findall(r"-?\d+", text)
    return bool(numbers) and (numbers[0] if "answer is" in reply else numbers[-1]) == answer.strip()


def test_number_checker():
    check_number_checker(_last_number)
    with pytest.raises(ExerciseFailed, match="calls the package's own check_last_number"):
        check_number_checker(check_last_number)
    with pytest.raises(ExerciseFailed, match="number_checker: wrong"):  # ignores 'The answer is'
        check_number_checker(lambda reply, answer: re.findall(r"-?\d+", reply)[-1:] == [answer])
    with pytest.raises(ExerciseFailed, match="number_checker: wrong"):  # forgets negative numbers
        check_number_checker(lambda reply, answer: (re.findall(r"\d+", reply.rsplit("answer is", 1)[-1])[:1] if
                                                    "answer is" in reply else re.findall(r"\d+", reply)[-1:]) == [answer])


def _reply(model, tok, messages, max_new_tokens, add_generation_prompt=True):
    prompt = tok.encode(tok.render_chat(messages, add_generation_prompt=add_generation_prompt), allowed_special="all")
    return reply_text(tok, generate(model, prompt, max_new_tokens=max_new_tokens, stop_ids=tok.stop_ids))


def test_chat_reply_checker():
    check_chat_reply(_reply)
    with pytest.raises(ExerciseFailed, match="chat_reply: wrong"):  # no generation prompt: the model continues the user turn
        check_chat_reply(lambda *args: _reply(*args, add_generation_prompt=False))

    def plain_text_specials(model, tok, messages, n):  # <|im_start|> encoded as plain text, not one special token
        prompt = tok.encode(tok.render_chat(messages, add_generation_prompt=True))
        return reply_text(tok, generate(model, prompt, max_new_tokens=n, stop_ids=tok.stop_ids))

    with pytest.raises(ExerciseFailed, match="chat_reply: wrong"):
        check_chat_reply(plain_text_specials)


def test_preference_accuracy_checker():
    check_preference_accuracy(lambda pc, pr, rc, rr, b: ((b * (pc - rc)) > (b * (pr - rr))).float().mean().item())
    with pytest.raises(ExerciseFailed, match="calls the package.s own"):
        check_preference_accuracy(lambda *args: dpo_loss(*args)[1]["rewards/accuracies"])
    with pytest.raises(ExerciseFailed, match="preference_accuracy: wrong"):  # counts ties as wins
        check_preference_accuracy(lambda pc, pr, rc, rr, b: ((pc - rc) >= (pr - rr)).float().mean().item())
    with pytest.raises(ExerciseFailed, match="preference_accuracy: wrong"):  # forgets the reference
        check_preference_accuracy(lambda pc, pr, rc, rr, b: (pc > pr).float().mean().item())
