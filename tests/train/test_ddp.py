"""Data parallel: `torchrun --nproc_per_node=2 -m qwen_min pretrain` (gloo on CPU) gives the losses of one process
with the same global batch, and only rank 0 writes."""

import os
import subprocess
import sys

import pytest

from qwen_min.cli import main
from qwen_min.train.trainer import read_metrics


@pytest.mark.slow  # three runs and two process start-ups: ~30 s on 2 cores
def test_two_processes_match_one_with_the_same_global_batch(tiny_corpora, tmp_path):
    common = ["pretrain", "--data", str(tiny_corpora), "--mix", "prose=0.5,code=0.5", "--vocab-size", "300",
              "--seq-len", "32", "--max-steps", "5", "--eval-every", "5", "--eval-windows", "8", "--warmup-steps", "2",
              "--no-progress", "--device", "cpu"]
    assert main(common + ["--out", str(tmp_path / "one"), "--batch-size", "4"]) == 0
    # 2 processes x 2 micro-batches (the first without gradient sync) x 1 window = 4 windows per step
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "qwen_min", *common, "--out", str(tmp_path / "ddp"), "--batch-size", "1", "--grad-accum", "2"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    one, ddp = read_metrics(tmp_path / "one" / "metrics.jsonl"), read_metrics(tmp_path / "ddp" / "metrics.jsonl")
    assert [r["step"] for r in ddp] == [1, 2, 3, 4, 5]  # rank 0 alone wrote: one line per step
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in one], abs=1e-5)
    assert [r["grad_norm"] for r in ddp] == pytest.approx([r["grad_norm"] for r in one], rel=1e-4)
    assert ddp[-1]["val_loss"] == pytest.approx(one[-1]["val_loss"], abs=1e-5)
    assert ddp[-1]["tokens"] == one[-1]["tokens"] == 5 * 4 * 32
    assert run.stdout.count("tokenised prose train") == 1  # shards built once, by rank 0
    assert not list((tmp_path / "ddp").glob("*.tmp"))
