"""DPO: the loss and its gradients against the formula TRL implements (trl/trainer/dpo_trainer.py,
loss_type='sigmoid'), on real masked batches; preference pairs from checkers; `qwen-min make-pairs` and
`qwen-min dpo` end to end, with resume (TRL's own trainer: test_dpo_trl.py; the exercises:
tests/course/test_ch10_exercises.py)."""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

import qwen_min as qm
from qwen_min.cli import main
from qwen_min.tasks import checkable as tasks
from qwen_min.tasks.pairs import make_pairs, pairs_from_answers, read_pairs, write_pairs
from qwen_min.train.dpo import PairBatches, completion_logps, dpo_batch_loss, encode_pair, optimal_policy

BETA = 0.1
VOCAB = 300


def tiny_model(seed: int) -> qm.Qwen:
    torch.manual_seed(seed)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=VOCAB)).double()
    with torch.no_grad():  # sharper than the 0.02 initialisation, so log-probs differ between sequences
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def random_pairs(seed: int, n: int = 4) -> list[tuple[list[int], list[int], list[int]]]:
    """(prompt, chosen, rejected) token lists of different lengths."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda lo, hi: torch.randint(0, VOCAB, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g).tolist()
    return [(rand(2, 9), rand(1, 7), rand(1, 7)) for _ in range(n)]


def padded_batch(pairs):
    """chosen rows then rejected rows, right-padded; labels -100 on prompt and padding (the SFT masking convention)."""
    rows = [(p, c) for p, c, _ in pairs] + [(p, r) for p, _, r in pairs]
    t = max(len(p) + len(c) for p, c in rows)
    ids = torch.zeros(len(rows), t, dtype=torch.long)
    mask = torch.zeros(len(rows), t, dtype=torch.long)
    labels = torch.full((len(rows), t), -100)
    for i, (p, c) in enumerate(rows):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        mask[i, :len(p) + len(c)] = 1
        labels[i, len(p):len(p) + len(c)] = torch.tensor(c)
    return ids, mask, labels


def package_loss(policy, reference, pairs):
    ids, mask, labels = padded_batch(pairs)
    logps = completion_logps(policy(ids, attention_mask=mask), labels)  # (2n,)
    with torch.no_grad():
        ref = completion_logps(reference(ids, attention_mask=mask), labels)
    n = len(pairs)
    return qm.dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], beta=BETA)


def formula_logp(model, prompt, completion):
    """log pi(completion | prompt): one unpadded sequence, a full log-softmax, one term per completion token."""
    logprobs = torch.log_softmax(model(torch.tensor([prompt + completion]))[0], dim=-1)  # (t, vocab)
    return sum(logprobs[len(prompt) + i - 1, token] for i, token in enumerate(completion))


def formula_loss(policy, reference, pairs):
    """TRL's sigmoid loss: -logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), averaged over pairs."""
    terms = []
    for p, c, r in pairs:
        with torch.no_grad():
            ref_c, ref_r = formula_logp(reference, p, c), formula_logp(reference, p, r)
        pi_c, pi_r = formula_logp(policy, p, c), formula_logp(policy, p, r)
        terms.append(-F.logsigmoid(BETA * ((pi_c - ref_c) - (pi_r - ref_r))))
    return torch.stack(terms).mean()


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_gradients_match_the_formula(seed):
    policy, reference = tiny_model(seed), tiny_model(seed + 100)
    pairs = random_pairs(seed)
    loss, metrics = package_loss(policy, reference, pairs)
    loss.backward()
    package_grads = grads(policy)
    policy.zero_grad()
    want = formula_loss(policy, reference, pairs)
    want.backward()
    assert abs(loss.item() - want.item()) < 1e-6
    assert abs(loss.item() - math.log(2)) > 1e-3  # different models: the comparison is not the trivial one
    for got, expected in zip(package_grads, grads(policy)):
        assert (got - expected).abs().max().item() < 1e-6
    assert sum(g.abs().sum().item() for g in package_grads) > 1e-3  # the loss does reach the weights


def test_metrics_are_trl_rewards():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(16, generator=g, dtype=torch.float64) * 5 for _ in range(4))
    loss, m = qm.dpo_loss(pc, pr, rc, rr, beta=0.5)
    chosen, rejected = 0.5 * (pc - rc), 0.5 * (pr - rr)
    assert abs(loss.item() + F.logsigmoid(chosen - rejected).mean().item()) < 1e-12
    assert m["rewards/chosen"] == pytest.approx(chosen.mean().item(), abs=1e-12)
    assert m["rewards/rejected"] == pytest.approx(rejected.mean().item(), abs=1e-12)
    assert m["rewards/margins"] == pytest.approx((chosen - rejected).mean().item(), abs=1e-12)
    assert m["rewards/accuracies"] == sum(float(c > r) for c, r in zip(chosen, rejected)) / 16
    assert 0 < m["rewards/accuracies"] < 1


def test_step_zero_loss_is_log_2():
    policy = tiny_model(3)
    reference = copy.deepcopy(policy)
    pairs = random_pairs(3, n=5)
    loss, metrics = package_loss(policy, reference, pairs)
    assert abs(loss.item() - math.log(2)) < 1e-12
    assert metrics["rewards/chosen"] == metrics["rewards/rejected"] == metrics["rewards/margins"] == 0.0
    assert metrics["rewards/accuracies"] == 0.0  # ties are not wins
    # and the first step still moves the policy: d loss = -beta/2 * d(pi_c - pi_r), averaged over pairs
    loss.backward()
    first = grads(policy)
    policy.zero_grad()
    ids, mask, labels = padded_batch(pairs)
    logps = completion_logps(policy(ids, attention_mask=mask), labels)
    (-BETA / 2 * (logps[:5] - logps[5:]).mean()).backward()
    for got, expected in zip(first, grads(policy)):
        assert (got - expected).abs().max().item() < 1e-12


def test_completion_logps_ignores_prompt_and_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.tensor([[-100, -100, 4, 7, -100, -100], [-100, 2, 3, 9, 1, 0]])
    logprobs = torch.log_softmax(logits, -1)
    want = torch.stack([logprobs[0, 1, 4] + logprobs[0, 2, 7],
                        logprobs[1, 0, 2] + logprobs[1, 1, 3] + logprobs[1, 2, 9] + logprobs[1, 3, 1] + logprobs[1, 4, 0]])
    assert torch.allclose(completion_logps(logits, labels), want, atol=1e-6)


def test_bad_input_is_one_clear_error():
    z = torch.zeros(3)
    with pytest.raises(ValueError, match="same shape"):
        qm.dpo_loss(z, z, z, torch.zeros(4))
    with pytest.raises(ValueError, match="beta must be > 0"):
        qm.dpo_loss(z, z, z, z, beta=0)
    with pytest.raises(ValueError, match="disagree"):
        completion_logps(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))


def test_optimal_policy_is_the_kl_regularised_argmax():
    """pi_ref * exp(r / beta) maximises E[r] - beta * KL(pi || pi_ref): no random policy does better."""
    g = torch.Generator().manual_seed(0)
    ref = torch.softmax(torch.randn(6, generator=g, dtype=torch.float64), -1)
    rewards = torch.rand(6, generator=g, dtype=torch.float64)
    objective = lambda pi: (pi * rewards).sum() - 0.3 * (pi * (pi / ref).log()).sum()
    best = objective(optimal_policy(ref, rewards, 0.3))
    others = torch.softmax(torch.randn(200, 6, generator=g, dtype=torch.float64) * 2, -1)
    assert all(objective(pi) < best for pi in others)


# ---------------------------------------------------------------------------- pairs
ADD = tasks.Example("add", [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}], "4")


def test_pairs_from_answers_uses_the_checker():
    pairs = pairs_from_answers(ADD, ["4", "5", "4", "The answer is 4.", "22", "5", "7"], pairs_per_prompt=5, seed=0)
    assert len(pairs) == 3  # 2 distinct passing and 3 distinct failing answers: the passing ones are reused
    for p in pairs:
        assert tasks.check_last_number(p["chosen"][0]["content"], "4")
        assert not tasks.check_last_number(p["rejected"][0]["content"], "4")
        assert p["prompt"] == ADD.prompt_messages and p["pass_rate"] == 3 / 7
    assert len({(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs}) == len(pairs)
    assert pairs_from_answers(ADD, ["4", "4.0", "four"], pairs_per_prompt=1, seed=0)[0]["chosen"][0]["content"] == "4"
    assert pairs_from_answers(ADD, ["4", "4"], 3) == [] and pairs_from_answers(ADD, ["1", "2"], 3) == []


def small_tokenizer():
    texts = [qm.Tokenizer.from_pretrained("data/qwen2.5").render_chat(ex.messages)
             for ex in tasks.make_examples(["add", "count"], "train", 30, seed=0)]
    return qm.train_bpe(texts, 300, special_tokens=("<|endoftext|>", "<|im_start|>", "<|im_end|>"))


@pytest.fixture(scope="module")
def sft_folder(tmp_path_factory):
    """A random tiny model and a small tokenizer saved as an SFT model folder."""
    folder = tmp_path_factory.mktemp("sft") / "model"
    tok = small_tokenizer()
    torch.manual_seed(0)
    qm.save_pretrained(qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=320)), folder)
    tok.save_pretrained(folder)
    return folder


def test_make_pairs_skips_unanimous_prompts_and_is_seeded(sft_folder, monkeypatch):
    model, tok = qm.from_pretrained(sft_folder), qm.Tokenizer.from_pretrained(sft_folder)
    # a random model never adds right: let a reply of even length pass, so answers disagree
    monkeypatch.setitem(tasks.TASKS, "add", tasks.Task("add", tasks.gen_add, lambda reply, answer: len(reply) % 2 == 0))
    examples = tasks.make_examples(["add"], "dpo", 6, seed=0)
    pairs, report = make_pairs(model, tok, examples, n_samples=4, pairs_per_prompt=2, max_new_tokens=5, seed=3)
    again, _ = make_pairs(model, tok, examples, n_samples=4, pairs_per_prompt=2, max_new_tokens=5, seed=3)
    assert pairs == again and pairs
    counts = report["add"]
    assert counts["prompts"] == 6 and counts["pairs"] == len(pairs)
    mixed = {json.dumps(p["prompt"]) for p in pairs}
    assert len(mixed) == 6 - counts["all_pass"] - counts["all_fail"]
    for p in pairs:
        assert len(p["chosen"][0]["content"]) % 2 == 0 and len(p["rejected"][0]["content"]) % 2 == 1
        assert tasks.split_of(p["prompt"][0]["content"]) == "dpo"
        assert p["sampling"] == {"n_samples": 4, "temperature": 1.0, "top_k": None, "top_p": None, "max_new_tokens": 5, "seed": 3}


def test_pair_batches_put_chosen_then_rejected_with_answer_only_labels(sft_folder):
    tok = qm.Tokenizer.from_pretrained(sft_folder)
    pairs = [{"prompt": ex.prompt_messages, "chosen": [ex.messages[-1]], "rejected": [{"role": "assistant", "content": "no"}]}
             for ex in tasks.make_examples(["add", "count"], "dpo", 3, seed=0)]
    batches = PairBatches(tok, pairs, batch_size=2, seed=0)
    batch = batches.next_batch()
    assert batch["input_ids"].shape[0] == 4
    order = batches.stream._permutation()[:2]
    for row, (i, side) in enumerate([(order[0], 0), (order[1], 0), (order[0], 1), (order[1], 1)]):
        ids, labels = encode_pair(tok, pairs[i])[side]
        assert batch["input_ids"][row, :len(ids)].tolist() == ids and batch["labels"][row, :len(ids)].tolist() == labels
        assert (batch["labels"][row, len(ids):] == -100).all()
        answer = [t for t in labels if t != -100]
        assert tok.decode(answer) == (pairs[i]["chosen"] if side == 0 else pairs[i]["rejected"])[0]["content"] + "<|im_end|>"
    # resumable: a copy restored from the state gives the same next batch
    state = batches.state_dict()
    other = PairBatches(tok, pairs, batch_size=2, seed=0)
    other.load_state_dict(state)
    assert torch.equal(other.next_batch()["input_ids"], batches.next_batch()["input_ids"])
    # precomputed reference log-probs equal the frozen model's, row for row
    model = qm.from_pretrained(sft_folder)
    batches.attach_reference(model)
    batch = batches.batch([2, 0])
    with torch.no_grad():
        frozen = completion_logps(model(batch["input_ids"]), batch["labels"])
    assert torch.allclose(batch["ref_logps"], frozen, atol=1e-5)
    loss, metrics = dpo_batch_loss(model, batch, beta=0.1)
    assert abs(loss.item() - math.log(2)) < 1e-5


def write_handmade_pairs(path, n_per_task=8):
    """Right reference replies as chosen, a wrong number as rejected: no model needed."""
    pairs = [{"task": ex.task, "prompt": ex.prompt_messages, "chosen": [ex.messages[-1]],
              "rejected": [{"role": "assistant", "content": str(int(ex.answer) + 1)}], "answer": ex.answer}
             for ex in tasks.make_examples(["add", "count"], "dpo", n_per_task, seed=0)]
    write_pairs(pairs, path)
    return pairs


DPO_ARGS = ["--beta", "0.1", "--lr", "1e-3", "--max-steps", "6", "--batch-size", "4", "--eval-every", "3", "--save-every", "2",
            "--eval-prompts", "2", "--max-new-tokens", "4", "--val-fraction", "0.25", "--no-progress", "--device", "cpu"]


def test_dpo_command_trains_logs_and_resumes_identically(sft_folder, tmp_path, capsys):
    pairs_file = tmp_path / "pairs.jsonl"
    write_handmade_pairs(pairs_file)
    assert len(read_pairs(pairs_file)) == 16
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["dpo", "--checkpoint", str(sft_folder), "--pairs", str(pairs_file), "--out", str(full), *DPO_ARGS]) == 0
    records = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))
    assert abs(records[0]["loss"] - math.log(2)) < 1e-5  # the first batch is scored before any update: policy == reference
    expected = {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "val_rewards/accuracies"}
    assert expected <= set(records[-1])
    assert records[-1]["rewards/margins"] > 0  # the policy moved toward the chosen answers
    evaluation = json.loads((full / "eval.json").read_text())
    assert set(evaluation["before"]) == set(evaluation["after"]) == {"add", "count", "mean"}
    assert (full / "dpo.png").exists() and (full / "model" / "config.json").exists()
    # the same run in two sessions: identical figures
    args = ["dpo", "--checkpoint", str(sft_folder), "--pairs", str(pairs_file), "--out", str(part), *DPO_ARGS, "--stop-at", "4"]
    assert main(args) == 0
    assert main(["dpo", "--out", str(part), "--resume", "--no-progress"]) == 0
    resumed = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    # a session ends with an eval
    strip = lambda r: {k: v for k, v in r.items() if k != "tokens_per_s" and not k.startswith("val_")}
    assert [strip(r) for r in resumed] == [strip(r) for r in records]


def test_frozen_reference_equals_precomputed(sft_folder, tmp_path):
    pairs_file = tmp_path / "pairs.jsonl"
    write_handmade_pairs(pairs_file, 4)
    args = ["--checkpoint", str(sft_folder), "--pairs", str(pairs_file), "--max-steps", "2", "--batch-size", "3",
            "--eval-tasks", "none",
            "--val-fraction", "0.25", "--no-progress", "--device", "cpu"]
    assert main(["dpo", "--out", str(tmp_path / "pre"), *args]) == 0
    assert main(["dpo", "--out", str(tmp_path / "frozen"), "--reference", "frozen", *args]) == 0
    read = lambda d: [json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(read("pre"), read("frozen")):
        for key in ("loss", "rewards/margins", "val_loss"):
            if key in a:
                assert abs(a[key] - b[key]) < 1e-5


def test_lora_dpo_writes_adapters_that_load_as_the_trained_policy(sft_folder, tmp_path):
    """--lora: model/ holds adapters only; qm.load(run) = base + adapters merged = the policy that trained (its
    held-out pair margins, recomputed from the loaded model); a resumed run ends with the same adapters."""
    from safetensors.torch import load_file

    from qwen_min.train.dpo import PairBatches, completion_logps, split_pairs

    pairs_file = tmp_path / "pairs.jsonl"
    write_handmade_pairs(pairs_file)
    args = ["--checkpoint", str(sft_folder), "--pairs", str(pairs_file), "--lora", "--lora-rank", "2", "--lora-alpha", "4",
            "--lora-targets", "q_proj,down_proj", "--eval-tasks", "none", "--beta", "0.1", "--lr", "1e-2", "--max-steps", "6",
            "--batch-size", "4", "--eval-every", "3", "--save-every", "2", "--val-fraction", "0.25", "--no-progress",
            "--device", "cpu"]
    assert main(["dpo", "--out", str(tmp_path / "run"), *args]) == 0
    model_dir = tmp_path / "run" / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == ["adapter.json", "adapter.safetensors"]
    tensors = load_file(str(model_dir / "adapter.safetensors"))
    wrapped = ("q_proj.lora_A", "q_proj.lora_B", "down_proj.lora_A", "down_proj.lora_B")
    assert tensors and all(k.endswith(wrapped) for k in tensors)
    assert any(v.abs().max() > 0 for k, v in tensors.items() if k.endswith("lora_B"))  # trained away from B = 0
    loaded, tok = qm.load(tmp_path / "run", log=lambda msg: None)
    base = qm.from_pretrained(sft_folder).eval()
    _, val = split_pairs(read_pairs(pairs_file), 0.25, seed=0)
    batch = PairBatches(tok, val, batch_size=len(val)).fixed_batches()[0]
    with torch.no_grad():
        logps, ref = (completion_logps(m(batch["input_ids"]), batch["labels"]) for m in (loaded, base))
    n = len(val)
    margin = 0.1 * ((logps[:n] - ref[:n]) - (logps[n:] - ref[n:])).mean().item()
    last = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert margin == pytest.approx(last["val_rewards/margins"], abs=1e-4) and margin != 0
    assert main(["dpo", "--out", str(tmp_path / "part"), *args, "--stop-at", "4"]) == 0
    assert not (tmp_path / "part" / "model").exists()
    assert main(["dpo", "--out", str(tmp_path / "part"), "--resume", "--no-progress"]) == 0
    resumed = load_file(str(tmp_path / "part" / "model" / "adapter.safetensors"))
    assert all(torch.equal(resumed[k], tensors[k]) for k in tensors)


def test_commands_fail_with_one_clear_line(sft_folder, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "not a list"}\n')
    assert main(["dpo", "--checkpoint", str(sft_folder), "--pairs", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "bad.jsonl:1: expected a JSON object" in capsys.readouterr().err
    assert main(["dpo", "--out", str(tmp_path / "y")]) == 2
    assert "--checkpoint is required" in capsys.readouterr().err
    # a random model fails every check: no pairs, said plainly
    assert main(["make-pairs", "--checkpoint", str(sft_folder), "--out", str(tmp_path / "p.jsonl"), "--tasks", "add",
                 "--prompts-per-task", "2", "--n-samples", "2", "--max-new-tokens", "3", "--device", "cpu"]) == 2
    assert "no pairs" in capsys.readouterr().err


# ---------------------------------------------------------------------------- exercises
