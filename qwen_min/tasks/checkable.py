"""Instruction tasks with answers a program can check: the data of supervised fine-tuning (chapter 9) and DPO (chapter 10).

    import qwen_min.tasks.checkable as tasks
    train = tasks.make_examples(["add", "reverse"], "train", n_per_task=100, seed=0)
    train[0].messages     # [{'role': 'user', 'content': 'What is 47 + 38?'}, {'role': 'assistant', 'content': '85'}]
    tasks.TASKS["add"].check("The answer is 85.", "85")                 # True
    tasks.evaluate(model, tok, tasks.make_examples(tasks.GENERATED, "test", 50, seed=1))   # accuracy per task

Every task is a `Task(name, generate, check)`: `generate(rng)` draws one (prompt, reply, answer) from a
seeded `random.Random`, `check(reply, answer)` says whether a model's reply is right. `TASKS` maps each
name to its Task, so later stages (`make-pairs` in chapter 10) score sampled replies with the same checkers.

Design choices
- Splits by prompt, not by draw: a prompt belongs to "train", "dpo" or "test" by a hash of its text
  (80/10/10 buckets). Whatever the seed or the number drawn, no test prompt can appear in the training
  data (tests/train/test_sft.py checks it), and chapter 10 samples preference pairs on "dpo" prompts that SFT
  never saw. Evaluation splits hold distinct prompts; "train" may repeat a prompt (more epochs of it).
- Tasks are built for a tiny model learning in a minute on a CPU: lists are written "b, x, q" so each
  item is one token in the Qwen tokenizer (and in small trained ones), digits are one token each
  (the Qwen pre-tokenizer splits numbers into digits), and answers are short. Each task has a few
  phrasings, so the model follows an instruction rather than one fixed string. Four tasks (reverse, sort,
  count, max) also have NEW_PHRASINGS that no training, DPO or GRPO prompt uses: accuracy on them (chapter
  11a) measures whether what RL taught carries over to wordings it never saw.
- Checkers are lenient on form and strict on content: numbers are read as the last integer of the reply
  (word problems: the one after "The answer is"), lists and words are compared after stripping spaces,
  a final full stop and case.
- The English-Chinese lookups use a word list written for this project (data/sft/en_zh.tsv). A test
  prompt asks about words the training split shows in other phrasings: it tests following a new
  phrasing of a known fact, which is what a lookup can test.
- Handwritten conversations (data/sft/handwritten.jsonl: multi-turn, system prompts, tool calls) go into
  training only; their checker asks that the final reply contain the expected fragment.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from qwen_min.generation import generate
from qwen_min.paths import data_dir, read_jsonl, read_text
from qwen_min.tokenizer.chat_template import render

SPLITS = {"train": range(0, 80), "dpo": range(80, 90), "test": range(90, 100)}  # hash bucket (0..99) -> split
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Task:
    name: str
    generate: Callable[[random.Random], tuple[str, str, str]] | None  # rng -> (prompt, reply, answer); None: read from a file
    check: Callable[[str, str], bool]  # (model reply, answer) -> right?
    description: str = ""


@dataclass
class Example:
    """One conversation to train on (`messages` ends with the assistant's reply) and what its checker expects."""

    task: str
    messages: list[dict]
    answer: str
    tools: list[dict] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def prompt_messages(self) -> list[dict]:
        """The conversation up to the last assistant reply: what the model is asked to continue."""
        return self.messages[:-1]

    @property
    def reference_reply(self) -> str:
        """The last assistant turn as the model writes it (a tool call rendered as `<tool_call>` JSON), no `<|im_end|>`."""

        prompt = render(self.prompt_messages, self.tools, add_generation_prompt=True)
        return render(self.messages, self.tools)[len(prompt):].removesuffix("<|im_end|>\n")

    def to_json(self) -> dict:
        d = {"task": self.task, "messages": self.messages, "answer": self.answer}
        if self.tools:
            d["tools"] = self.tools
        return d


# ---------------------------------------------------------------------------- checkers
def _normalise(text: str) -> str:
    """' C, A, B. ' -> 'c,a,b': no spaces, no final full stop, lower case."""
    return re.sub(r"\s+", "", text).rstrip(".").lower()


def check_exact(reply: str, answer: str) -> bool:
    """Same text up to spaces, case and a final full stop.

    >>> check_exact(" C, a, B.", "c, a, b"), check_exact("c, b, a", "c, a, b")
    (True, False)
    """
    return _normalise(reply) == _normalise(answer)


def check_last_number(reply: str, answer: str) -> bool:
    """The last integer in the reply (after 'The answer is', when the reply says so) equals the answer.

    >>> check_last_number("3 + 4 = 7. The answer is 7.", "7"), check_last_number("It is 12", "21")
    (True, False)
    """
    if "answer is" in reply:
        numbers = re.findall(r"-?\d+", reply.rsplit("answer is", 1)[1])[:1]
    else:
        numbers = re.findall(r"-?\d+", reply)[-1:]
    return numbers == [answer.strip()]


def check_contains(reply: str, answer: str) -> bool:
    """The expected fragment appears in the reply (case-insensitive)."""
    return answer.lower() in reply.lower()


# ---------------------------------------------------------------------------- generators
def _letters(rng: random.Random, n: int) -> list[str]:
    return rng.sample(LETTERS, n)


def gen_add(rng):
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    prompt = rng.choice(["What is {a} + {b}?", "Add {a} and {b}.", "Compute {a} plus {b}."]).format(a=a, b=b)
    return prompt, str(a + b), str(a + b)


NAMES = ["Tom", "Anna", "Li Wei", "Sara", "Omar", "Mei"]
ITEMS = ["apples", "books", "coins", "pens", "cards", "eggs"]
STORIES = [  # (text, the expression the reply spells out), a + b - c
    ("{n} has {a} {i}. {n} buys {b} more and then gives {c} away. How many {i} does {n} have now?", "{a} + {b} - {c}"),
    ("A box holds {a} {i}. {n} puts in {b} and takes out {c}. How many {i} are in the box?", "{a} + {b} - {c}"),
    ("{n} had {a} {i}, found {b} and lost {c}. How many {i} are left?", "{a} + {b} - {c}"),
]


def gen_word_problem(rng):
    """Two steps: add, then subtract; the reply shows the steps, then 'The answer is N.'"""
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    c = rng.randint(1, a + b - 1)
    story, expr = rng.choice(STORIES)
    values = dict(n=rng.choice(NAMES), i=rng.choice(ITEMS), a=a, b=b, c=c)
    total = a + b - c
    reply = f"{expr.format(**values)} = {total}. The answer is {total}."
    return story.format(**values), reply, str(total)


PHRASINGS = {  # task -> the phrasings of its prompts: training, DPO and test prompts all use these
    "reverse": ("Reverse this list: {}", "Write these letters in reverse order: {}", "Reverse: {}"),
    "sort": ("Sort these numbers from smallest to largest: {}", "Sort: {}", "Put in increasing order: {}"),
    "count": ("How many times does {t} appear in: {s}?", "Count the letter {t} in: {s}",
              "In the list {s}, how many are {t}?"),
    "max": ("Which is the largest: {}?", "What is the biggest number in: {}", "Find the maximum of {}."),
}
NEW_PHRASINGS = {  # phrasings no training prompt uses: `make_examples(..., phrasings="new")` tests generalisation
    "reverse": ("Give the list {} backwards.", "List these in the opposite order: {}", "Flip the order of: {}"),
    "sort": ("Arrange in ascending order: {}", "Order these from lowest to highest: {}", "Sort ascending: {}"),
    "count": ("How often does {t} occur in {s}?", "Tally the letter {t} in: {s}", "Number of {t} in the list {s}?"),
    "max": ("Name the greatest of {}.", "Which number is highest: {}?", "Give the largest value among {}."),
}


def gen_reverse(rng, phrasings=PHRASINGS["reverse"]):
    items = _letters(rng, rng.randint(3, 6))
    prompt = rng.choice(phrasings).format(", ".join(items))
    answer = ", ".join(reversed(items))
    return prompt, answer, answer


def gen_sort(rng, phrasings=PHRASINGS["sort"]):
    items = [str(rng.randint(0, 9)) for _ in range(rng.randint(3, 6))]
    prompt = rng.choice(phrasings).format(", ".join(items))
    answer = ", ".join(sorted(items))
    return prompt, answer, answer


def gen_count(rng, phrasings=PHRASINGS["count"]):
    target = rng.choice(LETTERS[:5])
    items = [rng.choice(LETTERS[:5]) for _ in range(rng.randint(3, 8))]
    prompt = rng.choice(phrasings).format(t=target, s=", ".join(items))
    answer = str(items.count(target))
    return prompt, answer, answer


def gen_max(rng, phrasings=PHRASINGS["max"]):
    items = rng.sample(range(10, 100), rng.randint(2, 4))
    prompt = rng.choice(phrasings).format(", ".join(map(str, items)))
    return prompt, str(max(items)), str(max(items))


def read_lexicon(path: Path | None = None) -> list[tuple[str, str]]:
    """The (english, chinese) pairs of the word list; '#' lines are comments."""
    path = path or data_dir("sft", "en_zh.tsv")
    lines = read_text(path, "the English-Chinese word list of the SFT tasks").splitlines()
    pairs = []
    for n, line in enumerate(lines, 1):
        if line.strip() and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) != 2 or not all(p.strip() for p in parts):
                raise ValueError(f"{path}:{n}: expected 'english<TAB>chinese', got {line!r}")
            pairs.append((parts[0].strip(), parts[1].strip()))
    return pairs


@functools.cache
def lexicon() -> list[tuple[str, str]]:
    """The shipped word list, read once."""
    return read_lexicon()


TO_CHINESE = ["What is {w} in Chinese?", "Translate to Chinese: {w}", "How do you say {w} in Chinese?",
              "Give the Chinese word for {w}."]
TO_ENGLISH = ["What is {w} in English?", "Translate to English: {w}", "What does {w} mean in English?",
              "Give the English word for {w}."]


def gen_en_zh(rng):
    english, chinese = rng.choice(lexicon())
    if rng.random() < 0.5:
        return rng.choice(TO_CHINESE).format(w=english), chinese, chinese
    return rng.choice(TO_ENGLISH).format(w=chinese), english, english


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("add", gen_add, check_last_number, "add two 2-digit numbers"),
    Task("word_problem", gen_word_problem, check_last_number, "two-step word problem, steps then 'The answer is N.'"),
    Task("reverse", gen_reverse, check_exact, "reverse a list of 3-6 letters"),
    Task("sort", gen_sort, check_exact, "sort 3-6 digits"),
    Task("count", gen_count, check_last_number, "count a letter in a list of 3-8 letters"),
    Task("max", gen_max, check_last_number, "largest of 2-4 two-digit numbers"),
    Task("en_zh", gen_en_zh, check_exact, "English <-> Chinese word lookup (60 words)"),
    Task("handwritten", None, check_contains, "handwritten conversations (train only): multi-turn, system prompts, tool calls"),
]}
GENERATED = [name for name, task in TASKS.items() if task.generate is not None]
PHRASING_SETS = ("train", "new")  # make_examples' phrasings: the tasks' own, or NEW_PHRASINGS (held out of training)


# ---------------------------------------------------------------------------- splits and example sets
def split_of(prompt: str) -> str:
    """'train', 'dpo' or 'test', fixed by the prompt's text (sha256 bucket)."""
    bucket = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "big") % 100
    return next(name for name, buckets in SPLITS.items() if bucket in buckets)


def make_examples(task_names, split: str, n_per_task: int, seed: int = 0, phrasings: str = "train") -> list[Example]:
    """`n_per_task` examples of each task whose prompts fall in `split`, interleaved task by task.

    Deterministic in (task names, split, n_per_task, seed, phrasings). "dpo" and "test" prompts are distinct;
    a small task (en_zh has 480 prompts) raises if the split cannot hold `n_per_task` of them.
    phrasings="new" words the prompts with NEW_PHRASINGS, which no training prompt uses (tasks that have them).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}")
    if phrasings not in PHRASING_SETS:
        raise ValueError(f"unknown phrasings {phrasings!r}; choose one of {PHRASING_SETS}")
    names = [task_names] if isinstance(task_names, str) else list(task_names)
    per_task = []
    for name in names:
        if name not in GENERATED:
            raise ValueError(f"unknown task {name!r}; generated tasks are {GENERATED}")
        if phrasings == "new" and name not in NEW_PHRASINGS:
            raise ValueError(f"task {name!r} has no new phrasings; those that do: {sorted(NEW_PHRASINGS)}")
        draw = functools.partial(TASKS[name].generate, phrasings=NEW_PHRASINGS[name]) if phrasings == "new" \
            else TASKS[name].generate
        rng = random.Random(f"{seed}/{name}/{split}" + ("/new" if phrasings == "new" else ""))
        found, seen = [], set()
        for _ in range(200 * n_per_task + 1000):
            if len(found) == n_per_task:
                break
            prompt, reply, answer = draw(rng)
            if split_of(prompt) != split or (split != "train" and prompt in seen):
                continue
            seen.add(prompt)
            found.append(Example(name, [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}], answer))
        if len(found) < n_per_task:
            raise ValueError(f"task {name!r} has only {len(found)} distinct {split} prompts, fewer than the {n_per_task} asked")
        per_task.append(found)
    return [ex for group in zip(*per_task) for ex in group]


def read_examples(path: str | Path) -> list[Example]:
    """Examples from a JSONL file: one {"messages": [...], "answer": ..., "task"?, "tools"?} object per line."""
    out = []
    for n, row in read_jsonl(path, "a JSONL file of SFT examples"):
        try:
            messages = row["messages"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: expected a JSON object with 'messages' ({e})") from None
        if not messages or messages[-1].get("role") != "assistant":
            raise ValueError(f"{path}:{n}: the conversation must end with an assistant message")
        meta = {k: v for k, v in row.items() if k not in ("task", "messages", "answer", "tools")}
        out.append(Example(row.get("task", "handwritten"), messages, str(row.get("answer", "")), row.get("tools"), meta))
    return out


def handwritten() -> list[Example]:
    """The handwritten conversations of data/sft/handwritten.jsonl (train only)."""
    return read_examples(data_dir("sft", "handwritten.jsonl"))


# ---------------------------------------------------------------------------- evaluation
def prompt_ids(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
    """What a model continues to write the assistant's next turn: the chat template with the generation prompt."""
    return tokenizer.encode(tokenizer.render_chat(messages, tools, add_generation_prompt=True), allowed_special="all")


def reply_text(tokenizer, ids) -> str:
    """A generated reply as text, special tokens dropped. So are ids past the tokenizer's vocabulary: the
    embedding may have more rows than the tokenizer has tokens (padded to a multiple of 64)."""
    return tokenizer.decode([i for i in ids if i < tokenizer.vocab_size], skip_special=True)


def evaluate(model, tokenizer, examples: list[Example], max_new_tokens: int = 32, batch_size: int = 32) -> dict:
    """Greedy replies to each example's prompt, scored by its task's checker.

    Returns {"accuracy": {task: fraction right}, "replies": [(example, reply, right), ...]}.
    """

    was_training = model.training
    model.eval()
    results = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        prompts = [prompt_ids(tokenizer, ex.prompt_messages, ex.tools) for ex in chunk]
        outputs = generate(model, prompts, max_new_tokens=max_new_tokens, temperature=0.0, stop_ids=tokenizer.stop_ids)
        for ex, ids in zip(chunk, outputs):
            reply = reply_text(tokenizer, ids)
            results.append((ex, reply, TASKS[ex.task].check(reply, ex.answer)))
    model.train(was_training)
    accuracy = {}
    for name in dict.fromkeys(ex.task for ex in examples):
        marks = [right for ex, _, right in results if ex.task == name]
        accuracy[name] = sum(marks) / len(marks)
    return {"accuracy": accuracy, "replies": results}


def heldout_accuracy(model, tokenizer, examples: list[Example], max_new_tokens: int = 32) -> dict[str, float]:
    """Greedy checker accuracy per task on held-out prompts, and their mean."""
    accuracy = evaluate(model, tokenizer, examples, max_new_tokens=max_new_tokens)["accuracy"]
    return {**accuracy, "mean": sum(accuracy.values()) / len(accuracy)}
