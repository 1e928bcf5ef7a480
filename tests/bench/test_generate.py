"""`qwen-min bench generate`'s bandwidth floor: the bytes a decode step reads (weights, a tied LM head's whole table,
the KV cache) and the definition printed with it."""

from __future__ import annotations

import pytest
import torch

import qwen_min as qm
from qwen_min.bench.generation_speed import FLOOR_HEADER, bytes_per_token, memory_bandwidth
from qwen_min.cli import main
from qwen_min.quant.quantize import weight_bytes


@pytest.mark.parametrize("tied", [False, True])
def test_bytes_per_token_counts_weights_head_and_kv_cache(tied):
    cfg = qm.QwenConfig.from_name("tiny", vocab_size=300, tie_word_embeddings=tied)
    model = qm.Qwen(cfg)
    table = 300 * cfg.hidden_size * 4
    kv_per_position = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 4  # keys + values, fp32
    matrices = sum(p.numel() * 4 for name, p in model.named_parameters() if "embed_tokens" not in name)
    # the embedding lookup reads one row; the LM head reads a whole table, its own (in `matrices`) or the tied one
    assert weight_bytes(model) == matrices + cfg.hidden_size * 4
    assert bytes_per_token(model) == matrices + cfg.hidden_size * 4 + (table if tied else 0)
    assert bytes_per_token(model, context=100, rows=3) == bytes_per_token(model) + 3 * 100 * kv_per_position


def test_bandwidth_is_positive_and_the_floor_is_defined_where_it_is_printed(tmp_path, official_tokenizer_dir, capsys):
    assert memory_bandwidth("cpu", nbytes=2**22, repeats=1) > 0
    torch.manual_seed(0)
    qm.save_pretrained(qm.Qwen(qm.QwenConfig.from_name("tiny", vocab_size=151936)), tmp_path)
    qm.Tokenizer.from_pretrained(official_tokenizer_dir).save_pretrained(tmp_path)
    assert main(["bench", "generate", "--checkpoint", str(tmp_path), "--formats", "fp32", "--prompt-tokens", "4",
                 "--new-tokens", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert FLOOR_HEADER in out and "qwen_min decodes at" in out
