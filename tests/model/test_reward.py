"""The reward model against transformers' Qwen2ForSequenceClassification: scores, padding, files; the Bradley-Terry loss."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, Qwen2Config, Qwen2ForSequenceClassification

from qwen_min.checkpoints.hf import CheckpointError, save_pretrained
from qwen_min.checkpoints.reward import load_reward_model
from qwen_min.config import QwenConfig
from qwen_min.model.qwen import Qwen, positions_from_mask
from qwen_min.model.reward import RewardModel, bradley_terry_loss, last_labelled_mask, reward_pair_loss

PAD = 0
CONFIGS = {
    "tied-gqa2": dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, rope_theta=1e4, tie_word_embeddings=True),
    "untied-mqa7": dict(hidden_size=56, num_attention_heads=7, num_key_value_heads=1, head_dim=8, rope_theta=1e6,
                        rms_norm_eps=1e-5, tie_word_embeddings=False, num_hidden_layers=3),
}


def make_pair(name: str, seed: int = 0, attn_impl: str = "eager"):
    """transformers' Qwen2ForSequenceClassification (one label, pad token set) with random weights, and ours holding them."""
    cfg = QwenConfig.from_name("tiny", vocab_size=101, intermediate_size=40, **CONFIGS[name])
    hf_cfg = Qwen2Config(**cfg.to_hf_dict(), num_labels=1, pad_token_id=PAD)
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    ref = Qwen2ForSequenceClassification(hf_cfg).eval()
    with torch.no_grad():
        for n, p in ref.named_parameters():
            p.normal_(1.0 if "norm" in n else 0.0, 0.2)
    ours = RewardModel(cfg, attn_impl=attn_impl, pad_token_id=PAD)
    ours.load_state_dict(ref.state_dict())  # strict: the same names and shapes both ways
    return cfg, ref, ours


def padded_batch(cfg, side: str, seed: int = 1):
    """4 rows of lengths 9, 5, 12, 1 padded with PAD on `side`; no real token is PAD."""
    g = torch.Generator().manual_seed(seed)
    lengths, t = [9, 5, 12, 1], 12
    ids = torch.full((4, t), PAD)
    mask = torch.zeros(4, t, dtype=torch.long)
    for i, n in enumerate(lengths):
        row = torch.randint(1, cfg.vocab_size, (n,), generator=g)
        cols = slice(0, n) if side == "right" else slice(t - n, t)
        ids[i, cols], mask[i, cols] = row, 1
    return ids, mask


@pytest.mark.parametrize("attn_impl", ["eager", "sdpa"])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("name", CONFIGS)
def test_rewards_match_transformers(name, side, attn_impl):
    cfg, ref, ours = make_pair(name, attn_impl=attn_impl)
    ids, mask = padded_batch(cfg, side)
    # transformers reads at the last non-pad token; its positions count padding unless given (as its generate does)
    position_ids = positions_from_mask(mask, 0, ids.shape[1], "cpu")
    want = ref(ids, attention_mask=mask, position_ids=position_ids).logits[:, 0]
    got = ours(ids, attention_mask=mask)
    assert got.shape == (4,)
    assert (got - want).abs().max() <= 1e-5
    alone = torch.stack([ours(ids[i:i + 1, mask[i].bool()])[0] for i in range(4)])  # each row unpadded, alone
    assert (got - alone).abs().max() <= 1e-5


def test_gradients_match_transformers():
    cfg, ref, ours = make_pair("tied-gqa2")
    ids, mask = padded_batch(cfg, "right")
    ref(ids, attention_mask=mask).logits[:, 0].square().sum().backward()
    ours(ids, attention_mask=mask).square().sum().backward()
    theirs = dict(ref.named_parameters())
    for n, p in ours.named_parameters():
        assert (p.grad - theirs[n].grad).abs().max() <= 1e-5, n


def test_save_load_round_trip_both_ways(tmp_path):
    cfg, ref, ours = make_pair("tied-gqa2", attn_impl="sdpa")  # the attention a loaded model uses
    ids, mask = padded_batch(cfg, "right")
    save_pretrained(ours, tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForSequenceClassification"] and len(config["id2label"]) == 1
    back = load_reward_model(tmp_path / "ours")
    for (n, a), (m, b) in zip(ours.state_dict().items(), back.state_dict().items()):
        assert n == m and torch.equal(a, b)
    assert torch.equal(back(ids, attention_mask=mask), ours.eval()(ids, attention_mask=mask))
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ours")  # transformers reads our folder
    assert hf.config.num_labels == 1 and hf.config.pad_token_id == PAD
    assert all(torch.equal(t, ours.state_dict()[n]) for n, t in hf.state_dict().items())
    ref.save_pretrained(tmp_path / "theirs")  # and we read transformers' folder
    theirs = load_reward_model(tmp_path / "theirs")
    assert all(torch.equal(t, ref.state_dict()[n]) for n, t in theirs.state_dict().items())


def test_from_pretrained_refuses_other_heads(tmp_path):
    cfg = QwenConfig.from_name("tiny", vocab_size=101)
    save_pretrained(Qwen(cfg), tmp_path / "lm")  # a causal LM folder
    with pytest.raises(CheckpointError, match="not a reward model"):
        load_reward_model(tmp_path / "lm")
    two = Qwen2ForSequenceClassification(Qwen2Config(**cfg.to_hf_dict(), num_labels=2, pad_token_id=PAD))
    two.save_pretrained(tmp_path / "two")
    with pytest.raises(CheckpointError, match="2 label"):
        load_reward_model(tmp_path / "two")
    with pytest.raises(FileNotFoundError):
        load_reward_model(tmp_path / "nothing")


def test_from_causal_lm_copies_the_decoder():
    lm = Qwen(QwenConfig.from_name("tiny", vocab_size=101))
    rm = RewardModel.from_causal_lm(lm)
    assert all(torch.equal(t, lm.state_dict()[n]) for n, t in rm.state_dict().items() if n.startswith("model."))
    assert set(rm.state_dict()) - set(lm.state_dict()) == {"score.weight"}


def test_bradley_terry_loss_and_pair_batches():
    chosen, rejected = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 1.0, 0.5])
    loss, metrics = bradley_terry_loss(chosen, rejected)
    assert torch.allclose(loss, torch.nn.functional.softplus(rejected - chosen).mean())
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    labels = torch.tensor([[-100, -100, 4, 5, -100], [-100, 6, -100, -100, -100]])
    assert last_labelled_mask(labels).tolist() == [[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]
    rm = RewardModel(QwenConfig.from_name("tiny", vocab_size=101))
    ids = torch.randint(1, 101, (2, 5))
    loss, _ = reward_pair_loss(rm, {"input_ids": ids, "labels": labels})
    r = torch.stack([rm(ids[:1, :4])[0], rm(ids[1:, :2])[0]])
    assert torch.allclose(loss, -torch.nn.functional.logsigmoid(r[0] - r[1]), atol=1e-6)
