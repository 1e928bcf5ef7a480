"""A reward model: the Qwen decoder plus a scalar head, read at the last real token (chapter 11).

    rm = RewardModel.from_causal_lm(sft_model)           # the SFT decoder, a fresh head `score`
    rewards = rm(input_ids, attention_mask=mask)          # (b,) one score per conversation
    loss, metrics = bradley_terry_loss(rewards[:n], rewards[n:])   # chosen rows first, then rejected
    qm.save_pretrained(rm, "runs/rm"); rm = load_reward_model("runs/rm")   # checkpoints/hf.py, checkpoints/reward.py

The Bradley-Terry model says a chosen answer y_w beats a rejected one y_l with probability
sigmoid(r(x, y_w) - r(x, y_l)); fitting r is minimising -log sigmoid(r_chosen - r_rejected) over the pairs
(InstructGPT's reward-model loss; chapter 10 turns the same objective into DPO).

Design choices
- The layout is transformers' `Qwen2ForSequenceClassification` with `num_labels=1`: the decoder's
  parameters under `model.` and one bias-free head `score.weight` of shape (1, hidden). No `lm_head`. So a
  state dict goes from one to the other with a plain `load_state_dict`, and a saved folder (config.json with
  architectures ["Qwen2ForSequenceClassification"] and one label) loads in transformers, and back.
- The score of a row is the head's output at its last real token. transformers finds that token as the
  last one that is not `pad_token_id`; here the attention mask says which tokens are real (a pad id can
  be a real token: Qwen pads with <|endoftext|>). With the mask's padding written as pad_token_id the
  two agree, left or right padding (tested). Without a mask, every token is real: the last one is read.
- A reward model has no LM head, so there is nothing to tie: its config says tie_word_embeddings false.
- Files are the checkpoints layer's job, not the model's: `qm.save_pretrained(rm, folder)` writes the config
  `hf_config()` describes, and `load_reward_model` (checkpoints/reward.py) reads it back with the same strict
  tensor-by-tensor reads as a causal LM.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from qwen_min.config import QwenConfig
from qwen_min.model.attention import attention_mask_for
from qwen_min.model.dual_chunk import DualChunkPass
from qwen_min.model.qwen import Qwen, QwenModel, positions_from_mask

ARCHITECTURE = "Qwen2ForSequenceClassification"


class RewardModel(nn.Module):
    """Qwen decoder + scalar head: (b, t) ids -> (b,) rewards, read at each row's last real token.

    >>> rm = RewardModel(QwenConfig.from_name("tiny", vocab_size=100))
    >>> ids = torch.randint(1, 100, (2, 6))
    >>> rm(ids).shape
    torch.Size([2])
    >>> mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])   # row 1: 3 real tokens, right padding
    >>> torch.allclose(rm(ids, attention_mask=mask)[1], rm(ids[1:, :3])[0], atol=1e-6)
    True
    """

    def __init__(self, cfg: QwenConfig, attn_impl: str = "sdpa", pad_token_id: int | None = None):
        super().__init__()
        self.config = dataclasses.replace(cfg, tie_word_embeddings=False)  # no LM head to tie
        self.pad_token_id = pad_token_id  # written to config.json (transformers needs one for batches)
        self.model = QwenModel(self.config, attn_impl)
        self.score = nn.Linear(cfg.hidden_size, 1, bias=False)
        Qwen.reset_parameters(self)  # transformers' initialisation, the score head included

    @classmethod
    def from_causal_lm(cls, lm: Qwen, pad_token_id: int | None = None) -> "RewardModel":
        """A reward model whose decoder is a copy of `lm`'s (e.g. the SFT model) and whose head is new."""
        rm = cls(lm.config, pad_token_id=pad_token_id)
        rm.model.load_state_dict(lm.model.state_dict())
        return rm.to(next(lm.parameters()).device)

    def scores(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The head at every position: (b, t). transformers' `logits[..., 0]` before the last token is picked."""
        b, t = input_ids.shape
        positions = positions_from_mask(attention_mask, 0, t, input_ids.device)  # (b or 1, t)
        x = self.model.embed_tokens(input_ids)  # (b, t, hidden)
        cos = sin = mask = dca = None
        if self.config.dual_chunk_attention_config:  # as Qwen.forward: one DualChunkPass replaces cos, sin and mask
            dca = DualChunkPass.build(self.config.dual_chunk_attention_config, self.model.rotary_emb, positions, t,
                                      x.dtype, attention_mask)
        else:
            cos, sin = self.model.rotary_emb(positions, x.dtype)
            mask = attention_mask_for(t, 0, attention_mask, input_ids.device)  # (b or 1, 1, t, t) or None
        for layer in self.model.layers:
            x, _ = layer(x, cos, sin, mask, None, dca)
        return self.score(self.model.norm(x))[..., 0]  # (b, t)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(b, t) ids -> (b,) rewards, each read at the row's last token whose mask is 1."""
        scores = self.scores(input_ids, attention_mask)  # (b, t)
        t = input_ids.shape[1]
        if attention_mask is None:
            return scores[:, -1]
        last = (torch.arange(t, device=input_ids.device) * attention_mask).argmax(-1)  # (b,)
        return scores.gather(1, last[:, None])[:, 0]

    # ------------------------------------------------------------------ files
    def hf_config(self) -> dict:
        """config.json for transformers' Qwen2ForSequenceClassification with one label."""
        d = self.config.to_hf_dict() | {"architectures": [ARCHITECTURE], "id2label": {"0": "LABEL_0"},
                                        "label2id": {"LABEL_0": 0}}
        if self.pad_token_id is not None:
            d["pad_token_id"] = self.pad_token_id
        return d


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Mean of -log sigmoid(r_chosen - r_rejected) over pairs, with accuracy and mean margin.

    >>> loss, m = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    >>> round(loss.item(), 4), m["accuracy"], m["margin"]
    (0.41, 0.5, 1.0)
    """
    margin = chosen_rewards - rejected_rewards  # (n,)
    loss = -F.logsigmoid(margin).mean()
    return loss, {"accuracy": (margin > 0).float().mean().item(), "margin": margin.mean().item()}


def last_labelled_mask(labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """(b, t) mask of 1 up to each row's last labelled token (the answer's <|im_end|> in chapter 9's labels), 0 after.

    >>> last_labelled_mask(torch.tensor([[-100, 5, 6, -100], [-100, 7, -100, -100]]))
    tensor([[1, 1, 1, 0],
            [1, 1, 0, 0]])
    """
    t = labels.shape[1]
    last = (torch.arange(t, device=labels.device) * (labels != ignore_index)).argmax(-1)  # (b,)
    return (torch.arange(t, device=labels.device)[None] <= last[:, None]).long()


def reward_pair_loss(model: RewardModel, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """The Trainer's loss_fn over a DPO pair batch (chosen rows, then rejected rows; chapter 10's PairBatches)."""
    rewards = model(batch["input_ids"], attention_mask=last_labelled_mask(batch["labels"]))  # (2n,)
    n = len(rewards) // 2
    return bradley_terry_loss(rewards[:n], rewards[n:])
