"""The exercise checkers: they pass the reference, and reject wrong or unfinished answers with a verdict."""

import pytest
import torch

from qwen_min.course.exercises import ExerciseFailed, compare
from qwen_min.course.exercises.ch00_overview import check_kv_cache_bytes, check_layer_parameters


def test_compare_reports_input_and_hint():
    with pytest.raises(ExerciseFailed, match=r"wrong on input 2 .*got 1.*Hint: add"):
        compare("double", lambda x: x * x, lambda x: x + x, [(2,), (1,), (2,)], hint="add")


def test_compare_tensors_and_errors(capsys):
    compare("id", lambda t: t.clone(), lambda t: t, [(torch.ones(2, 3),)])
    assert "✓ id: matches the reference on 1 inputs" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match=r"shape \(3, 2\), expected \(2, 3\)"):
        compare("t", lambda t: t.T, lambda t: t, [(torch.ones(2, 3),)])
    with pytest.raises(ExerciseFailed, match="not implemented yet"):
        compare("stub", lambda t: (_ for _ in ()).throw(NotImplementedError), lambda t: t, [(1,)])
    with pytest.raises(ExerciseFailed, match="raised ZeroDivisionError"):
        compare("boom", lambda t: 1 / 0, lambda t: t, [(1,)])


def test_ch00_checkers():
    def layer(cfg):  # forgets the q/k/v biases
        return cfg.replace(num_hidden_layers=1, attention_bias=False).num_parameters() - cfg.replace(
            num_hidden_layers=0).num_parameters()

    with pytest.raises(ExerciseFailed, match="bias"):
        check_layer_parameters(layer)
    with pytest.raises(ExerciseFailed, match="kv head"):
        check_kv_cache_bytes(lambda cfg, tokens, nbytes: tokens * 2 * cfg.num_hidden_layers * cfg.hidden_size * nbytes)
    check_kv_cache_bytes(lambda cfg, tokens, nbytes: tokens * cfg.kv_cache_bytes_per_token(nbytes))
