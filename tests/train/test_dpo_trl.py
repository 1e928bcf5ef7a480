"""DPO against TRL 1.16's DPOTrainer itself: loss, metrics and gradients on one fixed batch of pairs.

TRL computes its side with its own code: `DPOTrainer` tokenises the pairs with the official tokenizer's chat
template, collates them ([chosen rows, rejected rows], right-padded) and runs `compute_loss` (its fused LM head,
its sigmoid loss, its metrics) on a tiny random `Qwen2ForCausalLM`. qwen_min runs `completion_logps` and
`dpo_loss` on the same token ids with the same weights (a `qm.Qwen` saved with `qm.save_pretrained` and loaded
by transformers), using TRL's completion mask as its labels.

One difference is by design and is asserted too: TRL's completion mask also covers the `\\n` after the
answer's `<|im_end|>`; chapter 9's masks (`encode_chat`, used by `encode_pair`) leave it out, because generation
stops at `<|im_end|>` and the model never writes that newline.
"""

import pytest
import torch

import qwen_min as qm
from qwen_min.model.qwen import IGNORE_INDEX
from qwen_min.paths import official_tokenizer_dir
from qwen_min.tokenizer.bpe import Tokenizer
from qwen_min.train.dpo import completion_logps, encode_pair

PAIRS = [
    {"prompt": [{"role": "user", "content": "Add 2 and 3."}],
     "chosen": [{"role": "assistant", "content": "5"}], "rejected": [{"role": "assistant", "content": "six, I think"}]},
    {"prompt": [{"role": "user", "content": "Sort: 3, 1, 2"}],
     "chosen": [{"role": "assistant", "content": "1, 2, 3"}], "rejected": [{"role": "assistant", "content": "3, 2"}]},
    {"prompt": [{"role": "user", "content": "Reverse: a, b, c"}],
     "chosen": [{"role": "assistant", "content": "c, b, a"}], "rejected": [{"role": "assistant", "content": "a, b, c"}]},
]
BETA = 0.1
pytestmark = pytest.mark.slow  # transformers + TRL imports and a DPOTrainer: ~45 s on a loaded 2-core machine


@pytest.fixture(scope="module")
def trl_run(tmp_path_factory):
    """TRL's loss, metrics and policy gradients on the batch, and our models holding the same weights."""
    from datasets import Dataset
    from transformers import AutoTokenizer, Qwen2ForCausalLM
    from trl import DPOConfig, DPOTrainer

    tmp = tmp_path_factory.mktemp("dpo_trl")
    torch.manual_seed(0)
    cfg = qm.QwenConfig.from_name("tiny")  # the official 151,936-row vocabulary, 2 layers, 64 wide
    policy, reference = qm.Qwen(cfg), qm.Qwen(cfg)  # different weights: the log-ratios are not 0
    qm.save_pretrained(policy, tmp / "policy")
    qm.save_pretrained(reference, tmp / "reference")
    hf_policy = Qwen2ForCausalLM.from_pretrained(tmp / "policy", dtype=torch.float32)
    hf_reference = Qwen2ForCausalLM.from_pretrained(tmp / "reference", dtype=torch.float32)
    args = DPOConfig(output_dir=str(tmp / "trl"), beta=BETA, loss_type=["sigmoid"], bf16=False, use_cpu=True,
                     per_device_train_batch_size=len(PAIRS), report_to=[], max_steps=1)
    trainer = DPOTrainer(model=hf_policy, ref_model=hf_reference, args=args, train_dataset=Dataset.from_list(PAIRS),
                         processing_class=AutoTokenizer.from_pretrained(official_tokenizer_dir()))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])  # in order, not shuffled
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    grads = {name: p.grad for name, p in hf_policy.named_parameters()}
    return {"batch": batch, "loss": loss.item(), "metrics": metrics, "grads": grads,
            "policy": policy, "reference": reference}


def test_loss_metrics_and_gradients_equal_trl(trl_run):
    batch, policy, reference = trl_run["batch"], trl_run["policy"], trl_run["reference"]
    n = len(PAIRS)
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, IGNORE_INDEX)  # (2n, t)
    logps = completion_logps(policy(batch["input_ids"]), labels)  # (2n,): chosen rows, then rejected rows
    with torch.no_grad():
        ref = completion_logps(reference(batch["input_ids"]), labels)
    loss, metrics = qm.dpo_loss(logps[:n], logps[n:], ref[:n], ref[n:], beta=BETA)
    loss.backward()

    assert abs(loss.item() - trl_run["loss"]) <= 1e-6
    assert abs(loss.item() - 0.6931) > 1e-3  # policy != reference: a real comparison, not log 2 on both sides
    for key, value in metrics.items():  # rewards/chosen, rejected, accuracies, margins; logps/chosen, rejected
        assert abs(value - trl_run["metrics"][key]) <= 1e-6 * max(1.0, abs(value)), key
    ours = dict(policy.named_parameters())
    assert set(ours) == set(trl_run["grads"])
    worst = max((ours[name].grad - g).abs().max().item() for name, g in trl_run["grads"].items())
    scale = max(g.abs().max().item() for g in trl_run["grads"].values())
    assert worst <= 1e-5 * scale, (worst, scale)


def test_same_tokens_as_trl_and_one_newline_less_trained(trl_run):
    batch = trl_run["batch"]
    tok = Tokenizer.from_pretrained(official_tokenizer_dir())
    newline = tok.encode("\n")
    rows = [encode_pair(tok, pair) for pair in PAIRS]
    for i, (ids, labels) in enumerate([c for c, _ in rows] + [r for _, r in rows]):  # TRL's order
        length = int(batch["attention_mask"][i].sum())
        assert batch["input_ids"][i, :length].tolist() == ids  # the same rendering and tokens as the official template
        trl_trained = batch["completion_mask"][i, :length].nonzero().flatten().tolist()
        ours = [k for k, label in enumerate(labels) if label != IGNORE_INDEX]
        assert trl_trained == ours + [length - 1] and ids[-1:] == newline  # TRL also trains the final '\n'
