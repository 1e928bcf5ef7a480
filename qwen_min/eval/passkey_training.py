"""Training rows that teach a small model the passkey task, so that its failure past its training length shows.

    text = shards["shakespeare"]["train"].tokens                        # a 1-D array of token ids (train/data.py)
    batches = PasskeyMixture(tok, text, seq_len=128, batch_size=16, passkey_share=0.5, seed=0)
    batch = batches.next_batch()                                        # {"input_ids": LongTensor (16, 128)}
    stages = StepMixture({"long": long_batches, "short": batches}, {"long": 0.4, "short": 0.6}, seed=0)

A model trained only on natural text cannot retrieve a passkey at any length: there is nothing to measure
past the training length. Mixed with text windows, rows that hold a whole passkey prompt and its answer teach
it the task inside its training length (an induction-style copy of the digits after "The pass key is"); then
passkey retrieval at 2x-8x that length tests the position-extension methods, not the task.

Design choices
- A passkey row is `passkey_prompt(tok, n, depth, key, "plain")` (eval/passkey.py, the same text as the test)
  followed by the answer " K." so that it is exactly `seq_len` tokens: depth uniform in [0, 1], key uniform in
  1..max_key (the test's 50,000 by default; fewer digits are learned in fewer steps). The model learns from every
  token (plain next-token loss); the digits of the answer are the only tokens that need the needle (and the second
  copy of the key inside the needle, which needs the first).
- The other rows are windows of `text` at uniform offsets, as `MixtureBatches` draws them (train/data.py).
- Rows are a pure function of (seed, step): `state_dict` is the step, so `Trainer` resumes it exactly.
- `StepMixture` draws, per optimizer step, which source gives the whole batch: the report's long-context stage
  (arXiv 2412.15115 §3.3, Qwen2.5-Turbo) trains 40% of sequences at the stage's length and 60% shorter; with
  equal batch sizes a 0.4 / 0.6 draw per step gives those shares of sequences, and no row is padded.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from qwen_min.eval.passkey import MAX_KEY, passkey_prompt


class PasskeyMixture:
    """Batches of `batch_size` rows of exactly `seq_len` tokens: a `passkey_share` of passkey rows, the rest text.

    b = PasskeyMixture(tok, np.arange(1000) % 200, seq_len=160, batch_size=4, passkey_share=1.0)
    b.next_batch()["input_ids"].shape    # torch.Size([4, 160]): each row a whole prompt and its answer
    """

    def __init__(self, tok, text: np.ndarray, seq_len: int, batch_size: int, passkey_share: float = 0.5,
                 seed: int = 0, max_key: int = MAX_KEY):
        if not 0.0 <= passkey_share <= 1.0:
            raise ValueError(f"passkey_share must be in [0, 1], got {passkey_share}")
        if passkey_share < 1.0 and len(text) < seq_len:
            raise ValueError(f"{len(text)} text tokens, fewer than one row of {seq_len}")
        passkey_prompt(tok, seq_len - len(tok.encode(f" {max_key}.")), 0.0, max_key)  # refuses a row too short
        self.tok, self.text, self.seq_len, self.batch_size = tok, text, seq_len, batch_size
        self.passkey_share, self.seed, self.max_key, self.step = passkey_share, seed, max_key, 0

    def passkey_row(self, depth: float, key: int) -> list[int]:
        """A passkey prompt with `key` at `depth`, then its answer: exactly seq_len ids."""
        answer = self.tok.encode(f" {key}.")
        return passkey_prompt(self.tok, self.seq_len - len(answer), depth, key) + answer

    def rows(self, step: int) -> list[list[int]]:
        """The batch of step `step` (a pure function of seed and step)."""
        rng = random.Random(f"passkey-mixture:{self.seed}:{step}")
        rows = []
        for _ in range(self.batch_size):
            if rng.random() < self.passkey_share:
                rows.append(self.passkey_row(rng.random(), rng.randint(1, self.max_key)))
            else:
                start = rng.randrange(len(self.text) - self.seq_len + 1)
                rows.append(self.text[start:start + self.seq_len].tolist())
        return rows

    def next_batch(self) -> dict[str, torch.Tensor]:
        ids = torch.tensor(self.rows(self.step), dtype=torch.long)  # (batch_size, seq_len)
        self.step += 1
        return {"input_ids": ids}

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]


class StepMixture:
    """Each `next_batch` comes whole from one of several batch sources, drawn by weight from (seed, draw number).

    >>> class Const:
    ...     def __init__(self, n): self.n = n
    ...     def next_batch(self): return self.n
    ...     def state_dict(self): return {}
    ...     def load_state_dict(self, state): pass
    >>> m = StepMixture({"long": Const(512), "short": Const(128)}, {"long": 0.4, "short": 0.6}, seed=0)
    >>> draws = [m.next_batch() for _ in range(1000)]
    >>> draws.count(512) / 1000                  # 40% of the batches long, drawn
    0.389
    """

    def __init__(self, sources: dict, weights: dict[str, float], seed: int = 0):
        if set(weights) != set(sources) or min(weights.values()) < 0 or sum(weights.values()) <= 0:
            raise ValueError(f"weights {weights} must give one non-negative weight to each source {sorted(sources)}")
        self.names = list(sources)
        self.sources = sources
        w = np.array([weights[n] for n in self.names], dtype=np.float64)
        self.probs, self.seed, self.draws = w / w.sum(), seed, 0

    def choice(self, draw: int) -> str:
        return self.names[np.random.default_rng([self.seed, draw]).choice(len(self.names), p=self.probs)]

    def next_batch(self):
        name = self.choice(self.draws)
        self.draws += 1
        return self.sources[name].next_batch()

    def state_dict(self) -> dict:
        return {"draws": self.draws, "sources": {n: s.state_dict() for n, s in self.sources.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.draws = state["draws"]
        for n, s in self.sources.items():
            s.load_state_dict(state["sources"][n])
