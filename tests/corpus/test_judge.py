"""The judge: scores read from the digits' logits, batched, deterministic, resumable; one slow test on the real model."""

import json

import pytest
import torch

from qwen_min import paths
from qwen_min.config import QwenConfig
from qwen_min.corpus import judge
from qwen_min.model.qwen import Qwen
from qwen_min.tokenizer.bpe import Tokenizer

TEXTS = ["def add(a, b):\n    return a + b\n", "buy buy buy cheap cheap", "Shall I compare thee to a summer's day?",
         "床前明月光，疑是地上霜。", "x", "the of and to a in " * 30]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Qwen(QwenConfig.from_name("tiny")).eval(), Tokenizer.from_pretrained(paths.official_tokenizer_dir())


def test_scores_are_expected_digits_and_deterministic(tiny):
    model, tok = tiny
    first = judge.judge_scores(model, tok, TEXTS)
    assert judge.judge_scores(model, tok, TEXTS) == first  # same scores twice, bit for bit
    for r in first:
        assert 0 <= r["score"] <= 9 and 0 < r["digit_mass"] <= 1
        assert sum(r["p"]) == pytest.approx(1, abs=1e-5)
        assert r["score"] == pytest.approx(sum(i * p for i, p in enumerate(r["p"])), abs=1e-4)


def test_a_score_does_not_depend_on_its_batch(tiny):
    model, tok = tiny
    together = [r["score"] for r in judge.judge_scores(model, tok, TEXTS)]
    alone = [judge.judge_scores(model, tok, [t])[0]["score"] for t in TEXTS]
    assert together == pytest.approx(alone, abs=1e-4)  # left padding is masked out


def test_the_score_is_read_at_the_answer_position(tiny):
    """The hook keeps the last position: the same logits as the full forward pass's last row."""
    model, tok = tiny
    ids = torch.tensor([judge.prompt_ids(tok, TEXTS[0])])
    full = torch.softmax(model(ids)[0, -1], -1)[judge.digit_ids(tok)]
    r = judge.judge_scores(model, tok, TEXTS[:1])[0]
    assert r["digit_mass"] == pytest.approx(full.sum().item(), rel=1e-4)


def test_scoring_resumes_where_it_stopped(tiny, tmp_path):
    model, tok = tiny
    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS)]
    whole = judge.score_into(tmp_path / "a.jsonl", docs, model, tok, batch_size=2, progress=False)
    path = tmp_path / "b.jsonl"
    judge.score_into(path, docs[:3], model, tok, batch_size=2, progress=False)
    path.write_text(path.read_text() + '{"id": "d3", "sco')  # a crash in the middle of a line
    resumed = judge.score_into(path, docs, model, tok, batch_size=2, progress=False)
    assert set(resumed) == set(whole)
    assert [resumed[d["id"]]["score"] for d in docs] == pytest.approx([whole[d["id"]]["score"] for d in docs], abs=1e-4)
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.startswith('{"id": "d') and line.endswith("}")]
    assert sorted(r["id"] for r in lines) == sorted(d["id"] for d in docs)  # each scored once, none twice


def test_bad_batch_size_is_refused(tiny, tmp_path):
    with pytest.raises(ValueError, match="--batch-size must be at least 1"):
        judge.score_into(tmp_path / "j.jsonl", [], *tiny, batch_size=0)


@pytest.mark.slow
def test_real_judge_answers_with_a_digit(gguf_path):
    model, tok = judge.load_judge(str(gguf_path), "fp32")
    first = judge.judge_scores(model, tok, TEXTS[:3])
    assert first == judge.judge_scores(model, tok, TEXTS[:3])
    assert all(r["digit_mass"] > 0.9 for r in first)  # the prompt is understood: it answers with a digit
