"""PasskeyMixture and StepMixture (eval/passkey_training.py): rows of exactly seq_len tokens, passkey rows that hold
their key and end with the answer, text windows, a pure function of (seed, step), exact resume, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qwen_min as qm
from qwen_min.eval.passkey import ANSWER_PREFIX, FILLER, INSTRUCTION, NEEDLE, QUESTION
from qwen_min.eval.passkey_training import PasskeyMixture, StepMixture


@pytest.fixture(scope="module")
def tok():
    return qm.train_bpe([INSTRUCTION, FILLER * 3, NEEDLE.format(key=123), f"{QUESTION} {ANSWER_PREFIX}"] * 20, 320,
                        special_tokens=("<|endoftext|>",))


TEXT = np.arange(5000) % 300


def test_passkey_rows_are_whole_prompts_with_their_answer(tok):
    batches = PasskeyMixture(tok, TEXT, seq_len=160, batch_size=4, passkey_share=1.0, max_key=999)
    row = batches.passkey_row(0.5, 417)
    assert len(row) == 160
    text = tok.decode(row)
    assert text.count("417") == 3 and text.endswith(f"{ANSWER_PREFIX} 417.")  # needle twice, then the answer
    ids = batches.next_batch()["input_ids"]
    assert ids.shape == (4, 160) and ids.dtype == torch.long
    assert all(tok.decode(r.tolist()).startswith(INSTRUCTION[:20]) for r in ids)


def test_text_rows_are_windows_and_the_share_is_kept(tok):
    only_text = PasskeyMixture(tok, TEXT, seq_len=160, batch_size=8, passkey_share=0.0)
    for r in only_text.next_batch()["input_ids"]:  # consecutive ids of TEXT: one window
        assert (np.diff(r.numpy()) % 300 == 1).all()
    mixed = PasskeyMixture(tok, TEXT, seq_len=160, batch_size=50, passkey_share=0.3)
    rows = [r for step in range(10) for r in mixed.rows(step)]
    share = np.mean([tok.decode(r).startswith(INSTRUCTION[:20]) for r in rows])
    assert abs(share - 0.3) < 0.08


def test_batches_are_a_function_of_seed_and_step_and_resume_exactly(tok):
    a = PasskeyMixture(tok, TEXT, seq_len=160, batch_size=4, seed=3)
    first = [a.next_batch()["input_ids"] for _ in range(3)]
    b = PasskeyMixture(tok, TEXT, seq_len=160, batch_size=4, seed=3)
    b.load_state_dict({"step": 2, "seed": 3})
    assert torch.equal(b.next_batch()["input_ids"], first[2])
    assert not torch.equal(PasskeyMixture(tok, TEXT, seq_len=160, batch_size=4, seed=4).next_batch()["input_ids"], first[0])


def test_refusals(tok):
    with pytest.raises(ValueError, match="passkey_share"):
        PasskeyMixture(tok, TEXT, seq_len=160, batch_size=4, passkey_share=1.5)
    with pytest.raises(ValueError, match="needs at least"):
        PasskeyMixture(tok, TEXT, seq_len=40, batch_size=4)
    with pytest.raises(ValueError, match="fewer than one row"):
        PasskeyMixture(tok, TEXT[:100], seq_len=160, batch_size=4)
    with pytest.raises(ValueError, match="weights"):
        StepMixture({"a": None}, {"b": 1.0})


def test_step_mixture_draws_by_weight_and_resumes(tok):
    long = PasskeyMixture(tok, TEXT, seq_len=320, batch_size=2, seed=1)
    short = PasskeyMixture(tok, TEXT, seq_len=160, batch_size=2, seed=2)
    mix = StepMixture({"long": long, "short": short}, {"long": 0.4, "short": 0.6}, seed=0)
    shapes = [mix.next_batch()["input_ids"].shape[1] for _ in range(200)]
    assert abs(shapes.count(320) / 200 - 0.4) < 0.08
    state = mix.state_dict()
    nxt = mix.next_batch()["input_ids"]
    again = StepMixture({"long": PasskeyMixture(tok, TEXT, seq_len=320, batch_size=2, seed=1),
                         "short": PasskeyMixture(tok, TEXT, seq_len=160, batch_size=2, seed=2)},
                        {"long": 0.4, "short": 0.6}, seed=0)
    again.load_state_dict(state)
    assert torch.equal(again.next_batch()["input_ids"], nxt)
