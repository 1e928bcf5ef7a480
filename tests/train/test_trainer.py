"""The generic training loop: schedule, weight decay groups, accumulation, bit-identical resume, atomic checkpoints,
non-finite losses, metrics, and the `qwen-min pretrain` command end to end."""

import json
import math

import pytest
import torch

import qwen_min as qm
from qwen_min.cli import main
from qwen_min.train.data import EOT, MixtureBatches, build_shards, eval_batches, read_documents
from qwen_min.train.pretrain import lm_loss
from qwen_min.train.trainer import (
    TrainConfig,
    Trainer,
    TrainingDiverged,
    decay_groups,
    load_checkpoint,
    lr_schedule,
    read_metrics,
    save_checkpoint,
)

SEQ = 32


@pytest.fixture(scope="module")
def shards(tiny_corpora, tmp_path_factory):
    sources = {name: read_documents(tiny_corpora / name) for name in ("prose", "code")}
    tok = qm.train_bpe([d for docs in sources.values() for d in docs], 320, special_tokens=(EOT,))
    return build_shards(sources, tok, tmp_path_factory.mktemp("shards"), val_fraction=0.1, log=lambda *a: None)


def make_trainer(shards, out, batch_size=4, grad_accum=1, loss_fn=lm_loss, **config):
    torch.manual_seed(0)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=320))
    train = MixtureBatches({n: s["train"] for n, s in shards.items()}, {"prose": 0.5, "code": 0.5}, SEQ, batch_size,
                           grad_accum, seed=0)
    evals = {"prose": eval_batches(shards["prose"]["val"], SEQ, 4, 8)}
    config = dict(max_steps=6, lr=3e-3, warmup_steps=2, progress=False) | config
    return Trainer(model, loss_fn, train, TrainConfig(out=out, grad_accum=grad_accum, **config), evals)


def test_lr_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    kw = dict(lr=1e-3, warmup_steps=10, max_steps=110, min_lr=1e-4)
    lrs = [lr_schedule(s, **kw) for s in range(121)]
    assert lrs[:10] == pytest.approx([1e-3 * (s + 1) / 10 for s in range(10)])
    assert lrs[10] == pytest.approx(1e-3) and lrs[110] == pytest.approx(1e-4) and lrs[120] == pytest.approx(1e-4)
    assert lrs[60] == pytest.approx((1e-3 + 1e-4) / 2)  # half-way through the cosine: the mid-point
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_weight_decay_on_matrices_only():
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=320))
    decay, no_decay = decay_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)].rsplit(".", 1)[-1] for p in no_decay["params"]} == {"weight", "bias"}
    assert all(p.ndim == 1 for p in no_decay["params"]) and all(p.ndim == 2 for p in decay["params"])
    assert "model.embed_tokens.weight" in {names[id(p)] for p in decay["params"]}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))  # tied embedding once
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.1


def test_metrics_schedule_and_validation(shards, tmp_path):
    trainer = make_trainer(shards, tmp_path, eval_every=3, flops_per_token=1e6, peak_flops=1e12)
    trainer.fit()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 7))
    assert all({"loss", "lr", "tokens_per_s", "grad_norm", "tokens", "mfu"} <= set(r) for r in records)
    assert [r["lr"] for r in records] == pytest.approx([lr_schedule(s, lr=3e-3, warmup_steps=2, max_steps=6, min_lr=3e-4)
                                                        for s in range(6)])
    assert [r["step"] for r in records if "val_loss" in r] == [3, 6]
    assert records[-1]["tokens"] == 6 * 4 * SEQ
    assert records[0]["mfu"] == pytest.approx(records[0]["tokens_per_s"] * 1e6 / 1e12)
    # validation loss is the mean loss over the fixed validation batches, perplexity its exponential
    with torch.no_grad():
        want = sum(lm_loss(trainer.model, b)[0].item() for b in trainer.eval_sets["prose"]) / 2
    assert records[-1]["val_loss"] == pytest.approx(want, abs=1e-6)
    assert records[-1]["val_ppl"] == pytest.approx(math.exp(want))
    assert records[-1]["loss"] < records[0]["loss"]
    assert (tmp_path / "loss.png").stat().st_size > 1000
    with pytest.raises(FileExistsError, match="--resume"):
        make_trainer(shards, tmp_path).fit()


def test_moe_load_balancing_loss_is_logged(shards, tmp_path):
    torch.manual_seed(0)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny-moe", vocab_size=320))
    batch = next(iter(eval_batches(shards["prose"]["val"], SEQ, 4, 8)))
    loss, metrics = lm_loss(model, batch)
    logits = model(batch["input_ids"])
    lm = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["input_ids"][:, 1:].flatten())
    assert metrics["aux_loss"] > 0
    assert loss.item() == pytest.approx(lm.item() + model.config.router_aux_loss_coef * metrics["aux_loss"].item(), abs=1e-6)
    train = MixtureBatches({n: s["train"] for n, s in shards.items()}, {"prose": 0.5, "code": 0.5}, SEQ, 4, 1, seed=0)
    Trainer(model, lm_loss, train, TrainConfig(out=tmp_path, max_steps=2, lr=1e-3, progress=False)).fit()
    assert all(r["aux_loss"] > 0 for r in read_metrics(tmp_path / "metrics.jsonl"))
    assert lm_loss(qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=320)), batch)[1] == {}   # dense: nothing extra


def test_evaluation_windows_fewer_than_a_batch_is_one_clear_error(shards):
    from qwen_min.train.data import DataError

    with pytest.raises(DataError, match="3 evaluation windows asked for, fewer than one batch of 4"):
        eval_batches(shards["prose"]["val"], SEQ, 4, 3)
    with pytest.raises(DataError, match="tokens, fewer than one batch of 4 windows of 100000"):
        eval_batches(shards["prose"]["val"], 100_000, 4, 8)


def test_gradient_accumulation_equals_the_large_batch(shards, tmp_path):
    big = make_trainer(shards, tmp_path / "big", batch_size=8)
    small = make_trainer(shards, tmp_path / "accum", batch_size=2, grad_accum=4)
    big_losses = [r["loss"] for r in big.fit()]
    small_losses = [r["loss"] for r in small.fit()]
    assert small_losses == pytest.approx(big_losses, abs=1e-5)
    for (name, a), b in zip(big.model.state_dict().items(), small.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name


class Crash(Exception):
    pass


def test_resume_is_bit_identical(shards, tmp_path):
    straight = [r["loss"] for r in make_trainer(shards, tmp_path / "a", save_every=3).fit()]

    def crash_at_step_5(model, batch):  # a session killed after its step-3 checkpoint, during step 5
        crash_at_step_5.calls += 1
        if crash_at_step_5.calls == 5:
            raise Crash
        return lm_loss(model, batch)

    crash_at_step_5.calls = 0
    with pytest.raises(Crash):
        make_trainer(shards, tmp_path / "b", save_every=3, loss_fn=crash_at_step_5).fit()
    assert len(read_metrics(tmp_path / "b" / "metrics.jsonl")) == 4  # step 4 was logged, not checkpointed
    resumed = make_trainer(shards, tmp_path / "b", save_every=3, resume=True)
    resumed.fit()
    losses = [r["loss"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert losses == straight  # exactly: same floats, not approximately
    final = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    assert all(torch.equal(final[k], v) for k, v in resumed.model.state_dict().items())


def test_checkpoint_write_is_atomic(shards, tmp_path, monkeypatch):
    trainer = make_trainer(shards, tmp_path, max_steps=2)
    trainer.fit()
    path = tmp_path / "checkpoint.pt"
    before = load_checkpoint(path)

    def dies_mid_write(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # the process is killed while writing

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 3}, path)
    after = load_checkpoint(path)
    assert after["step"] == before["step"] == 2
    assert all(torch.equal(before["model"][k], v) for k, v in after["model"].items())
    assert {"model", "optimizer", "scheduler", "data", "rng", "step"} <= set(after)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "garbage.pt")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_stops_naming_the_step(shards, tmp_path, bad):
    def goes_bad_at_step_3(model, batch):
        goes_bad_at_step_3.calls += 1
        loss, metrics = lm_loss(model, batch)
        return (loss * bad if goes_bad_at_step_3.calls == 3 else loss), metrics

    goes_bad_at_step_3.calls = 0
    trainer = make_trainer(shards, tmp_path, loss_fn=goes_bad_at_step_3)
    with pytest.raises(TrainingDiverged, match=f"step 3: loss is {bad}; stopped before the optimizer step .no checkpoint yet"):
        trainer.fit()
    assert trainer.step == 2 and len(read_metrics(tmp_path / "metrics.jsonl")) == 2
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # not stepped with the bad gradient


def test_pretrain_command_stops_resumes_and_exports(tiny_corpora, tmp_path, capsys):
    common = ["pretrain", "--data", str(tiny_corpora), "--mix", "prose=0.7,code=0.3", "--vocab-size", "300",
              "--seq-len", "32", "--batch-size", "4", "--max-steps", "6", "--eval-every", "3", "--eval-windows", "8",
              "--warmup-steps", "2", "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    assert main(common + ["--out", str(tmp_path / "two"), "--stop-at", "3"]) == 0
    assert not (tmp_path / "two" / "model").exists()
    assert main(["pretrain", "--out", str(tmp_path / "two"), "--resume", "--no-progress"]) == 0  # settings from run.json
    one, two = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("one", "two"))
    assert [r["loss"] for r in one] == [r["loss"] for r in two] and len(one) == 6
    model = qm.from_pretrained(tmp_path / "two" / "model")
    tok = qm.Tokenizer.from_pretrained(tmp_path / "two" / "model")
    assert model.config.vocab_size == tok.vocab_size == 300  # one embedding row per id of the trained tokenizer
    assert "--- 'KING.\\n'" in (tmp_path / "two" / "samples.txt").read_text()
    assert json.loads((tmp_path / "two" / "run.json").read_text())["mix"] == "prose=0.7,code=0.3"
    capsys.readouterr()
    assert main(common + ["--out", str(tmp_path / "bad"), "--mix", "prose=lots"]) == 2
    assert "qwen-min pretrain: error: --mix: 'prose=lots' is not name=weight" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(tmp_path / "one")]) == 2  # a finished run is not overwritten
    assert "checkpoint.pt exists: pass --resume" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "none/checkpoint.pt: no checkpoint to resume from" in capsys.readouterr().err


def test_bench_train_reports_mfu_against_the_peak_measured_in_the_run(capsys):
    assert main(["bench", "train", "--steps", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "recipe cpu-tiny: model tiny" in out and "matmul peak, measured in this run" in out
    mfu = float(out.split("MFU")[1].split("%")[0])
    assert 0 < mfu < 100
