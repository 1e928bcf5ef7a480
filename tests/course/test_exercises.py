"""The exercise checkers: they pass the reference, and reject wrong or unfinished answers with a verdict."""

import pytest
import torch

from qwen_min.config import QwenConfig
from qwen_min.course.exercises import ExerciseFailed, compare, judge_prediction, prediction, show_verdict
from qwen_min.course.exercises.ch00_overview import (
    check_kv_cache_bytes,
    check_layer_parameters,
    check_mlp_share,
)
from qwen_min.course.exercises.reference.ch00_overview import measured_mlp_share


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


def test_compare_refuses_an_answer_that_calls_a_forbidden_function_under_any_name():
    def package(x):
        return x * 2

    alias = package
    compare("own", lambda x: x + x, lambda x: x * 2, [(1,), (2,)], forbidden=[package])
    for answer in (package, alias, lambda x: alias(x), lambda x: [package][0](x)):
        with pytest.raises(ExerciseFailed, match="calls the package's own .*package"):
            compare("own", answer, lambda x: x * 2, [(1,)], forbidden=[package])
    with pytest.raises(ExerciseFailed, match="calls the package's own .*package"):  # stopped at the call, right or wrong
        compare("own", lambda x: package(x) + 1, lambda x: x * 2, [(1,)], forbidden=[package])
    with pytest.raises(ExerciseFailed, match="calls the package's own QwenConfig.num_parameters"):  # methods too
        compare("count", lambda cfg: cfg.num_parameters(), lambda cfg: cfg.num_parameters(),
                [(QwenConfig.from_name("tiny"),)], forbidden=[QwenConfig.num_parameters])


def test_predictions_are_read_before_the_experiment(capsys):
    order = []

    def experiment():
        order.append("measure")
        return 3

    def student():
        order.append("predict")
        return 3

    guess = prediction("p", student)
    judge_prediction("p", guess, experiment(), guess == 3, "lesson")
    assert order == ["predict", "measure"] and "✓ p: you predicted 3" in capsys.readouterr().out
    with pytest.raises(ExerciseFailed, match="you predicted 2, and the experiment does not bear it out. lesson") as failed:
        judge_prediction("p", 2, 3, False, "lesson")
    assert "3" not in str(failed.value) and "3" not in capsys.readouterr().out  # the lesson, never the number
    with pytest.raises(ExerciseFailed, match="not implemented yet"):
        prediction("p", lambda: (_ for _ in ()).throw(NotImplementedError))
    show_verdict(lambda fn: judge_prediction("p", fn(), 3, False, "lesson"), lambda: 2)  # prints, does not raise
    assert "✗ p: you predicted 2" in capsys.readouterr().out


def test_ch00_checkers():
    def layer(cfg):  # forgets the q/k/v biases
        d, kv = cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim
        return 2 * d * d + 2 * d * kv + 3 * d * cfg.intermediate_size + 2 * d

    def layer_right(cfg):
        d, q, kv = cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
        return 2 * d * q + 2 * d * kv + q + 2 * kv + 3 * d * cfg.intermediate_size + 2 * d

    check_layer_parameters(layer_right)
    with pytest.raises(ExerciseFailed, match="parameters of one decoder layer: wrong"):
        check_layer_parameters(layer)
    check_kv_cache_bytes(lambda cfg, tokens, nbytes: tokens * 2 * cfg.num_hidden_layers * cfg.num_key_value_heads
                         * cfg.head_dim * nbytes)
    with pytest.raises(ExerciseFailed, match="KV-cache bytes: wrong"):  # MHA-sized
        check_kv_cache_bytes(lambda cfg, tokens, nbytes: tokens * 2 * cfg.num_hidden_layers * cfg.hidden_size * nbytes)
    assert 0.85 < measured_mlp_share() < 0.9
    check_mlp_share(lambda: 0.85)
    with pytest.raises(ExerciseFailed, match="you predicted 0.5"):
        check_mlp_share(lambda: 0.5)
