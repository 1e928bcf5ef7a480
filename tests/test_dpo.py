"""DPO: the loss and its gradients against the formula TRL implements (FACTS.md section 5), on real masked batches."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

import qwen_min as qm
from qwen_min.dpo import completion_logps

BETA = 0.1
VOCAB = 300


def tiny_model(seed: int) -> qm.Qwen:
    torch.manual_seed(seed)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=VOCAB)).double()
    with torch.no_grad():  # sharper than the 0.02 initialisation, so log-probs differ between sequences
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def make_pairs(seed: int, n: int = 4) -> list[tuple[list[int], list[int], list[int]]]:
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
    """FACTS.md section 5: -logsigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), averaged over pairs."""
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
    pairs = make_pairs(seed)
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
    pairs = make_pairs(3, n=5)
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
