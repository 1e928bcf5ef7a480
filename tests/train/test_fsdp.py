"""Sharded training (train/shard.py) and distributed checkpoints (train/dcp.py), proven on CPU with gloo.

Every run trains the tiny model on tiny corpora for 20 steps of a 200-step schedule (--stop-at 20), with a
global batch of 4 windows: 1 process x batch 4, or 2 processes x batch 1 x 2 accumulated micro-batches.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from qwen_min.cli import main
from qwen_min.train import dcp
from qwen_min.train.trainer import check_global_batch, read_metrics

STEPS = 20
COMMON = ["pretrain", "--mix", "prose=0.5,code=0.5", "--vocab-size", "300", "--seq-len", "32", "--max-steps", "200",
          "--eval-every", "10", "--eval-windows", "8", "--warmup-steps", "2", "--save-every", "5", "--no-progress",
          "--device", "cpu"]
ONE = ["--batch-size", "4"]  # 1 process
TWO = ["--batch-size", "1", "--grad-accum", "2"]  # each of 2 processes: the same 4 windows per step


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}


def torchrun(args, *, nproc=2, launcher=("--standalone",), popen=False):
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher, f"--nproc_per_node={nproc}", "-m", "qwen_min", *args]
    if popen:
        return subprocess.Popen(cmd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    run = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children first."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            for child in map(int, f.read().split()):
                found += [child, *descendants(child)]
    return found


def losses(folder, key="loss"):
    return [r[key] for r in read_metrics(folder / "metrics.jsonl")]


@pytest.fixture(scope="module")
def runs(tiny_corpora, tmp_path_factory):
    """The reference runs: 1 process, 2 processes with FSDP, 2 processes with DDP (all --stop-at 20)."""
    root = tmp_path_factory.mktemp("fsdp")
    common = COMMON + ["--data", str(tiny_corpora), "--stop-at", str(STEPS)]
    assert main(common + ONE + ["--out", str(root / "one")]) == 0
    torchrun(common + TWO + ["--shard", "fsdp", "--out", str(root / "fsdp")])
    torchrun(common + TWO + ["--shard", "ddp", "--out", str(root / "ddp")])
    return root, common


@pytest.mark.slow  # the fixture's three runs: ~25 s on 2 cores
def test_fsdp_matches_one_process_and_ddp(runs):
    root, _ = runs
    one, fsdp, ddp = (losses(root / name) for name in ("one", "fsdp", "ddp"))
    assert len(one) == len(fsdp) == len(ddp) == STEPS
    assert fsdp == pytest.approx(one, abs=1e-6)  # fp32: rounding only
    assert fsdp == pytest.approx(ddp, abs=1e-6)
    assert losses(root / "fsdp", "grad_norm") == pytest.approx(losses(root / "one", "grad_norm"), rel=1e-5)
    val = [r["val_loss"] for r in read_metrics(root / "fsdp" / "metrics.jsonl") if "val_loss" in r]
    assert val == pytest.approx([r["val_loss"] for r in read_metrics(root / "one" / "metrics.jsonl") if "val_loss" in r],
                                abs=1e-6)
    assert (root / "fsdp" / dcp.SHARDED / "__1_0.distcp").is_file()  # each rank wrote its shard
    assert not (root / "fsdp" / "checkpoint.pt").exists() and (root / "ddp" / "checkpoint.pt").is_file()


@pytest.mark.slow  # two 2-process runs: ~15 s
def test_sigkill_mid_run_then_resume_is_bit_identical(runs):
    root, common = runs
    out = root / "killed"
    proc = torchrun(common[:-2] + ["--stop-at", "200"] + TWO + ["--shard", "fsdp", "--out", str(out)], popen=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # kill once the checkpoint of step 5 is in place
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 7:
            break
        time.sleep(0.002)
    victims = [proc.pid, *descendants(proc.pid)]  # the agent and both workers (in sessions of their own)
    assert len(victims) >= 3
    for pid in victims:  # mid-step
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    for pid in victims[1:]:
        while os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split()[2]:
            time.sleep(0.01)  # gone (or a zombie) before the resume starts
    assert proc.returncode == -signal.SIGKILL
    written = dcp.read_trainer_state(out / dcp.SHARDED)["step"]
    assert 5 <= written < STEPS
    torchrun(common + TWO + ["--shard", "fsdp", "--resume", "--out", str(out)])
    resumed, uninterrupted = read_metrics(metrics), read_metrics(root / "fsdp" / "metrics.jsonl")
    for key in ("loss", "grad_norm", "lr", "tokens"):
        assert [r[key] for r in resumed] == [r[key] for r in uninterrupted], key  # bit for bit
    assert [r.get("val_loss") for r in resumed] == [r.get("val_loss") for r in uninterrupted]


@pytest.mark.slow  # ~20 s
def test_resume_on_another_world_size(runs, tmp_path):
    root, common = runs
    # 2 -> 1: the 2-process checkpoint of step 10 (a copy, continued to 20) into one unsharded process
    two = tmp_path / "two"
    torchrun(common[:-2] + ["--stop-at", "10"] + TWO + ["--shard", "fsdp", "--out", str(two)])
    shutil.copytree(two, tmp_path / "two_to_one")
    assert main(common + ONE + ["--grad-accum", "1", "--resume", "--shard", "none", "--out", str(tmp_path / "two_to_one")]) == 0
    assert losses(tmp_path / "two_to_one") == pytest.approx(losses(root / "one"), abs=1e-6)
    assert not (tmp_path / "two_to_one" / dcp.SHARDED).exists()  # the newer checkpoint.pt replaced it
    # 1 -> 2: a one-process FSDP run (a group of one) to step 10, continued by 2 processes
    one = tmp_path / "one_to_two"
    assert main(common[:-2] + ["--stop-at", "10"] + ONE + ["--shard", "fsdp", "--out", str(one)]) == 0
    torchrun(common + TWO + ["--shard", "fsdp", "--resume", "--out", str(one)])
    assert losses(one) == pytest.approx(losses(root / "one"), abs=1e-6)
    # 1 -> 2 across formats: an unsharded run's checkpoint.pt (full tensors) into 2 FSDP processes
    full = tmp_path / "pt_to_fsdp"
    assert main(common[:-2] + ["--stop-at", "10"] + ONE + ["--out", str(full)]) == 0
    torchrun(common + TWO + ["--shard", "fsdp", "--resume", "--out", str(full)])
    assert losses(full) == pytest.approx(losses(root / "one"), abs=1e-6)
    assert (full / dcp.SHARDED).is_dir() and not (full / "checkpoint.pt").exists()
    # 2 -> 1 with a batch that does not keep the global batch: one clear error, the checkpoint untouched
    before = {p.name: p.read_bytes() for p in (two / dcp.SHARDED).iterdir()}
    assert main(common + ["--batch-size", "3", "--resume", "--shard", "fsdp", "--out", str(two)]) == 2
    assert {p.name: p.read_bytes() for p in (two / dcp.SHARDED).iterdir()} == before


@pytest.mark.slow  # two torchrun agents: ~10 s
def test_two_nodes_rendezvous_over_localhost(runs, tmp_path):
    root, common = runs
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = common + TWO + ["--shard", "fsdp", "--out", str(tmp_path / "nodes")]
    agents = [torchrun(args, nproc=1, popen=True,
                       launcher=("--nnodes", "2", "--node-rank", str(node), "--rdzv-backend", "c10d",
                                 "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "qwen-min-test"))
              for node in (0, 1)]
    for agent in agents:
        _, err = agent.communicate(timeout=300)
        assert agent.returncode == 0, err[-3000:]
    assert losses(tmp_path / "nodes") == pytest.approx(losses(root / "fsdp"), abs=1e-6)
    assert (tmp_path / "nodes" / dcp.SHARDED / "__1_0.distcp").is_file()


def test_per_rank_bytes_are_one_over_world():
    from qwen_min.bench.shard_memory import measure

    one, = measure("tiny", world=1)
    two = measure("tiny", world=2)
    for kind in ("parameters", "gradients", "optimizer"):
        full = one["bytes"][kind]
        assert full > 0
        for rank in two:  # padding to a multiple of 2 rows adds a few bytes at most
            assert rank["bytes"][kind] == pytest.approx(full / 2, rel=0.01), kind
    assert one["bytes"]["gradients"] == one["bytes"]["parameters"] == one["unsharded_parameter_bytes"]
    assert one["bytes"]["optimizer"] == 2 * one["bytes"]["parameters"]  # AdamW: two moments per weight


def test_global_batch_checks():
    check_global_batch({"global_batch": 4, "world_size": 2}, rows=4, grad_accum=1, world_size=1)  # kept: fine
    check_global_batch({"global_batch": 4, "world_size": 2}, rows=3, grad_accum=1, world_size=2)  # same world: free
    with pytest.raises(ValueError, match="not divisible by 3 processes"):
        check_global_batch({"global_batch": 4, "world_size": 2}, rows=1, grad_accum=1, world_size=3)
    with pytest.raises(ValueError, match="resume with --batch-size 2"):
        check_global_batch({"global_batch": 4, "world_size": 1}, rows=1, grad_accum=1, world_size=2)


@pytest.mark.slow  # transformers import and load: ~10 s
def test_consolidate_loads_in_transformers_with_the_same_logits(runs, tmp_path, capsys):
    import transformers

    from qwen_min.checkpoints.hf import from_pretrained
    from qwen_min.config import QwenConfig
    from qwen_min.model.qwen import Qwen

    root, _ = runs
    assert main(["consolidate", str(root / "fsdp"), "--out", str(tmp_path / "model")]) == 0
    assert "step 20" in capsys.readouterr().out
    # the checkpoint's weights through the resume path (get_state_dict / set_state_dict), not consolidate's
    meta = dcp.read_trainer_state(root / "fsdp" / dcp.SHARDED)
    model = Qwen(QwenConfig.from_hf_dict(meta["config"]))
    dcp.load_sharded(root / "fsdp" / dcp.SHARDED, model, torch.optim.AdamW(model.parameters()))
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32)
    ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(ids), hf(ids).logits
    assert (ours - theirs).abs().max().item() < 1e-5
    reference = from_pretrained(tmp_path / "model")
    assert (reference(ids) - ours).abs().max().item() == 0
    assert (tmp_path / "model" / "tokenizer.json").is_file()
    # the trained model: the 2-process sharded run's step 20 computes the 1-process run's logits, to rounding. (Not
    # every weight agrees as closely: the k_proj biases get near-zero gradients, as softmax ignores a shift shared by
    # all keys, and AdamW turns those rounding-sized gradients into lr-sized steps.)
    single = Qwen(model.config)
    single.load_state_dict(torch.load(root / "one" / "checkpoint.pt", weights_only=True)["model"])
    with torch.no_grad():
        assert (single(ids) - ours).abs().max().item() < 1e-4
    # an existing --out is never overwritten
    assert main(["consolidate", str(root / "fsdp"), "--out", str(tmp_path / "model")]) == 2
    assert "exists" in capsys.readouterr().err


def test_bad_checkpoints_one_clear_error_each(runs, tmp_path, capsys):
    from qwen_min.config import QwenConfig
    from qwen_min.model.qwen import Qwen

    root, _ = runs
    sharded = tmp_path / dcp.SHARDED
    shutil.copytree(root / "fsdp" / dcp.SHARDED, sharded)
    other = Qwen(QwenConfig.from_name("tiny", vocab_size=301))  # another model
    with pytest.raises(ValueError, match="holds another model: lm_head.weight is \\[300, 64\\] there, \\[301, 64\\] here"):
        dcp.load_sharded(sharded, other, torch.optim.AdamW(other.parameters()))
    (sharded / "__1_0.distcp").unlink()  # a rank's file lost
    model = Qwen(QwenConfig.from_name("tiny", vocab_size=300))
    with pytest.raises(FileNotFoundError, match="missing shard file\\(s\\) __1_0.distcp of 2"):
        dcp.load_sharded(sharded, model, torch.optim.AdamW(model.parameters()))
    assert main(["consolidate", str(tmp_path), "--out", str(tmp_path / "model")]) == 2
    assert "missing shard" in capsys.readouterr().err and not (tmp_path / "model").exists()
    (sharded / dcp.TRAINER_FILE).unlink()
    with pytest.raises(ValueError, match="not a qwen-min sharded checkpoint"):
        dcp.read_trainer_state(sharded)


def test_a_crash_between_the_renames_leaves_the_old_checkpoint(runs, tmp_path):
    root, _ = runs
    shutil.copytree(root / "fsdp" / dcp.SHARDED, tmp_path / (dcp.SHARDED + ".old"))  # as if killed mid-swap
    assert dcp.exists(tmp_path / dcp.SHARDED)
    assert dcp.read_trainer_state(tmp_path / dcp.SHARDED)["step"] == STEPS  # put back, then read
    assert (tmp_path / dcp.SHARDED).is_dir() and not (tmp_path / (dcp.SHARDED + ".old")).exists()


def test_one_process_fsdp_run_ends_with_a_plain_model(tiny_corpora, tmp_path):
    """A whole run under --shard fsdp in one process (a group of one, activation checkpointing on): the model is
    unsharded after training, so pretrain writes model/ and samples as usual, and the group is gone."""
    import torch.distributed as dist

    from qwen_min.checkpoints.hf import from_pretrained

    out = tmp_path / "run"
    args = COMMON[:COMMON.index("--max-steps")] + ["--max-steps", "3", "--warmup-steps", "1", "--eval-windows", "8",
                                                   "--no-progress", "--device", "cpu"]
    assert main(args + ["--data", str(tiny_corpora), "--batch-size", "2", "--shard", "fsdp",
                        "--activation-checkpointing", "--out", str(out)]) == 0
    assert not dist.is_initialized()
    assert (out / "samples.txt").is_file() and (out / dcp.SHARDED).is_dir()
    model = from_pretrained(out / "model")
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
