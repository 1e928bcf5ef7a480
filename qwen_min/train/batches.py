"""What SFT and DPO batches share: a resumable, epoch-shuffled stream of rows, and right padding.

    stream = ShuffledStream(5, seed=0)
    stream.take(3), stream.take(3)        # the second call crosses into epoch 1: a fresh permutation
    pad_batch([([1, 2, 3], [-100, 2, 3]), ([4], [4])], pad_id=0)
    # {"input_ids": [[1, 2, 3], [4, 0, 0]], "labels": [[-100, 2, 3], [4, -100, -100]]}

Design choices
- The order is a seeded permutation per epoch (`seed * 1_000_003 + epoch`), so `state_dict()` needs only
  (epoch, position) and a resumed run sees exactly the rows it would have seen.
- Under data parallelism every process walks the same stream and takes its own slice of each global batch.
- Right padding with labels -100 (IGNORE_INDEX): causal attention never looks right, so padding changes
  no logit of a real token and needs no attention mask.
"""

from __future__ import annotations

import torch

from qwen_min.model.qwen import IGNORE_INDEX


class ShuffledStream:
    """Row indices 0..n-1, a new seeded permutation each epoch; resumable from (epoch, position).

    >>> stream = ShuffledStream(3, seed=0)
    >>> first = stream.take(3)
    >>> sorted(first), stream.state_dict()
    ([0, 1, 2], {'epoch': 0, 'position': 3})
    >>> resumed = ShuffledStream(3, seed=0); resumed.load_state_dict(stream.state_dict())
    >>> stream.take(4) == resumed.take(4)
    True
    """

    def __init__(self, n: int, seed: int = 0):
        if n < 1:
            raise ValueError("no rows to draw batches from")
        self.n, self.seed = n, seed
        self.epoch, self.position = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def take(self, k: int) -> list[int]:
        """The next k indices (crossing into a new epoch's permutation when one runs out)."""
        picked = []
        while len(picked) < k:
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            picked.append(self._order[self.position])
            self.position += 1
        return picked

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        self._order = self._permutation()


def pad_batch(rows: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad (ids, labels) rows to the longest: {"input_ids": (b, t), "labels": (b, t)}, padding labelled -100.

    >>> pad_batch([([1, 2, 3], [-100, 2, 3]), ([4], [4])], pad_id=0)["labels"].tolist()
    [[-100, 2, 3], [4, -100, -100]]
    """
    t = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [pad_id] * (t - len(ids)) for ids, _ in rows], dtype=torch.long)
    labels = torch.tensor([lab + [IGNORE_INDEX] * (t - len(lab)) for _, lab in rows], dtype=torch.long)
    return {"input_ids": input_ids, "labels": labels}
