"""Checkers for the exercises of notebook 13_end_to_end: one per stage of the chain that scores a model
(references: reference/ch13_end_to_end.py).

    from qwen_min.course.exercises.ch13_end_to_end import check_number_checker, check_chat_reply, check_preference_accuracy
    check_number_checker(my_check)         # my_check(reply, answer) -> bool: is the reply's number the answer?
    check_chat_reply(my_reply)             # my_reply(model, tok, messages, max_new_tokens) -> greedy reply text
    check_preference_accuracy(my_acc)      # my_acc(pi_c, pi_r, ref_c, ref_r, beta) -> fraction of pairs won
"""

from __future__ import annotations

import random

import torch

from qwen_min.course.exercises import compare, seed
from qwen_min.course.exercises.reference import ch13_end_to_end as ref
from qwen_min.generation import generate
from qwen_min.tasks.checkable import Example, check_last_number, evaluate, make_examples, prompt_ids, reply_text
from qwen_min.train.dpo import dpo_loss


def check_number_checker(student) -> None:
    """student(reply, answer) -> True when the reply's number is the answer (tasks.check_last_number)."""
    rng = random.Random(seed(10))
    inputs = [("The answer is 7.", "7"), ("3 + 4 = 7. The answer is 7.", "7"), ("7 apples, so the answer is 12.", "7"),
              ("It is 12", "21"), ("no number here", "3"), ("-5", "-5"), ("The answer is -5 or 4", "4"), ("", "0")]
    for _ in range(12):
        a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(0, 30)
        reply = rng.choice([f"{a} + {b} = {a + b}. The answer is {a + b}.", f"{a + b}", f"It is {a + b}, not {c}",
                            f"The answer is {c}. Or {a + b}?", f"{a}, {b} and {a + b}"])
        inputs.append((reply, str(rng.choice([a + b, c]))))
    compare("number_checker", student, ref.number_checker, inputs, forbidden=[check_last_number],
            hint="look at the failing reply: which of its numbers is the one a reader takes as the answer? Think of "
                 "replies that show their working, replies that say 'answer is' more than once, negative numbers "
                 "and replies with no number at all.")


def check_chat_reply(student) -> None:
    """student(model, tokenizer, messages, max_new_tokens) -> the model's greedy reply, special tokens dropped."""
    model, tok = ref.tiny_chat_model()
    conversations = [ex.prompt_messages for ex in make_examples(["add", "sort"], "test", 2, seed=seed(10))]
    conversations.append([{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Reverse: a, b"}])
    inputs = [(model, tok, messages, n) for messages, n in zip(conversations, [8, 12, 16, 10, 6])]
    compare("chat_reply", student, ref.chat_reply, inputs, forbidden=[prompt_ids, evaluate],
            hint="the model continues text: what must the prompt end with for its next tokens to be the assistant's "
                 "turn, and are the control tokens in the prompt one id each? Stop where the turn ends, and return only "
                 "what the model wrote, without control tokens.")


def check_preference_accuracy(student) -> None:
    """student(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> float, the share of pairs
    whose chosen answer has the strictly larger implicit reward (dpo_loss's rewards/accuracies)."""
    g = torch.Generator().manual_seed(seed(10))
    inputs = []
    for n, beta in [(1, 0.1), (5, 0.1), (16, 0.5), (40, 0.02)]:
        pc, pr, rc, rr = (torch.randn(n, generator=g) * 5 - 20 for _ in range(4))
        inputs.append((pc, pr, rc, rr, beta))
    z = torch.zeros(4)
    inputs.append((z, z, z, z, 0.1))  # policy == reference: every pair a tie
    shifted = torch.randn(6, generator=g)
    inputs.append((shifted - 1, shifted - 1, shifted, shifted, 0.1))  # both answers lost the same: ties again
    inputs.append((torch.tensor([-5.0, -6.0]), torch.tensor([-9.0, -8.0]), torch.tensor([-4.0, -4.0]),
                   torch.tensor([-9.0, -9.0]), 0.1))  # raw log-probs favour chosen, the implicit rewards do not always
    compare("preference_accuracy", student, ref.preference_accuracy, inputs, atol=1e-6, forbidden=[dpo_loss],
            hint="DPO scores an answer by how much more likely the policy makes it than the reference does, not by "
                 "its raw log-prob; a pair counts as won only when the chosen answer scores strictly higher.")


PACKAGE_EQUIVALENTS = {
    "check_number_checker": [check_last_number],
    "check_chat_reply": [lambda model, tok, messages, n: reply_text(tok, generate(model, prompt_ids(tok, messages),
                                                                                  max_new_tokens=n, stop_ids=tok.stop_ids)),
                         lambda model, tok, messages, n: evaluate(
        model, tok, [Example("add", [*messages, {"role": "assistant", "content": ""}], "")], max_new_tokens=n)
        ["replies"][0][1]],
    "check_preference_accuracy": [lambda *args: dpo_loss(*args)[1]["rewards/accuracies"]],
}
