"""Automatic checkers for the exercises at the end of every chapter notebook.

A checker runs the student's function against a reference on random (seeded) inputs and prints a short
verdict: which input differs, how, and a hint, never the solution. It raises `ExerciseFailed` (an
AssertionError) on a wrong answer, so a notebook executed in CI with the reference solutions fails if a
checker breaks, and an nbgrader test cell that calls it scores zero.

Three kinds of exercise (every chapter has 2-4, none re-types code shown above it):
- *build*: write something the chapter did not show in final form; `compare` checks it against a reference;
- *predict, then measure*: the student's function returns a prediction (a number or a choice); `prediction`
  reads and records it FIRST, then the checker runs the experiment and `judge_prediction` compares; the
  notebook never shows the measurement before the prediction;
- *debug*: a visible cell holds a function with one planted bug (shown failing with `show_verdict`); the
  student writes the fixed function in the exercise cell.

Conventions for chapter modules (`ch01_tokenizer.py`, `ch02_rope.py`, ...; see course/exercises/reference/__init__.py):
- the chapter module is what the student imports: one `check_<exercise>(student_fn)` per exercise, the input
  builders, the planted bugs (`buggy_*`, shown in the notebook); NO reference answer and no measurement;
- the reference answers and the `measured_*` experiments live in `exercises/reference/chXX_*.py`, each
  decorated with `watch.answer`: inside a student's answer every registered answer is forbidden, whatever
  chapter it belongs to and whatever name or rebuilt copy it is called through;
- **no answer that only calls the package passes**: `compare(..., forbidden=...)` takes the package or library
  functions that compute the same thing (a list, or a `watch.Forbidden` with whole modules, torch builtins by
  name and packages by folder); `compare` forbids its own reference as well. While the student's function runs,
  a profiler hook (course/exercises/watch.py) recognises forbidden code by fingerprint, refuses answers that switch the
  hook off or hide work in a thread or a process, and the answer fails with "calls the package's own ...";
- values are compared type first: a tensor must be a `torch.Tensor`, an int an int, a list a list or tuple
  (so `unittest.mock.ANY` or a subclass with a permissive `__eq__` fails before any comparison);
- random inputs are drawn from `seed(n)`: the nbgrader hidden tests run the same checker inside
  `hidden_inputs(salt)`, which shifts every seed, so a graded check uses inputs the student never saw;
- the checkers refuse to judge in a kernel where their own functions were replaced (`_check_intact`);
- each module defines `PACKAGE_EQUIVALENTS = {"check_<exercise>": [answer, ...]}`: answers made of the
  package's own function passed straight in; `tests/course/test_student.py` asserts every checker rejects every
  one of them, and `tests/course/test_bypasses.py` runs the known ways around a checker against every checker.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Iterable

from qwen_min.course.exercises import predictions, watch
from qwen_min.course.exercises.watch import Forbidden, fingerprint, watching


class ExerciseFailed(AssertionError):
    """The student's answer differs from the reference."""


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, type):
        return f"{type(value).__name__} of shape {tuple(shape)}"
    text = repr(value)
    if "\n" in text:  # a module or another object whose repr is a page long
        return type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


_NUMBERS = (int, float)


def _number(value: Any) -> Any:
    """A plain int or float for the exact types int, float and numpy's numbers; None for anything else."""
    if type(value) in _NUMBERS:
        return value
    numpy = sys.modules.get("numpy")
    if numpy is not None and type(value).__module__ == "numpy" and isinstance(value, (numpy.integer, numpy.floating)):
        return value.item()
    return None


def _equal(got, want, atol: float) -> tuple[bool, str]:
    """(same?, what differs): the exact type first, then the value (tensors within atol, floats within atol)."""
    torch = sys.modules.get("torch")
    numpy = sys.modules.get("numpy")
    if numpy is not None and type(want) is numpy.ndarray:
        if type(got) is not numpy.ndarray:
            return False, f"expected a numpy array, got {type(got).__name__}"
        if got.dtype == object:
            return False, "expected numbers, got an array of objects"
        got, want = torch.from_numpy(got.copy()), torch.from_numpy(want.copy())
    if torch is not None and isinstance(want, torch.Tensor):
        if type(got) is not torch.Tensor:
            return False, f"expected a tensor, got {type(got).__name__}"
        if got.shape != want.shape:
            return False, f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        if got.dtype != want.dtype and (got.dtype == torch.bool or want.dtype == torch.bool):
            return False, f"dtype {got.dtype}, expected {want.dtype}"
        diff = (got.double() - want.double()).abs().max().item() if want.numel() else 0.0
        return diff <= atol, f"max |difference| {diff:.3g} (tolerance {atol:g})"
    if type(want) is bool:
        if type(got) is not bool and not (numpy is not None and type(got) is numpy.bool_):
            return False, f"expected a bool, got {type(got).__name__}"
        return bool(got) == want, f"got {got!r}"
    if type(want) in _NUMBERS:
        number = _number(got)
        if number is None:
            return False, f"expected a number, got {type(got).__name__}"
        if type(want) is int:
            return number == want, f"got {_describe(got)}"
        return abs(number - want) <= atol, f"got {_describe(got)}, expected a value within {atol:g} of the reference"
    if type(want) in (list, tuple):
        if type(got) not in (list, tuple):
            return False, f"expected a {type(want).__name__}, got {type(got).__name__}"
        if len(got) != len(want):
            return False, f"{len(got)} items, expected {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            ok, detail = _equal(g, w, atol)
            if not ok:
                return False, f"item {i}: {detail}"
        return True, ""
    if type(want) is dict:
        if type(got) is not dict or got.keys() != want.keys():
            return False, f"expected a dict with keys {sorted(want)}, got {_describe(got)}"
        for key in want:
            ok, detail = _equal(got[key], want[key], atol)
            if not ok:
                return False, f"[{key!r}]: {detail}"
        return True, ""
    if type(got) is not type(want):
        return False, f"expected a {type(want).__name__}, got {type(got).__name__}"
    return got == want, f"got {_describe(got)}"


_salt = [0]  # shifts every checker's seeds inside `hidden_inputs`


def seed(n: int) -> int:
    """The seed of a checker's random inputs: `n`, or `n` shifted by the salt of `hidden_inputs`.

    >>> with hidden_inputs(1000):
    ...     seed(3)
    1003
    """
    return n + _salt[0]


@contextlib.contextmanager
def hidden_inputs(salt: int):
    """Inside the block, every checker draws other inputs (seeds shifted by `salt`): the nbgrader hidden tests."""
    previous, _salt[0] = _salt[0], salt
    try:
        yield salt
    finally:
        _salt[0] = previous


def _rules(forbidden) -> Forbidden:
    return forbidden if isinstance(forbidden, Forbidden) else Forbidden.of(forbidden)


def _refuse(name: str, seen, what: str = "the answer") -> None:
    """Fail when the watch saw tampering or a forbidden call (the answer was stopped there)."""
    if seen.tampered:
        raise ExerciseFailed(f"✗ {name}: {what} uses {seen.tampered}, which hides its work from the checker; write "
                             "it as plain code that computes the answer itself.") from None
    if seen.used:
        raise ExerciseFailed(f"✗ {name}: {what} calls the package's own {seen.used[0]}, which computes the answer "
                             "(or runs the experiment); write it yourself instead.") from None


def compare(name: str, student: Callable, reference: Callable, inputs: Iterable[tuple],
            hint: str = "", atol: float = 1e-5, forbidden: Iterable[Callable] | Forbidden = ()) -> None:
    """Call `student(*args)` and `reference(*args)` on every input tuple; stop at the first difference.

    `forbidden`: functions the student's code must not call (they would hand in the answer), or a `Forbidden`
    with whole modules, builtins and packages. The reference itself and every registered answer are added.
    """
    _check_intact()
    rules = _rules(forbidden)
    own, theirs = getattr(reference, "__code__", None), getattr(student, "__code__", None)
    if own is not None and (theirs is None or fingerprint(own) != fingerprint(theirs)):  # not one shared wrapper
        rules = rules | Forbidden.of([reference])
    n = 0
    for args in inputs:
        n += 1
        want = reference(*args)
        seen = None
        try:
            with watching(rules) as seen:
                got = student(*args)
        except NotImplementedError:
            raise ExerciseFailed(f"✗ {name}: not implemented yet") from None
        except Exception as e:  # the student's code may fail in any way; report it as a verdict
            if seen is not None and (seen.tampered or seen.used):
                _refuse(name, seen)
            raise ExerciseFailed(f"✗ {name}: raised {type(e).__name__}: {e} on input {n} ({_describe_args(args)})") from None
        _refuse(name, seen)
        ok, detail = _equal(got, want, atol)
        if not ok:
            raise ExerciseFailed(f"✗ {name}: wrong on input {n} ({_describe_args(args)}): {detail}."
                                 + (f" Hint: {hint}" if hint else ""))
    print(f"✓ {name}: matches the reference on {n} inputs")


def _describe_args(args: tuple) -> str:
    return ", ".join(_describe(a) for a in args)


def prediction(name: str, student: Callable[[], Any], forbidden: Iterable[Callable] | Forbidden = ()) -> Any:
    """The student's prediction, read and recorded BEFORE the experiment runs: a plain value (see predictions.py).

    Inside a notebook the first prediction of each exercise is recorded and it is the one returned (and judged).
    The measurements (`measured_*`, registered answers) and `forbidden` may not be called to make the prediction.
    """
    _check_intact()
    seen = None
    try:
        with watching(_rules(forbidden)) as seen:
            value = student()
    except NotImplementedError:
        raise ExerciseFailed(f"✗ {name}: not implemented yet (return your prediction)") from None
    except Exception as e:
        if seen is not None and (seen.tampered or seen.used):
            _refuse(name, seen, "the prediction")
        raise ExerciseFailed(f"✗ {name}: the prediction raised {type(e).__name__}: {e}") from None
    _refuse(name, seen, "the prediction")
    try:
        value = predictions.normalised(value)
    except predictions.NotAPrediction as e:
        raise ExerciseFailed(f"✗ {name}: a prediction is a number, a string, a bool or a tuple of them, not {e}") from None
    first = predictions.recorded(name, value)
    if first != value:
        print(f"{name}: your first prediction, {first!r}, was recorded; it is the one judged, not {value!r}.")
    return first


def judge_prediction(name: str, predicted: Any, measured: Any, close: bool, lesson: str) -> None:
    """Print the prediction next to the measurement, or fail with the lesson (never the number).

    The measurement is printed after a wrong prediction only when predictions are recorded (in a notebook): there
    the first prediction stays the judged one, so the number cannot be typed in for a second try.
    """
    _check_intact()
    if not close:
        if predictions.recording():
            print(f"{name}: the experiment measured {measured!r} (your recorded prediction: {predicted!r}).")
        raise ExerciseFailed(f"✗ {name}: you predicted {predicted!r}, and the experiment does not bear it out. {lesson}")
    print(f"✓ {name}: you predicted {predicted!r}, the experiment measured {measured!r}")


def show_verdict(check: Callable[[Callable], None], fn: Callable) -> None:
    """Run a checker on `fn` and print its verdict instead of raising: shows what a planted bug does."""
    try:
        check(fn)
    except ExerciseFailed as e:
        print(e)


def _code_of_the_checkers() -> dict:
    """(module, name) -> (object, its code) for every function of this package's machinery, as imported."""
    found = {}
    modules = (sys.modules[__name__], watch, predictions)
    for module in modules:
        for key, value in vars(module).items():
            if callable(value) and getattr(value, "__module__", None) in {m.__name__ for m in modules}:
                found[module.__name__, key] = (value, getattr(value, "__code__", None))
    return found


def _check_intact() -> None:
    """Fail when the checkers' own functions were replaced in this kernel (a patched comparison passes anything)."""
    for (module, key), (value, code) in _ORIGINALS.items():
        now = getattr(sys.modules[module], key, None)
        if now is not value or getattr(now, "__code__", None) is not code:
            raise ExerciseFailed(f"✗ the checkers' own {key} was changed in this kernel; restart the kernel and "
                                 "run the notebook again without changing qwen_min.")


_ORIGINALS = _code_of_the_checkers()
