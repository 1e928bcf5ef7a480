"""Generation on a small random model: KV-cache decoding vs recomputing everything, batched vs one prompt
at a time, transformers' `generate` and logits processors as the reference, seeded sampling, stop tokens,
streaming, the context limit, and the `generate` / `chat` commands."""

from __future__ import annotations

import copy
import io
import json
import re

import numpy as np
import pytest
import torch

import qwen_min as qm
from qwen_min import chat_command
from qwen_min.cli import main as cli_main
from qwen_min.generation import candidate_logits, chat_defaults, generate, pick, process_logits
from qwen_min.quant.quantize import to_format

CFG = qm.QwenConfig.from_name("tiny", max_position_embeddings=256)  # the official 151,936-row vocabulary


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = qm.Qwen(CFG).eval()
    with torch.no_grad():  # larger weights than the init, so greedy replies vary instead of repeating one token
        for p in m.parameters():
            p.normal_(0, 0.3 if p.dim() == 2 else 0.1).add_(1.0 if p.dim() == 1 else 0.0)
    return m


@pytest.fixture(scope="module")
def hf_model(model):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    hf = Qwen2ForCausalLM(Qwen2Config(**CFG.to_hf_dict())).eval()
    hf.load_state_dict(model.state_dict())
    return hf


@pytest.fixture(scope="module")
def tok(official_tokenizer_dir):
    return qm.Tokenizer.from_pretrained(official_tokenizer_dir)


PROMPTS = [[9707, 11, 1879, 0, 358], [785, 3974, 13876, 38835], [151644, 872, 198, 13048, 1052, 30, 151645, 198, 151644]]


def hf_greedy(hf, prompt, n, **kw):
    ids = torch.tensor([prompt])
    out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False, eos_token_id=None,
                      pad_token_id=0, **kw)
    return out[0, len(prompt):].tolist()


def test_greedy_matches_transformers(model, hf_model):
    for prompt in PROMPTS:
        ours = generate(model, prompt, max_new_tokens=20, stop_ids=())
        assert ours == hf_greedy(hf_model, prompt, 20)
        assert len(set(ours)) > 3  # a reply that varies, so the comparison means something
    ours = generate(model, PROMPTS[0], max_new_tokens=20, stop_ids=(), repetition_penalty=1.3)
    assert ours == hf_greedy(hf_model, PROMPTS[0], 20, repetition_penalty=1.3)
    assert ours != generate(model, PROMPTS[0], max_new_tokens=20, stop_ids=())


def test_batched_left_padding_matches_transformers_and_single(model, hf_model):
    batch = generate(model, PROMPTS, max_new_tokens=12, stop_ids=())
    assert batch == [generate(model, p, max_new_tokens=12, stop_ids=()) for p in PROMPTS]
    width = max(map(len, PROMPTS))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS])
    hf = hf_model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert batch == hf[:, width:].tolist()


def test_kv_cache_decoding_equals_full_recompute(model):
    prompt, n = PROMPTS[1], 16
    cached = generate(model, prompt, max_new_tokens=n, stop_ids=())
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):  # no cache: the whole sequence again at every step
            ids.append(model(torch.tensor([ids]))[0, -1].argmax().item())
    assert cached == ids[len(prompt):]


def test_logits_processing_matches_transformers():
    from transformers import (
        LogitsProcessorList,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 1000, generator=g) * 3
    history = torch.randint(0, 1000, (3, 50), generator=g)
    seen = torch.zeros(3, 1000, dtype=torch.bool).scatter_(1, history, True)
    settings = [(0.7, 20, 0.8, 1.1), (1.3, None, 0.5, 1.0), (0.5, 5, None, 2.0), (1.0, None, 0.95, 1.0)]
    for temperature, top_k, top_p, penalty in settings:
        ours = process_logits(logits, seen, temperature, top_k, top_p, penalty)
        processors = [RepetitionPenaltyLogitsProcessor(penalty)] if penalty != 1.0 else []
        processors += [TemperatureLogitsWarper(temperature)]
        processors += [TopKLogitsWarper(top_k)] if top_k else []
        processors += [TopPLogitsWarper(top_p)] if top_p else []
        want = LogitsProcessorList(processors)(history, logits.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(want))
        kept = ~torch.isinf(want)
        assert torch.allclose(ours[kept], want[kept], atol=1e-6)
        assert kept.sum(-1).min() >= 1


def test_seeded_sampling_is_reproducible(model):
    kw = dict(max_new_tokens=24, stop_ids=(), temperature=1.0, top_k=50, top_p=0.95)
    a = generate(model, PROMPTS[0], seed=1, **kw)
    assert a == generate(model, PROMPTS[0], seed=1, **kw)
    assert a == generate(model, PROMPTS[0], generator=torch.Generator().manual_seed(1), **kw)
    assert a != generate(model, PROMPTS[0], seed=2, **kw)
    assert generate(model, PROMPTS[0], seed=3, max_new_tokens=10, stop_ids=(), temperature=1.0, top_k=1) == \
        generate(model, PROMPTS[0], max_new_tokens=10, stop_ids=())  # top-k 1 leaves nothing to chance


def test_pick_draws_only_kept_tokens():
    raw = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    values, ids = candidate_logits(raw, top_k=10, top_p=0.6)
    full = process_logits(raw, top_k=10, top_p=0.6)
    draws = torch.stack([pick(values, ids, 1.0, torch.Generator().manual_seed(s)) for s in range(50)])  # (50, 4)
    assert not torch.isinf(full.gather(1, draws.T)).any()
    assert len(set(draws[:, 0].tolist())) > 1
    assert torch.equal(pick(values, ids, 0.0), raw.argmax(-1))
    assert torch.equal(pick(raw, None, 0.0), raw.argmax(-1))


def test_stop_tokens(model):
    free = generate(model, PROMPTS, max_new_tokens=15, stop_ids=())
    stop = free[0][5]
    stopped = generate(model, PROMPTS, max_new_tokens=15, stop_ids=(stop,))
    for row, full in zip(stopped, free):
        assert row == (full[:full.index(stop)] if stop in full else full)  # the stop token itself is not returned
    assert stopped[0] == free[0][:free[0].index(stop)]


def test_rows_leave_the_batch_when_they_stop(model, monkeypatch):
    """Rows that stop early are dropped from the batch (cache, mask, penalty rows); the others go on unchanged."""
    free = generate(model, PROMPTS, max_new_tokens=15, stop_ids=(), repetition_penalty=1.3)
    shrinks = []
    keep_rows = qm.KVCache.keep_rows
    monkeypatch.setattr(qm.KVCache, "keep_rows", lambda self, index: (shrinks.append(index.tolist()), keep_rows(self, index)))
    stopped = generate(model, PROMPTS, max_new_tokens=15, stop_ids=(), repetition_penalty=1.3,
                       stop_when=lambda ids: ids in (free[0][:3], free[2][:7]))
    assert stopped == [free[0][:3], free[1], free[2][:7]]
    assert shrinks == [[1, 2], [0]]  # row 0 leaves after 3 tokens, row 2 (then at index 1) after 7


def test_streaming_text_equals_final_decode(model, tok):
    pieces = []
    ids = generate(model, tok.encode("Hello"), max_new_tokens=60, temperature=1.5, seed=0, stop_ids=(),
                   tokenizer=tok, on_text=pieces.append)
    assert "".join(pieces) == tok.decode(ids)
    assert len(pieces) > 10  # streamed, not delivered at the end
    assert any(len(tok.token_bytes(i).decode("utf-8", errors="ignore")) == 0 for i in ids)  # a token cut a character


def test_refuses_beyond_context_and_bad_input(model, tok):
    with pytest.raises(ValueError, match="exceeds the model's context length of 256"):
        generate(model, [1] * 200, max_new_tokens=57)
    assert len(generate(model, [1] * 200, max_new_tokens=56, stop_ids=())) == 56
    with pytest.raises(ValueError, match="non-empty prompt"):
        generate(model, [])
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        generate(model, [CFG.vocab_size])
    with pytest.raises(ValueError, match="needs tokenizer="):
        generate(model, [1, 2], on_text=print)


def test_chat_defaults_follow_generation_config(tmp_path, official_tokenizer_dir):
    official = json.loads((official_tokenizer_dir / "generation_config.json").read_text())
    preset = chat_defaults()
    assert preset["temperature"] == official["temperature"] and preset["top_p"] == official["top_p"]
    assert preset["top_k"] == official["top_k"] and preset["repetition_penalty"] == official["repetition_penalty"]
    assert preset["stop_ids"] == tuple(official["eos_token_id"])
    (tmp_path / "g.json").write_text(json.dumps({"do_sample": False, "temperature": 0.3, "eos_token_id": 7}))
    assert chat_defaults(tmp_path / "g.json") == {"temperature": 0.0, "top_k": None, "top_p": None,
                                                  "repetition_penalty": 1.0, "stop_ids": (7,)}


# ---------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def folder(model, tmp_path_factory, official_tokenizer_dir):
    out = tmp_path_factory.mktemp("tiny_ckpt")
    qm.save_pretrained(model, out)
    qm.Tokenizer.from_pretrained(official_tokenizer_dir).save_pretrained(out)
    return out


def test_generate_command(folder, model, tok, capsys):
    """The text alone on stdout; its token count, time and tok/s on stderr."""
    assert cli_main(["generate", "--checkpoint", str(folder), "--max-new-tokens", "8", "Hello"]) == 0
    want = generate(model, tok.encode("Hello"), max_new_tokens=8)
    captured = capsys.readouterr()
    assert captured.out == tok.decode(want) + "\n"
    timing = re.search(r"^(\d+) new tokens? in [\d.]+ s, [\d.]+ tok/s \(prefill included\)(.*)$", captured.err, re.M)
    assert int(timing.group(1)) == len(want)
    assert (timing.group(2) == "; stopped at --max-new-tokens") == (len(want) == 8)
    assert cli_main(["generate", "--checkpoint", str(folder)]) == 2
    assert "needs a prompt" in capsys.readouterr().err


def test_generate_command_format_auto(folder, model, tok, capsys):
    """--format auto measures the formats, says which it took, and generates what that format generates."""
    assert cli_main(["generate", "--checkpoint", str(folder), "--max-new-tokens", "8", "--format", "auto", "Hello"]) == 0
    captured = capsys.readouterr()
    chosen = re.search(r"format auto: (\w+) decodes 1 row fastest here", captured.err).group(1)
    by_hand = to_format(copy.deepcopy(model), chosen)
    assert captured.out == tok.decode(generate(by_hand, tok.encode("Hello"), max_new_tokens=8)) + "\n"
    # the flag's older name still works, and says what to write instead
    assert cli_main(["generate", "--checkpoint", str(folder), "--max-new-tokens", "8", "--dtype", chosen, "Hello"]) == 0
    again = capsys.readouterr()
    assert again.out == captured.out and "--dtype is now --format" in again.err


def test_chat_command(folder, model, tok, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi there\n/reset\nHi there\n"))  # then EOF
    args = ["chat", "--checkpoint", str(folder), "--max-new-tokens", "6", "--temperature", "0", "--system", "Be brief."]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    prompt = tok.encode(tok.render_chat(messages, add_generation_prompt=True), allowed_special="all")
    reply_ids = generate(model, prompt, max_new_tokens=6)
    reply = tok.decode(reply_ids)
    assert out.count(reply) == 2  # the same first turn twice: /reset forgot the first exchange
    assert "(history cleared)" in out
    assert len(reply_ids) == 6 and out.count(reply + " [cut at 6 tokens]\n") == 2  # a reply stopped by the limit says so
    assert out.endswith(">>> \nbye\n")  # the end of the input ends the line, says bye and exits 0


def test_replies_end_at_the_checkpoints_own_end_tokens(tmp_path, monkeypatch):
    """A model trained with a tokenizer of its own (`qwen-min pretrain`) has its own <|im_end|> id, not Qwen's 151645:
    generate and chat stop at the ids of the checkpoint's tokenizer."""
    tok = qm.train_bpe(["How many times does b appear in: b, a, b? 2"] * 20, 300)
    qm.save_pretrained(qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=300)), tmp_path)
    tok.save_pretrained(tmp_path)
    seen = []
    monkeypatch.setattr(chat_command, "generate", lambda *args, **kwargs: seen.append(kwargs["stop_ids"]) or [])
    assert cli_main(["generate", "--checkpoint", str(tmp_path), "--chat", "hi"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\n"))
    assert cli_main(["chat", "--checkpoint", str(tmp_path)]) == 0
    assert seen == [tok.stop_ids] * 2
    assert tok.added_tokens["<|im_end|>"] in tok.stop_ids and not set(tok.stop_ids) & {151645, 151643}


# ---------------------------------------------------------------------------- notebook 06 exercise checkers
def test_ch06_checkers_reject_wrong_answers():
    import gguf

    from qwen_min.course.exercises import ExerciseFailed
    from qwen_min.course.exercises.ch06_checkpoint import check_dequantize_q5_0
    from qwen_min.course.exercises.ch06a_generation import check_greedy_decode, check_top_p

    def q5_without_fifth_bit(blocks):  # forgets the high bits in bytes 2-5
        d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
        low = np.concatenate([blocks[:, 6:] & 0x0F, blocks[:, 6:] >> 4], axis=1).astype(np.int32)
        return d * (low - 16)

    with pytest.raises(ExerciseFailed, match="dequantize_q5_0: wrong on input 1"):
        check_dequantize_q5_0(q5_without_fifth_bit)
    with pytest.raises(ExerciseFailed, match="calls the package's own dequantize"):  # gguf's answer is refused
        check_dequantize_q5_0(lambda b: gguf.quants.dequantize(b, gguf.GGMLQuantizationType.Q5_0))
    with pytest.raises(ExerciseFailed, match="top_p: wrong"):  # a cumulative sum in vocabulary order, not sorted
        check_top_p(lambda logits, p: logits.masked_fill(logits.softmax(-1).cumsum(-1) > p, float("-inf")))
    with pytest.raises(ExerciseFailed, match="calls the package's own"):
        check_top_p(lambda logits, p: process_logits(logits, top_p=p))
    with pytest.raises(ExerciseFailed, match="calls the package's own generate"):  # refused before it is judged wrong
        check_greedy_decode(lambda m, prompt, n: prompt + generate(m, prompt, max_new_tokens=n, stop_ids=()))
    with pytest.raises(ExerciseFailed, match="not implemented"):
        check_greedy_decode(lambda m, prompt, n: (_ for _ in ()).throw(NotImplementedError))
    with pytest.raises(ExerciseFailed, match="calls the package's own"):
        check_greedy_decode(lambda m, prompt, n: generate(m, prompt, max_new_tokens=n, stop_ids=()))
