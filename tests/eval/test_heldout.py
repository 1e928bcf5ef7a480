"""Held-out sets and the paired table of chapter 11a: new phrasings are never training phrasings, every figure of
the table is recomputed from the per-prompt records, and prompts that differ between models are refused."""

from __future__ import annotations

import json
import random
import re

import pytest

from qwen_min.cli import main
from qwen_min.eval.heldout import accuracy_table, format_table, heldout_sets, write_samples
from qwen_min.eval.paired import paired_difference
from qwen_min.eval.passk import wilson_interval
from qwen_min.tasks.checkable import NEW_PHRASINGS, PHRASINGS, make_examples


def template_of(prompt: str, templates) -> str | None:
    """The template a prompt was written from (its {} slots matched by anything), or None."""
    for template in templates:
        pattern = re.escape(template).replace(r"\{\}", ".+").replace(r"\{t\}", ".+").replace(r"\{s\}", ".+")
        if re.fullmatch(pattern, prompt):
            return template
    return None


@pytest.mark.parametrize("task", sorted(NEW_PHRASINGS))
def test_new_phrasings_are_never_training_phrasings(task):
    assert not set(NEW_PHRASINGS[task]) & set(PHRASINGS[task])
    sets = heldout_sets([task], 30, seed=1)
    for ex in sets["new_phrasings"]:
        assert template_of(ex.prompt_messages[-1]["content"], NEW_PHRASINGS[task])
        assert template_of(ex.prompt_messages[-1]["content"], PHRASINGS[task]) is None
    used = {template_of(ex.prompt_messages[-1]["content"], NEW_PHRASINGS[task]) for ex in sets["new_phrasings"]}
    assert used == set(NEW_PHRASINGS[task])  # every new phrasing is tested
    for split in ("train", "dpo", "test"):  # what training sees is worded as PHRASINGS only
        for ex in make_examples([task], split, 30, seed=0):
            assert template_of(ex.prompt_messages[-1]["content"], PHRASINGS[task])


def test_new_phrasings_of_a_task_without_them_are_refused():
    with pytest.raises(ValueError, match="no new phrasings"):
        make_examples(["add"], "test", 2, phrasings="new")
    with pytest.raises(ValueError, match="unknown phrasings"):
        make_examples(["sort"], "test", 2, phrasings="other")


def fake_records(seed, p_right, n=40):
    rng = random.Random(seed)
    return [{"set": name, "task": "sort", "prompt": f"{name} {i}", "answer": "1", "reply": "1",
             "right": rng.random() < p_right, "reply_tokens": rng.randint(1, 9)}
            for name in ("same_phrasings", "new_phrasings") for i in range(n)]


def test_table_figures_are_recomputed_from_the_records():
    models = {"checkpoint": fake_records(0, 0.3), "dpo": fake_records(1, 0.6)}
    rows = accuracy_table(models)
    assert [(r["model"], r["set"]) for r in rows] == [("checkpoint", "same_phrasings"), ("checkpoint", "new_phrasings"),
                                                      ("dpo", "same_phrasings"), ("dpo", "new_phrasings")]
    for r in rows:
        marks = [x["right"] for x in models[r["model"]] if x["set"] == r["set"]]
        assert r["accuracy"] == sum(marks) / len(marks) and r["interval"] == wilson_interval(sum(marks), len(marks))
    before = [x["right"] for x in models["checkpoint"] if x["set"] == "new_phrasings"]
    after = [x["right"] for x in models["dpo"] if x["set"] == "new_phrasings"]
    assert rows[3]["difference"] == paired_difference(before, after) and "difference" not in rows[0]
    assert "| dpo | 40 |" in format_table(rows)


def test_models_on_different_prompts_are_refused():
    other = fake_records(1, 0.6)
    other[0]["prompt"] = "another prompt"
    with pytest.raises(ValueError, match="not evaluated on the same same_phrasings prompts"):
        accuracy_table({"a": fake_records(0, 0.3), "b": other})


def test_eval_tasks_compare_and_resume(tmp_path, capsys):
    for name, seed in (("checkpoint", 0), ("dpo", 1), ("grpo", 2)):
        write_samples(fake_records(seed, 0.5), tmp_path / f"{name}.jsonl")
    assert main(["eval", "tasks", "--compare", *(str(tmp_path / f"{n}.jsonl") for n in ("checkpoint", "dpo", "grpo"))]) == 0
    out = capsys.readouterr().out
    assert "| grpo | 40 |" in out and "grpo against checkpoint" in out
    assert main(["eval", "tasks", "--out", str(tmp_path / "dpo.jsonl"), "--resume"]) == 0  # done: kept, no model loaded
    assert main(["eval", "tasks", "--out", str(tmp_path / "dpo.jsonl")]) == 2
    assert "exists" in capsys.readouterr().err
    assert json.loads((tmp_path / "dpo.jsonl").read_text().splitlines()[0])["set"] == "same_phrasings"
