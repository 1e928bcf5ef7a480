"""GPTQ (quant/gptq.py): reduces to round-to-nearest when inputs are uncorrelated, beats it on correlated inputs
(on the calibration inputs and on fresh ones from the same distribution), lands on the kernel's grid, and quantises
a tiny model's decoder layers through `qm.quantize(..., calibration=...)`; plus the `eval perplexity` command."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import qwen_min as qm
from qwen_min.cli import main as cli_main
from qwen_min.quant.gptq import gptq_int4
from qwen_min.quant.groups import dequantize_int4
from qwen_min.quant.linear import QuantLinear, int4_grid


def output_error(weight, grid, x):
    """Squared error of the layer's output on inputs x (tokens, in): ||x @ (W_q - W).T||^2."""
    return float(((x @ (dequantize_int4(*grid) - weight).T) ** 2).sum())


def correlated_inputs(n, mix, generator):
    """n inputs whose features are mixed by `mix` (d, d), with a few large ones, like a transformer's activations."""
    x = torch.randn(n, mix.shape[0], generator=generator) @ mix
    x[:, :4] *= 8.0  # outlier features
    return x


def random_mix(d, generator):
    return torch.randn(d, d, generator=generator) / d ** 0.5 + torch.eye(d)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_with_uncorrelated_unit_inputs_is_round_to_nearest(act_order):
    w = torch.randn(32, 256, generator=torch.Generator().manual_seed(0))
    q, scale, minimum = gptq_int4(w, torch.eye(256), group_size=128, damp=0.0, act_order=act_order)
    q_rtn, scale_rtn, minimum_rtn = int4_grid(w, 128)
    assert torch.equal(q, q_rtn) and torch.equal(scale, scale_rtn) and torch.allclose(minimum, minimum_rtn)


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_round_to_nearest_on_correlated_inputs(act_order):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, 256, generator=g)
    mix = random_mix(256, g)
    x_cal, x_new = correlated_inputs(2048, mix, g), correlated_inputs(2048, mix, g)  # the same distribution
    grid = gptq_int4(w, x_cal.T @ x_cal, group_size=128, act_order=act_order)
    rtn = int4_grid(w, 128)
    assert output_error(w, grid, x_cal) < 0.7 * output_error(w, rtn, x_cal)
    assert output_error(w, grid, x_new) < 0.8 * output_error(w, rtn, x_new)  # it generalises, not just fits


def test_gptq_codes_run_on_the_kernel_unchanged():
    g = torch.Generator().manual_seed(2)
    linear = torch.nn.Linear(256, 64, bias=False)
    x = correlated_inputs(512, random_mix(256, g), g)
    grid = gptq_int4(linear.weight.detach(), x.T @ x, group_size=128)
    layer = QuantLinear.from_linear(linear, "int4", 128, grid=grid)
    # the kernel hands its weight back in bf16: equal to bf16 rounding (a wrong code would be off by a whole step)
    assert torch.allclose(layer.dequantized_weight(), dequantize_int4(*grid), rtol=1 / 128, atol=1e-6)
    with pytest.raises(ValueError, match="int4 codes"):
        QuantLinear.from_linear(linear, "int8", grid=grid)


def test_gptq_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="hessian has shape"):
        gptq_int4(torch.randn(16, 128), torch.eye(64))
    with pytest.raises(ValueError, match="does not divide"):
        gptq_int4(torch.randn(16, 96), torch.eye(96), group_size=64)


def test_quantize_with_calibration_uses_gptq_on_every_decoder_layer():
    torch.manual_seed(0)
    cfg = qm.QwenConfig.from_name("tiny", vocab_size=256, intermediate_size=192)
    model = qm.Qwen(cfg).eval()
    ids = torch.randint(0, 256, (4, 64))  # fresh text from the calibration's distribution
    with torch.no_grad():
        reference = model(ids).float()
        rtn = qm.quantize(copy.deepcopy(model), "int4", group_size=32)
        calibrated = qm.quantize(model, "int4", group_size=32, calibration=torch.randint(0, 256, (16, 64)), progress=False)
        linears = [m for m in calibrated.model.layers.modules() if isinstance(m, QuantLinear)]
        assert len(linears) == 7 * cfg.num_hidden_layers and all(m.fmt == "int4" for m in linears)
        assert calibrated.lm_head.fmt == "int8"
        gptq_error = ((calibrated(ids).float() - reference) ** 2).mean()
        rtn_error = ((rtn(ids).float() - reference) ** 2).mean()
    assert gptq_error < 0.8 * rtn_error, (gptq_error, rtn_error)
    with pytest.raises(ValueError, match="applies to int4"):
        qm.quantize(qm.Qwen(cfg), "int8", calibration=ids)


def test_calibration_ids_come_from_training_documents_only(official_tokenizer_dir):
    from qwen_min.eval.perplexity import calibration_ids, held_out_ids

    tok = qm.Tokenizer.from_pretrained(official_tokenizer_dir)
    cal = calibration_ids(tok, {"python-stdlib": 1024}, window=512)
    held = held_out_ids(tok, "python-stdlib", n_tokens=1024)
    assert cal.shape == (2, 512) and cal.flatten().tolist() != held
    with pytest.raises(ValueError, match="multiple of the window"):
        calibration_ids(tok, {"python-stdlib": 700}, window=512)


def test_eval_perplexity_command_refuses_bad_input(tmp_path, capsys):
    assert cli_main(["eval", "perplexity", "--formats", "bf16,int9", "--out", str(tmp_path / "p.json")]) != 0
    assert "unknown format 'int9'" in capsys.readouterr().err
    assert cli_main(["eval", "perplexity", "--tokens", "700", "--out", str(tmp_path / "p.json")]) != 0
    assert "multiple of 512" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


@pytest.mark.slow
def test_eval_perplexity_command_on_the_real_checkpoint(tmp_path, gguf_path):
    out = tmp_path / "ppl.json"
    assert cli_main(["eval", "perplexity", "--checkpoint", str(gguf_path), "--formats", "bf16,int8", "--tokens", "512",
                     "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    rows = record["perplexity"]
    assert rows["bf16"]["vs_bf16"] == {"python-stdlib": 0.0, "shakespeare": 0.0}
    assert abs(rows["int8"]["vs_bf16"]["python-stdlib"]) < 0.02  # int8 costs little (on 512 tokens it may even gain)
