"""SFT: assistant-only masks token by token, splits, padding, the task checkers, LoRA, and `qwen-min sft` resume."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import qwen_min as qm
import qwen_min.tasks.checkable as tasks
from qwen_min.model.lora import LoRALinear, apply_lora, lora_parameters, merge_lora
from qwen_min.model.qwen import IGNORE_INDEX
from qwen_min.train.batches import pad_batch
from qwen_min.train.sft import SFTBatches, encode_chat

SYSTEM = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"


@pytest.fixture(scope="module")
def tok(official_tokenizer_dir):
    return qm.Tokenizer.from_pretrained(official_tokenizer_dir)


def hand_built(tok, segments):
    """Expected (ids, labels) from literal ChatML pieces, each encoded on its own: (text, trained?)."""
    ids, labels = [], []
    for text, trained in segments:
        piece = tok.encode(text, allowed_special="all")
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    return ids, labels


def test_single_turn_mask(tok):
    messages = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}]
    want = hand_built(tok, [(SYSTEM + "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n", False),
                            ("5<|im_end|>", True), ("\n", False)])
    assert encode_chat(tok, messages) == want


def test_multi_turn_mask_with_system_prompt(tok):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "猫 in English?"}, {"role": "assistant", "content": "cat"}]
    want = hand_built(tok, [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", False),
        ("Hello!<|im_end|>", True),
        ("\n<|im_start|>user\n猫 in English?<|im_end|>\n<|im_start|>assistant\n", False),
        ("cat<|im_end|>", True), ("\n", False)])
    ids, labels = encode_chat(tok, messages)
    assert (ids, labels) == want
    assert labels.count(tok.im_end_id) == 2  # each reply learns to stop; the system/user <|im_end|> are not trained


def test_tool_call_mask(tok, official_tokenizer_dir):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {
                    "name": "get_weather", "arguments": {"city": "Paris"}}}]},
                {"role": "tool", "content": "sunny"},
                {"role": "assistant", "content": "Sunny."}]
    tool_system = ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n"
                   "You may call one or more functions to assist with the user query.\n\nYou are provided with function "
                   "signatures within <tools></tools> XML tags:\n<tools>\n"
                   '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}\n</tools>\n\n'
                   "For each function call, return a json object with function name and arguments within "
                   "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
                   "<args-json-object>}\n</tool_call><|im_end|>\n")
    want = hand_built(tok, [
        (tool_system + "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n", False),
        ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>', True),
        ("\n<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n", False),
        ("Sunny.<|im_end|>", True), ("\n", False)])
    assert encode_chat(tok, messages, tools) == want
    # the ids are what transformers' apply_chat_template gives serving stacks and training libraries
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(official_tokenizer_dir)
    assert want[0] == hf.apply_chat_template(messages, tools=tools, tokenize=True)["input_ids"]


def test_mask_with_a_trained_tokenizer_covers_exactly_the_replies(tok):
    examples = tasks.handwritten()
    small = qm.train_bpe([tok.render_chat(ex.messages, ex.tools) for ex in examples], vocab_size=400)
    for ex in examples:
        ids, labels = encode_chat(small, ex.messages, ex.tools)
        assert small.encode(small.render_chat(ex.messages, ex.tools), allowed_special="all") == ids
        trained = small.decode([i for i, label in zip(ids, labels) if label != IGNORE_INDEX])
        replies = [m for m in ex.messages if m["role"] == "assistant"]
        # every reply ends in <|im_end|>, and the trained text is the replies' rendering, turn after turn
        assert trained.count("<|im_end|>") == len(replies)
        for message, text in zip(replies, trained.split("<|im_end|>")):
            assert text == small.render_chat([{"role": "user", "content": ""}, message])[len(
                small.render_chat([{"role": "user", "content": ""}], add_generation_prompt=True)):].removesuffix("<|im_end|>\n")


def test_conversation_starting_with_the_assistant_is_refused(tok):
    with pytest.raises(ValueError, match="start with an assistant"):
        encode_chat(tok, [{"role": "assistant", "content": "Hi"}])


def test_right_padding_keeps_logits_and_loss():
    torch.manual_seed(0)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=97)).eval()
    rows = [([5, 6, 7, 8, 9, 10], [IGNORE_INDEX, IGNORE_INDEX, 7, 8, IGNORE_INDEX, 10]), ([11, 12, 13], [IGNORE_INDEX, 12, 13])]
    batch = pad_batch(rows, pad_id=3)
    assert batch["input_ids"][1].tolist() == [11, 12, 13, 3, 3, 3]
    assert batch["labels"][1].tolist() == [IGNORE_INDEX, 12, 13] + [IGNORE_INDEX] * 3
    with torch.no_grad():
        logits, loss = model(batch["input_ids"], labels=batch["labels"])
        per_row = [model(torch.tensor([ids]))[0] for ids, _ in rows]
    torch.testing.assert_close(logits[1, :3], per_row[1], atol=1e-6, rtol=0)
    # the batch loss is the mean over the 5 trained tokens of both rows, computed here row by row
    terms = [F.cross_entropy(out[:-1], torch.tensor(lab[1:]), ignore_index=IGNORE_INDEX, reduction="sum")
             for out, (_, lab) in zip(per_row, rows)]
    torch.testing.assert_close(loss, sum(terms) / 5, atol=1e-6, rtol=0)


def test_no_test_prompt_in_training_data():
    train = {ex.messages[0]["content"] for ex in tasks.make_examples(tasks.GENERATED, "train", 2000, seed=0)}
    train |= {m["content"] for ex in tasks.handwritten() for m in ex.messages if m["role"] == "user"}
    for seed in (0, 1, 7):
        test = [ex.messages[0]["content"] for ex in tasks.make_examples(tasks.GENERATED, "test", 40, seed=seed)]
        dpo = [ex.messages[0]["content"] for ex in tasks.make_examples(tasks.GENERATED, "dpo", 40, seed=seed)]
        assert not train & set(test) and not train & set(dpo) and not set(test) & set(dpo)
        assert len(set(test)) == len(test)  # evaluation prompts are distinct
    generated = {ex.messages[0]["content"] for ex in tasks.make_examples(tasks.GENERATED, "train", 100, seed=5)}
    assert {tasks.split_of(p) for p in generated} == {"train"}


def test_examples_are_deterministic_and_right():
    a = tasks.make_examples(tasks.GENERATED, "test", 20, seed=3)
    assert [ex.to_json() for ex in a] == [ex.to_json() for ex in tasks.make_examples(tasks.GENERATED, "test", 20, seed=3)]
    assert [ex.to_json() for ex in a] != [ex.to_json() for ex in tasks.make_examples(tasks.GENERATED, "test", 20, seed=4)]
    for ex in a:  # the reference reply passes its own checker; another example's answer (mostly) fails
        assert tasks.TASKS[ex.task].check(ex.reference_reply, ex.answer), ex
    wrong = sum(tasks.TASKS[x.task].check(x.reference_reply, y.answer) for x, y in zip(a, a[7:] + a[:7]) if x.task == y.task)
    assert wrong <= len(a) // 10


def test_checkers():
    assert tasks.check_last_number("9 + 4 - 3 = 10. The answer is 10.", "10")
    assert not tasks.check_last_number("9 + 4 - 3 = 10. The answer is 11.", "10")
    assert not tasks.check_last_number("The answer is", "10")
    assert tasks.check_exact("C, a, b.", "c, a, b") and not tasks.check_exact("c, b", "c, a, b")
    assert tasks.check_contains("It is RAINING.", "raining")
    for ex in tasks.handwritten():
        assert tasks.TASKS[ex.task].check(ex.reference_reply, ex.answer), ex.meta


def test_unknown_task_and_small_split_errors():
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        tasks.make_examples(["nope"], "train", 1)
    with pytest.raises(ValueError, match="unknown split"):
        tasks.make_examples(["add"], "val", 1)
    with pytest.raises(ValueError, match="distinct test prompts"):
        tasks.make_examples(["en_zh"], "test", 500)


def test_batches_resume_and_shard(tok):
    examples = tasks.make_examples(["add", "sort"], "train", 10, seed=0)
    a = SFTBatches(tok, examples, batch_size=3, seed=1)
    first = [a.next_batch() for _ in range(4)]
    state = a.state_dict()
    rest = [a.next_batch() for _ in range(5)]  # crosses an epoch boundary (20 rows, 3 per batch)
    b = SFTBatches(tok, examples, batch_size=3, seed=1)
    b.load_state_dict(state)
    for x, y in zip(rest, [b.next_batch() for _ in range(5)]):
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"])
    # two processes of batch 3 see, between them, the rows one process of batch 6 sees
    one = SFTBatches(tok, examples, batch_size=6, seed=1).next_batch()
    two = [SFTBatches(tok, examples, batch_size=3, seed=1, rank=r, world_size=2).next_batch() for r in range(2)]
    rows = lambda batch: [tuple(r[r != tok.pad_id].tolist()) for r in batch["input_ids"]]  # noqa: E731
    assert rows(one) == rows(two[0]) + rows(two[1])
    assert first[0]["input_ids"].shape[0] == 3


# ---------------------------------------------------------------------------- LoRA
def _lora_model(seed=0):
    torch.manual_seed(seed)
    model = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=101))
    apply_lora(model, rank=4, alpha=8)
    with torch.no_grad():  # B starts at zero; give it values so the update is not trivially zero
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.normal_(0, 0.05)
    return model.eval()


def test_lora_trains_only_adapters():
    model = _lora_model()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert len(trainable) == 2 * 7 * 2  # 7 projections in each of 2 layers
    assert lora_parameters(model) == sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = torch.randint(0, 101, (2, 9))
    _, loss = model.train()(ids, labels=ids)
    loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable


def test_lora_zero_init_is_the_base_model():
    torch.manual_seed(0)
    base = qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=101)).eval()
    ids = torch.randint(0, 101, (2, 9))
    want = base(ids)
    apply_lora(base, rank=4, alpha=8)
    assert torch.equal(base(ids), want)


def test_lora_merged_equals_unmerged_and_saves_plain_weights(tmp_path):
    model = _lora_model()
    ids = torch.randint(0, 101, (3, 11))
    with torch.no_grad():
        unmerged = model(ids)
        merge_lora(model)
        merged = model(ids)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert (merged - unmerged).abs().max().item() <= 1e-5
    qm.save_pretrained(model, tmp_path)
    reloaded = qm.from_pretrained(tmp_path)
    with torch.no_grad():
        assert (reloaded(ids) - unmerged).abs().max().item() <= 1e-5


# ---------------------------------------------------------------------------- the command
def _sft(out, tokenizer, *extra):
    from qwen_min.cli import main

    return main(["sft", "--size", "tiny", "--tokenizer", str(tokenizer), "--out", str(out), "--tasks", "add,reverse",
                 "--n-train", "16", "--n-test", "4", "--handwritten-repeat", "1", "--batch-size", "4", "--max-steps", "6",
                 "--lr", "1e-3", "--save-every", "3", "--max-new-tokens", "4", *extra])


def _losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sft_command_resume_is_bit_identical(tmp_path, capsys):
    from qwen_min.tokenizer.chat_template import render

    small = qm.train_bpe([render(ex.messages, ex.tools) for ex in tasks.handwritten()], vocab_size=300)
    small.save_pretrained(tmp_path / "tok")
    assert _sft(tmp_path / "one", tmp_path / "tok") == 0
    assert _sft(tmp_path / "two", tmp_path / "tok", "--stop-at", "3") == 0
    assert len(_losses(tmp_path / "two")) == 3
    run_json = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run_json["tasks"] == "add,reverse" and run_json["max_steps"] == 6 and run_json["lr"] == 1e-3
    from qwen_min.cli import main

    assert main(["sft", "--out", str(tmp_path / "two"), "--resume"]) == 0  # every setting from run.json
    assert _losses(tmp_path / "one") == _losses(tmp_path / "two")
    report = json.loads((tmp_path / "two" / "eval.json").read_text())
    assert set(report["before"]) == set(report["after"]) == {"add", "reverse"}
    assert (tmp_path / "two" / "model" / "tokenizer.json").exists() and (tmp_path / "two" / "loss.png").exists()
    model = qm.from_pretrained(tmp_path / "two" / "model")
    assert model.config.num_hidden_layers == 2


def test_sft_command_bad_input(tmp_path, capsys):
    from qwen_min.cli import main

    assert main(["sft", "--size", "tiny", "--out", str(tmp_path), "--tasks", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert main(["sft", "--out", str(tmp_path / "empty"), "--resume"]) == 2  # nothing to resume
    assert "no checkpoint to resume from" in capsys.readouterr().err
    assert main(["sft", "--out", str(tmp_path / "neither")]) == 2
    assert "exactly one of --checkpoint" in capsys.readouterr().err


# ---------------------------------------------------------------------------- exercise checkers



@pytest.mark.slow
def test_lora_sft_of_the_real_checkpoint_lowers_the_loss(tmp_path, gguf_path):
    """The 0.5B checkpoint, LoRA on CPU: a few steps on one repeated batch must lower the loss; the save is merged."""
    import shutil

    from qwen_min.cli import main

    args = ["sft", "--checkpoint", str(gguf_path), "--lora", "--out", str(tmp_path / "run"), "--tasks", "en_zh", "--n-train", "2",
            "--handwritten-repeat", "0", "--batch-size", "2", "--max-steps", "4", "--lr", "1e-3", "--warmup-steps", "0",
            "--no-eval", "--no-progress"]
    assert main(args) == 0
    losses = _losses(tmp_path / "run")
    assert losses[-1] < losses[0] * 0.9, losses
    names = json.loads((tmp_path / "run" / "model" / "model.safetensors.index.json").read_text())["weight_map"] \
        if (tmp_path / "run" / "model" / "model.safetensors.index.json").exists() else None
    assert names is None or not any("lora" in n for n in names)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "run" / "model" / "model.safetensors"), "pt") as f:
        assert not any("lora" in k for k in f.keys()) and "model.layers.0.self_attn.q_proj.weight" in f.keys()
    shutil.rmtree(tmp_path / "run")  # 2.5 GB of merged fp32 weights
