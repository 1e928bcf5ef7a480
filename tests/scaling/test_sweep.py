"""The sweep: a point writes its result, is not redone, resumes after a crash with the same loss; folders merge;
bad input (an unknown point, nothing to merge) is one clear error."""

import json
import shutil

import pytest

from qwen_min.cli import main
from qwen_min.scaling import laws, sweep
from qwen_min.train.trainer import Trainer


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A sweep folder with its tokenizer and token shards built once (~5 s); tests copy it."""
    folder = tmp_path_factory.mktemp("sweep") / "base"
    sweep.sweep_data(folder, log=lambda *a: None)
    return folder


@pytest.fixture
def folder(prepared, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "TOKENS", 4096)  # 8 steps at batch 8: a second a point
    out = tmp_path / "sweep"
    shutil.copytree(prepared, out)
    return out


def test_grid_spans_sizes_16x_and_points_are_named():
    grid = sweep.points()
    assert len(grid) == len(sweep.SIZES) * len(sweep.LRS) * len(sweep.BATCHES)
    n = [sweep.model_config(s).num_parameters(non_embedding=True) for s in sweep.FIT_SIZES]
    assert max(n) / min(n) >= 16
    assert grid[7].name == "s1-lr0.005-b16" and sweep.point(7) == grid[7]


def test_a_point_writes_its_result_once(folder):
    p = sweep.point(2)  # s1, lr 2.5e-3, batch 8
    result = sweep.run_point(p, folder, log=lambda *a: None)
    path = folder / "points" / p.name / sweep.RESULT
    assert result["size"] == "s1" and result["index"] == 2 and result["steps"] == 8 and result["val_loss"] > 0
    assert not (path.parent / "checkpoint.pt").exists()  # done: weights dropped, result kept
    before = path.stat().st_mtime_ns
    assert sweep.run_point(p, folder, log=lambda *a: None) == result and path.stat().st_mtime_ns == before


def test_an_interrupted_point_resumes_to_the_same_loss(folder, tmp_path, monkeypatch):
    p = sweep.point(6)  # s1, lr 5e-3, batch 8: 8 steps
    whole = sweep.run_point(p, folder, log=lambda *a: None)
    shutil.rmtree(folder / "points")
    real_step, calls = Trainer.train_step, []

    def crash_at_step_6(self):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", crash_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_point(p, folder, log=lambda *a: None)
    assert (folder / "points" / p.name / "checkpoint.pt").exists()  # saved at step 4 (every max_steps / 4)
    monkeypatch.setattr(Trainer, "train_step", real_step)
    resumed = sweep.run_point(p, folder, log=lambda *a: None)
    assert resumed["val_loss"] == pytest.approx(whole["val_loss"], abs=1e-6)


def test_merge_collects_points_and_fits(folder, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    sweep.run_point(sweep.point(2), folder, log=lambda *a: None)
    sweep.run_point(sweep.point(22), other, log=lambda *a: None)  # s2, lr 2.5e-3, batch 8
    merged = sweep.merge([folder, other, other], tmp_path / "class", log=lambda *a: None)
    assert sorted(r["index"] for r in merged) == [2, 22]
    assert json.loads((tmp_path / "class" / "points" / "s2-lr0.0025-b8" / sweep.RESULT).read_text())["size"] == "s2"


def test_fit_without_verification_on_a_merged_folder(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "LRS", (5e-3, 2e-2))
    monkeypatch.setattr(sweep, "BATCHES", (8,))
    for p in sweep.points():
        if p.size in ("s1", "s2"):
            sweep.run_point(p, folder, log=lambda *a: None)
    summary = laws.fit_and_verify(folder, verify=False)
    assert summary["sizes"] == ["s1", "s2"] and summary["missing"] == ["s3", "s4"]
    assert set(summary["laws"]) == {"lr_vs_N", "lr_vs_C", "batch_tokens_vs_N", "batch_tokens_vs_C"}
    assert summary["predictions"]["deepseek"]["lr"] == pytest.approx(0.3118 * summary["held_out_C"] ** -0.125)
    assert "| s1 |" in laws.summary_markdown(summary)


def test_bad_input_is_one_line(tmp_path, capsys):
    assert main(["sweep", "--point", "999", "--out", str(tmp_path / "x")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["sweep", "--merge", str(tmp_path / "empty"), "--out", str(tmp_path / "y")]) == 2
    assert main(["sweep", "--merge", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")]) == 2
    assert main(["sweep", "--point", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4
    assert "the grid has points 0-99" in err[0]
    assert "no finished points" in err[1] and "no such sweep folder" in err[2] and "--out is required" in err[3]
    assert not (tmp_path / "x").exists()
