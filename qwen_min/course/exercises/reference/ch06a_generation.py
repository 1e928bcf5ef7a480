"""Reference answers of notebooks/06a_generation.ipynb's exercises (see __init__.py)."""

from qwen_min.course.exercises.watch import answer
from qwen_min.generation import generate, process_logits


@answer("ch06a_generation.check_top_p")
def top_p(logits, p):
    return process_logits(logits, top_p=p)


@answer("ch06a_generation.check_greedy_decode")
def greedy_decode(model, prompt_ids, n):
    return generate(model, prompt_ids, max_new_tokens=n, stop_ids=())
