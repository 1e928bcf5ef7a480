"""GRPO: the loss against TRL's GRPOTrainer (loss and gradients; the advantages TRL computes itself from a checker
reward), advantages, rollouts, and `qwen-min grpo`."""

from __future__ import annotations

import pytest
import torch

from qwen_min.checkpoints.hf import from_pretrained, save_pretrained
from qwen_min.cli import main
from qwen_min.config import QwenConfig
from qwen_min.course.exercises import ExerciseFailed
from qwen_min.course.exercises.ch11_grpo import (
    PACKAGE_EQUIVALENTS,
    check_equal_rewards,
    check_fixed_k3,
)
from qwen_min.model.lora import apply_lora
from qwen_min.model.qwen import Qwen
from qwen_min.model.reward import RewardModel
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tasks.checkable import make_examples
from qwen_min.tokenizer.bpe_training import train_bpe
from qwen_min.tokenizer.chat_template import render
from qwen_min.train.grpo import AdaptersOff, group_advantages, grpo_loss, k3_kl, order_by_variance, per_token_logps
from qwen_min.train.trainer import read_metrics

B, G, P, C = 6, 3, 5, 7  # answers, group size, prompt length, completion length


@pytest.fixture(scope="module")
def trl_trainer(tmp_path_factory):
    """TRL 1.16's GRPOTrainer around a tiny random Qwen2ForCausalLM (fp64), and a qm.Qwen holding the same weights."""
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    from trl import GRPOConfig, GRPOTrainer


    cfg = QwenConfig.from_name("tiny", vocab_size=101, intermediate_size=40)
    hf_cfg = Qwen2Config(**cfg.to_hf_dict())
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    hf = Qwen2ForCausalLM(hf_cfg).double()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.2)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(official_tokenizer_dir() / "tokenizer.json"),
                                  pad_token="<|endoftext|>", eos_token="<|im_end|>")
    # beta 0 at construction: TRL would otherwise load a reference model by name; the reference log-probs
    # are given in the inputs, and beta is set on the trainer below
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("trl")), per_device_train_batch_size=B, num_generations=G,
                      beta=0.0, bf16=False, use_cpu=True, report_to=[], max_completion_length=C)
    trainer = GRPOTrainer(model=hf, reward_funcs=lambda completions, **kw: [0.0] * len(completions), args=args,
                          train_dataset=Dataset.from_dict({"prompt": ["x"] * B}), processing_class=tok)
    trainer.current_gradient_accumulation_steps = 1
    ours = Qwen(cfg, attn_impl="eager").double()
    ours.load_state_dict(hf.state_dict())
    return trainer, ours


def fixed_batch(model):
    """Prompts of one length, completions right-padded to different lengths, old and reference log-probs nearby."""
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([7, 3, 5, 1, 7, 6])
    batch = {"prompt_ids": torch.randint(0, 101, (B, P), generator=g), "prompt_mask": torch.ones(B, P, dtype=torch.long),
             "completion_ids": torch.randint(0, 101, (B, C), generator=g),
             "completion_mask": (torch.arange(C)[None] < lengths[:, None]).long()}
    with torch.no_grad():
        logps = per_token_logps(model, batch)
    batch["old_logps"] = logps + 0.3 * torch.randn(B, C, generator=g, dtype=torch.float64)  # ratios off 1: some clip
    batch["ref_logps"] = logps + 0.5 * torch.randn(B, C, generator=g, dtype=torch.float64)
    batch["advantages"] = group_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64), G)
    return batch


@pytest.mark.parametrize("aggregation,loss_type", [("sequence", "grpo"), ("token", "dapo"), ("constant", "dr_grpo")])
@pytest.mark.parametrize("beta,kl_ratio", [(0.0, False), (0.04, False), (0.04, True)])
def test_grpo_loss_and_gradients_match_trl(trl_trainer, aggregation, loss_type, beta, kl_ratio):
    trainer, ours = trl_trainer
    batch = fixed_batch(ours)
    trainer.loss_type, trainer.beta, trainer.args.use_bias_correction_kl = loss_type, beta, kl_ratio
    inputs = {"prompt_ids": batch["prompt_ids"], "prompt_mask": batch["prompt_mask"],
              "completion_ids": batch["completion_ids"], "completion_mask": batch["completion_mask"],
              "advantages": batch["advantages"], "old_per_token_logps": batch["old_logps"],
              "ref_per_token_logps": batch["ref_logps"], "num_items_in_batch": batch["completion_mask"].sum()}
    trainer.model.zero_grad()
    want = trainer.compute_loss(trainer.model, inputs)
    want.backward()
    ours.zero_grad()
    logps = per_token_logps(ours, batch)
    got, metrics = grpo_loss(logps, batch["old_logps"], batch["ref_logps"], batch["advantages"], batch["completion_mask"],
                             epsilon=0.2, beta=beta, aggregation=aggregation, max_completion_length=C,
                             kl_ratio=kl_ratio)
    got.backward()
    assert abs(got.item() - want.item()) <= 1e-6
    theirs = dict(trainer.model.named_parameters())
    worst = max((p.grad - theirs[n].grad).abs().max().item() for n, p in ours.named_parameters() if n in theirs)
    assert worst <= 1e-6
    assert 0 < metrics["clip_fraction"] < 1  # the clip is exercised
    trl_clip = trainer._metrics["train"]["clip_ratio/region_mean"][-1]
    assert metrics["clip_fraction"] == pytest.approx(trl_clip, abs=1e-7)  # TRL counts in fp32
    if beta and not kl_ratio:  # TRL logs the KL after the ratio correction
        assert metrics["kl"] == pytest.approx(trainer._metrics["train"]["kl"][-1], rel=1e-6)


# (prompt, answer, G answers); prompts of one length: transformers' eager attention in fp64 gives nan
# on rows padded on the left
TRL_PROMPTS = [("9+8=", "17", ["17", "71", "1,17"]), ("5+7=", "12", ["1,2", "12", "21"])]


@pytest.fixture(scope="module")
def trl_checker_trainer(tmp_path_factory):
    """TRL's GRPOTrainer whose reward is qwen_min's task checker (a TRL reward function), sampling replaced by a
    rollout_func that returns fixed completions; the same tiny random Qwen2ForCausalLM (fp64) as a qm.Qwen."""
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from qwen_min.tasks.checkable import TASKS

    cfg = QwenConfig.from_name("tiny", vocab_size=101)
    hf_cfg = Qwen2Config(**cfg.to_hf_dict())
    hf_cfg._attn_implementation = "eager"
    torch.manual_seed(1)
    hf = Qwen2ForCausalLM(hf_cfg).double()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.2)
    # digits, "+", "=" and "," are single tokens with ids below 101; "!" (id 0) pads the answers, inside the vocabulary
    tok = PreTrainedTokenizerFast(tokenizer_file=str(official_tokenizer_dir() / "tokenizer.json"), pad_token="!",
                                  eos_token="<|im_end|>")
    answers = {prompt: replies for prompt, _, replies in TRL_PROMPTS}

    def rollout(prompts, trainer):  # the G rows of each prompt get its G fixed answers, in order
        seen = {}
        completions = []
        for prompt in prompts:
            completions.append(tok.encode(answers[prompt][seen.get(prompt, 0)]))
            seen[prompt] = seen.get(prompt, 0) + 1
        return {"prompt_ids": [tok.encode(p) for p in prompts], "completion_ids": completions, "logprobs": None}

    def checker(prompts, completions, task, answer, **kwargs):  # a TRL reward function: qwen_min's checkers
        return [float(TASKS[t].check(c, a)) for c, t, a in zip(completions, task, answer)]

    rows = {"prompt": [p for p, _, _ in TRL_PROMPTS], "task": ["add"] * len(TRL_PROMPTS),
            "answer": [a for _, a, _ in TRL_PROMPTS]}
    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp("trl_checker")), per_device_train_batch_size=B,
                      num_generations=G, beta=0.0, bf16=False, use_cpu=True, report_to=[], max_completion_length=C)
    with pytest.warns(UserWarning, match="rollout_func"):  # experimental in TRL 1.16, and says so
        trainer = GRPOTrainer(model=hf, reward_funcs=checker, args=args, train_dataset=Dataset.from_dict(rows),
                              processing_class=tok, rollout_func=rollout)
    trainer.current_gradient_accumulation_steps = 1
    ours = Qwen(cfg, attn_impl="eager").double()
    ours.load_state_dict(hf.state_dict())
    return trainer, ours


@pytest.mark.parametrize("aggregation,loss_type", [("sequence", "grpo"), ("token", "dapo"), ("constant", "dr_grpo")])
def test_trl_computes_the_same_advantages_from_a_checker_reward(trl_checker_trainer, aggregation, loss_type):
    """TRL scores the completions with the checker and computes the advantages itself; qwen_min's checker_reward
    and group_advantages on the same completions give the same advantages, and the same loss and gradients."""
    from qwen_min.tasks.checkable import Example, reply_text
    from qwen_min.tokenizer.bpe import Tokenizer
    from qwen_min.train.grpo import checker_reward

    trainer, ours = trl_checker_trainer
    trainer.loss_type = loss_type
    trainer.model.train()
    rows = [{"prompt": p, "task": "add", "answer": a} for p, a, _ in TRL_PROMPTS for _ in range(G)]  # TRL's sampler
    inputs = trainer._generate_and_score_completions(rows)  # TRL: rollout, decode, reward, group advantages

    tok = Tokenizer.from_pretrained(official_tokenizer_dir())
    examples = [Example("add", [{"role": "user", "content": p}, {"role": "assistant", "content": a}], a)
                for p, a, _ in TRL_PROMPTS for _ in range(G)]
    replies = [reply_text(tok, ids[mask.bool()].tolist())
               for ids, mask in zip(inputs["completion_ids"], inputs["completion_mask"])]
    assert replies == [r for _, _, group in TRL_PROMPTS for r in group]
    rewards = torch.tensor(checker_reward(examples, replies))
    assert rewards.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]  # a real reward: right and wrong answers in each group
    advantages = group_advantages(rewards, G)
    assert torch.allclose(inputs["advantages"].float(), advantages, atol=1e-6)
    assert trainer._metrics["train"]["reward"][-1] == pytest.approx(rewards.mean().item())

    trainer.model.zero_grad()
    want = trainer.compute_loss(trainer.model, inputs)
    want.backward()
    ours.zero_grad()
    batch = {k: inputs[k] for k in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")}
    got, _ = grpo_loss(per_token_logps(ours, batch), None, None, advantages.double(), batch["completion_mask"],
                       beta=0.0, aggregation=aggregation, max_completion_length=C)
    got.backward()
    assert abs(got.item() - want.item()) <= 1e-6
    theirs = dict(trainer.model.named_parameters())
    worst = max((p.grad - theirs[n].grad).abs().max().item() for n, p in ours.named_parameters() if n in theirs)
    scale = max(p.grad.abs().max().item() for p in ours.parameters())
    assert worst <= 1e-6 and scale > 1e-3  # the policy gradient is not zero, and it is TRL's


def test_group_advantages_and_k3():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.2, 0.9, 0.4])
    a = group_advantages(rewards, 3).view(3, 3)
    assert torch.allclose(a.mean(-1), torch.zeros(3), atol=1e-6)
    assert torch.equal(a[1], torch.zeros(3))  # equal rewards: no advantage
    assert torch.allclose(a[2], (rewards[6:] - rewards[6:].mean()) / (rewards[6:].std() + 1e-4))
    with pytest.raises(ValueError, match="group size"):
        group_advantages(rewards, 1)
    logps, ref = torch.randn(1000).double() - 2, torch.randn(1000).double() - 2
    assert (k3_kl(logps, ref) >= 0).all() and k3_kl(logps, logps).abs().max() == 0


def test_equal_rewards_give_no_policy_gradient():
    model = Qwen(QwenConfig.from_name("tiny", vocab_size=101)).double()
    batch = fixed_batch(model)
    logps = per_token_logps(model, batch)
    loss, _ = grpo_loss(logps, None, None, group_advantages(torch.ones(B, dtype=torch.float64), G),
                        batch["completion_mask"], beta=0.0)
    loss.backward()
    assert loss.item() == 0 and all(p.grad.abs().max() == 0 for p in model.parameters())


def test_order_by_variance():
    assert order_by_variance([0.0, 0.25, 0.1, 0.25], [0, 1, 2, 3]) == [1, 3, 2, 0]
    assert order_by_variance([0.0] * 4, [2, 0, 3, 1]) == [2, 0, 3, 1]


# ---------------------------------------------------------------------------- qwen-min grpo
@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory):
    """A tiny random Qwen and a small BPE tokenizer trained on the task conversations, saved as an --init folder."""

    folder = tmp_path_factory.mktemp("init")
    tok = train_bpe([render(ex.messages) for ex in make_examples(["count", "sort"], "train", 100)], vocab_size=300)
    torch.manual_seed(0)
    save_pretrained(Qwen(QwenConfig.from_name("tiny", vocab_size=tok.vocab_size)), folder)
    tok.save_pretrained(folder)
    return folder


def grpo_args(init, out, *extra):
    return ["grpo", "--checkpoint", str(init), "--out", str(out), "--tasks", "count,sort", "--group-size", "4",
            "--batch-size", "8", "--n-prompts", "4", "--eval-prompts", "4", "--eval-every", "2", "--max-new-tokens", "8",
            "--lr", "1e-3", "--no-progress", *extra]


def test_grpo_command_two_steps(tiny_init, tmp_path):

    assert main(grpo_args(tiny_init, tmp_path / "run", "--max-steps", "2", "--eval-every", "1")) == 0
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    for key in ("loss", "reward_mean", "reward_std", "kl", "clip_fraction", "completion_length"):
        assert key in records[0]
    assert "heldout_accuracy/mean" in records[1] and records[1]["heldout_after_steps"] == 1
    assert (tmp_path / "run" / "model" / "config.json").exists() and (tmp_path / "run" / "grpo.png").exists()


def test_grpo_resume_is_bit_identical(tiny_init, tmp_path):

    rm = tmp_path / "rm"  # a random reward model: rewards that differ within a group, so the policy moves
    save_pretrained(RewardModel(QwenConfig.from_name("tiny", vocab_size=from_pretrained(tiny_init).config.vocab_size)), rm)
    flags = ("--max-steps", "4", "--iterations", "2", "--order", "variance", "--reward-model", str(rm))
    assert main(grpo_args(tiny_init, tmp_path / "straight", *flags)) == 0
    assert main(grpo_args(tiny_init, tmp_path / "resumed", *flags, "--stop-at", "3")) == 0
    assert main(["grpo", "--out", str(tmp_path / "resumed"), "--resume", "--no-progress"]) == 0  # run.json has the rest
    drop = ("tokens_per_s",)
    straight, resumed = (read_metrics(tmp_path / name / "metrics.jsonl") for name in ("straight", "resumed"))
    assert [{k: v for k, v in r.items() if k not in drop} for r in straight] == \
        [{k: v for k, v in r.items() if k not in drop} for r in resumed]
    a, b = (from_pretrained(tmp_path / name / "model").state_dict() for name in ("straight", "resumed"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight[-1]["kl"] > 0 and any(r["clip_fraction"] > 0 for r in straight)  # the policy moved, the clip acted


def test_grpo_command_errors(tiny_init, tmp_path, capsys):

    assert main(grpo_args(tiny_init, tmp_path / "a", "--tasks", "count,juggle")) == 2
    assert "unknown task 'juggle'" in capsys.readouterr().err
    assert main(grpo_args(tiny_init, tmp_path / "b", "--group-size", "1")) == 2
    assert "--group-size must be at least 2" in capsys.readouterr().err
    assert main(grpo_args(tiny_init, tmp_path / "c", "--reward-model", str(tiny_init))) == 2  # a causal LM folder
    err = capsys.readouterr().err
    assert "not a reward model" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_grpo_real_checkpoint_lora_two_steps(gguf_path, tmp_path):
    """The documented 0.5B LoRA recipe, cut to two steps of one prompt x 2 answers: a CPU smoke test."""

    assert main(["grpo", "--checkpoint", str(gguf_path), "--lora", "--tasks", "count", "--group-size", "2", "--batch-size", "2",
                 "--n-prompts", "1", "--eval-prompts", "1", "--eval-every", "0", "--max-new-tokens", "8", "--max-steps", "2",
                 "--order", "plain", "--lr", "1e-4", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "run" / "model").iterdir()) == ["adapter.json", "adapter.safetensors"]
    assert (tmp_path / "run" / "model" / "adapter.safetensors").stat().st_size < 20e6  # adapters, not the 0.5B


# ---------------------------------------------------------------------------- chapter 11 exercises
def test_ch11_checkers_accept_right_answers_and_reject_wrong_ones():

    check_equal_rewards(lambda: (0.0, 0.0))
    with pytest.raises(ExerciseFailed, match="you predicted"):
        check_equal_rewards(lambda: (0.0, 0.1))
    check_fixed_k3(lambda lp, ref: torch.exp(ref - lp) - (ref - lp) - 1)
    with pytest.raises(ExerciseFailed, match="wrong"):  # the notebook's planted bug: the ratio upside down
        check_fixed_k3(lambda lp, ref: torch.exp(lp - ref) - (lp - ref) - 1)
    for name, answers in PACKAGE_EQUIVALENTS.items():
        checker = {"check_fixed_k3": check_fixed_k3}[name]
        for answer in answers:
            with pytest.raises(ExerciseFailed, match="package's own"):
                checker(answer)


def test_lora_reference_is_the_base_model():

    torch.manual_seed(0)
    model = Qwen(QwenConfig.from_name("tiny", vocab_size=101))
    ids = torch.randint(0, 101, (2, 9))
    before = model(ids)
    apply_lora(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # the adapters have trained
    assert not torch.equal(model(ids), before)
    assert torch.equal(AdaptersOff(model)(ids), before) and not torch.equal(model(ids), before)  # scaling restored
