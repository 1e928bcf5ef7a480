"""Passkey retrieval: the prompt (exact length, key at the requested depth, both templates) and `qwen-min eval passkey`
end to end on a tiny random model (it retrieves nothing: the files, resume and refusals are what is checked)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

import qwen_min as qm
from qwen_min.cli import main
from qwen_min.eval import passkey_command
from qwen_min.eval.passkey import FILLER, MAX_NEW_TOKENS, NEEDLE, passkey_prompt

VOCAB = 151936  # the official tokenizer's ids


@pytest.fixture(scope="module")
def tok(official_tokenizer_dir):
    return qm.Tokenizer.from_pretrained(official_tokenizer_dir)


@pytest.mark.parametrize("template", ["plain", "chat"])
@pytest.mark.parametrize("length", [200, 513, 1000])
def test_prompt_has_the_exact_length_and_the_key_at_the_depth(tok, template, length):
    for depth in (0.0, 0.25, 0.5, 0.75, 1.0):
        key = 40_000 + length
        ids = passkey_prompt(tok, length, depth, key, template)
        assert len(ids) == length
        text = tok.decode(ids)
        needle = NEEDLE.format(key=key)
        assert text.count(needle) == 1 and text.count(str(key)) == 2
        before, after = text.split(needle)
        n_before, n_after = before.count(FILLER), after.count(FILLER)  # whole filler paragraphs on each side
        assert abs(n_before - depth * (n_before + n_after)) <= 0.5, (depth, n_before, n_after)
        assert n_before + n_after >= (length - 120) // 25  # the rest of the prompt is haystack
        if template == "plain":
            assert text.startswith("There is an important info hidden") and text.endswith("What is the pass key? The pass key is")
        else:
            assert text.startswith("<|im_start|>system\n") and "<|im_start|>user\nThere is an important info" in text
            assert text.endswith("What is the pass key?<|im_end|>\n<|im_start|>assistant\nThe pass key is")


def test_a_prompt_too_short_for_its_fixed_parts_is_refused(tok):
    with pytest.raises(ValueError, match=r"a chat passkey prompt needs at least \d+ tokens .* got length 40"):
        passkey_prompt(tok, 40, 0.5, 12345, "chat")
    with pytest.raises(ValueError, match="depth must be in"):
        passkey_prompt(tok, 400, 1.5, 12345)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, official_tokenizer_dir):
    """A random tiny Qwen in Hugging Face layout with the official tokenizer, trained length 160 tokens."""
    folder = tmp_path_factory.mktemp("models") / "tiny-base"
    torch.manual_seed(0)
    qm.save_pretrained(qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=VOCAB, max_position_embeddings=160)), folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(official_tokenizer_dir / name, folder / name)
    return folder


def _run(folder, out, *flags):
    return main(["eval", "passkey", "--checkpoint", str(folder), "--format", "fp32", "--out", str(out), *flags])


def _rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_eval_passkey_writes_results_and_summary_and_resumes(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    grid = ["--lengths", "128,150", "--depths", "0,0.5,1", "--trials", "2"]
    assert _run(tiny_folder, out, *grid) == 0
    rows = _rows(out)
    assert len(rows) == 12 and {(r["length"], r["depth"], r["trial"]) for r in rows} == {
        (n, d, i) for n in (128, 150) for d in (0.0, 0.5, 1.0) for i in (0, 1)}
    assert all(1 <= r["key"] <= 50_000 and isinstance(r["correct"], bool) and r["seconds"] > 0 for r in rows)
    assert len({r["key"] for r in rows}) > 6  # a key per cell
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["template"] == "plain" and summary["settings"]["rope_scaling"] is None
    assert set(summary["accuracy"]) == {"128", "150"} and set(summary["accuracy"]["128"]) == {"0.0", "0.5", "1.0"}
    assert summary["prompts"] == 12 and set(summary["seconds_per_prompt"]) == {"128", "150"}
    per_token = qm.QwenConfig.from_name("tiny").kv_cache_bytes_per_token(4)
    assert summary["kv_cache_bytes"] == {"128": (128 + MAX_NEW_TOKENS) * per_token, "150": (150 + MAX_NEW_TOKENS) * per_token}
    assert "-> " in capsys.readouterr().out

    assert _run(tiny_folder, out, *grid) == 2  # a second run into the same folder is refused
    assert "already holds a passkey run; --resume continues it" in capsys.readouterr().err

    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:7]) + lines[7][:20])  # interrupted while writing line 8
    assert _run(tiny_folder, out, *grid, "--lengths", "128,150,140", "--resume") == 0  # and one more length
    resumed = _rows(out)
    assert resumed[:7] == rows[:7] and len(resumed) == 18
    redone = {(r["length"], r["depth"], r["trial"]): r["key"] for r in resumed}
    assert all(redone[(r["length"], r["depth"], r["trial"])] == r["key"] for r in rows)  # the same keys again
    assert json.loads((out / "summary.json").read_text())["prompts"] == 18

    assert _run(tiny_folder, out, *grid, "--template", "chat", "--resume") == 2
    assert "holds a run with other settings (template)" in capsys.readouterr().err


def test_eval_passkey_extension_methods_reach_past_the_trained_length(tiny_folder, tmp_path, capsys):
    grid = ["--lengths", "200", "--depths", "0.5"]
    assert _run(tiny_folder, tmp_path / "none", *grid) == 2
    assert "go past the 160 positions this model reaches without --rope-scaling or --dca" in capsys.readouterr().err
    assert _run(tiny_folder, tmp_path / "yarn", *grid, "--rope-scaling", "yarn:2", "--template", "chat") == 0
    assert _run(tiny_folder, tmp_path / "dca", *grid, "--dca", "64,16") == 0
    assert _run(tiny_folder, tmp_path / "both", *grid, "--dca", "64,16", "--rope-scaling", "ntk:1.5") == 0
    assert _run(tiny_folder, tmp_path / "short", *grid, "--rope-scaling", "linear:1.2") == 2
    assert "go past the 192 positions" in capsys.readouterr().err
    settings = json.loads((tmp_path / "both" / "summary.json").read_text())["settings"]
    assert (settings["dca"], settings["rope_scaling"]) == ("64,16", "ntk:1.5")
    assert len(_rows(tmp_path / "dca")) == 1


@pytest.mark.parametrize("flags,message", [
    (["--lengths", "128,x"], "--lengths must be a comma list of positive integers, got '128,x'"),
    (["--lengths", "0"], "--lengths must be a comma list of positive integers"),
    (["--depths", "0,1.5"], r"--depths must be a comma list of depths in \[0, 1\]"),
    (["--trials", "0"], "--trials must be >= 1"),
    (["--rope-scaling", "dynamic:2"], "--rope-scaling must be TYPE:FACTOR with TYPE one of linear, ntk, yarn"),
    (["--rope-scaling", "yarn"], "--rope-scaling must be TYPE:FACTOR"),
    (["--dca", "64"], r"--dca must be CHUNK,LOCAL \(two positive integers\)"),
    (["--dca", "64,64"], r"--dca: dual_chunk_attention_config: local_size \(64\) must be smaller than chunk_size \(64\)"),
    (["--lengths", "30"], "a plain passkey prompt needs at least"),
    (["--resume"], "nothing to resume in"),
])
def test_bad_input_is_one_line_before_the_model_loads(tiny_folder, tmp_path, capsys, monkeypatch, flags, message):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(passkey_command, "load", no_loading)
    assert _run(tiny_folder, tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qwen-min eval: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()
