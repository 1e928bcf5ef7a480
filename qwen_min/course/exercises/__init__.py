"""Automatic checkers for the exercises at the end of every chapter notebook.

A checker runs the student's function against the package's reference on random
(seeded) inputs and prints a short verdict: which input differs, how, and a hint,
never the solution. It raises `ExerciseFailed` (an AssertionError) on a wrong answer,
so a notebook executed in CI with the reference solutions fails if a checker breaks.

Three kinds of exercise (every chapter has 2-4, none re-types code shown above it):
- *build*: write something the chapter did not show in final form; `compare` checks it
  against the package's implementation;
- *predict, then measure*: the student's function returns a prediction (a number or a
  choice) and the checker calls it FIRST, then runs the experiment and compares with
  `judge_prediction`; the notebook never shows the measurement before the prediction;
- *debug*: a visible cell holds a function with one planted bug (shown failing with
  `show_verdict`); the student writes the fixed function in the exercise cell.

Conventions for chapter modules (`ch01_tokenizer.py`, `ch02_rope.py`, ...):
- one `check_<exercise>(student_fn)` per exercise, built on `compare` or `judge_prediction`;
- in the notebooks, the cell holding a solution is tagged `solution`: it holds only imports,
  function definitions and checker calls (`make student` turns the function bodies into stubs);
- **no answer that only calls the package passes**: `compare(..., forbidden=[fn, ...])` lists the
  package functions (or methods, e.g. `QwenConfig.num_parameters`, `RMSNorm.forward`) that compute the
  same thing; while the student's function runs, a profiler hook (`sys.setprofile`) watches their code
  objects, so a call through any name, alias or lambda is caught and the exercise fails with
  "calls the package's own ...";
- each module defines `PACKAGE_EQUIVALENTS = {"check_<exercise>": [answer, ...]}`: answers made of the
  package's own function passed straight in (e.g. `lambda cfg: cfg.num_parameters()`). `tests/course/test_student.py`
  reads it and asserts that every checker rejects every one of them. `{}` for a module whose exercises
  have no package counterpart (predictions).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from typing import Any, Callable, Iterable


class ExerciseFailed(AssertionError):
    """The student's answer differs from the reference."""


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    text = repr(value)
    if "\n" in text:  # a module or another object whose repr is a page long
        return type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _equal(got, want, atol: float) -> tuple[bool, str]:
    try:
        import torch

        if isinstance(want, torch.Tensor):
            if not isinstance(got, torch.Tensor):
                return False, f"expected a tensor, got {type(got).__name__}"
            if got.shape != want.shape:
                return False, f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
            if got.dtype != want.dtype and (got.dtype == torch.bool or want.dtype == torch.bool):
                return False, f"dtype {got.dtype}, expected {want.dtype}"
            diff = (got.double() - want.double()).abs().max().item() if want.numel() else 0.0
            return diff <= atol, f"max |difference| {diff:.3g} (tolerance {atol:g})"
    except ImportError:
        pass
    if isinstance(want, float):
        ok = isinstance(got, (int, float)) and abs(got - want) <= atol
        return ok, f"got {_describe(got)}, expected a value within {atol:g} of the reference"
    return got == want, f"got {_describe(got)}"


def _code(fn) -> Any:
    fn = inspect.unwrap(getattr(fn, "__func__", fn))
    return fn.__code__


@contextlib.contextmanager
def _watching(forbidden: Iterable[Callable]):
    """Record the qualified names of the `forbidden` functions called inside the block."""
    codes = {_code(fn) for fn in forbidden}
    used: list[str] = []
    if not codes:
        yield used
        return

    def hook(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            used.append(frame.f_code.co_qualname)

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield used
    finally:
        sys.setprofile(previous)


def compare(name: str, student: Callable, reference: Callable, inputs: Iterable[tuple],
            hint: str = "", atol: float = 1e-5, forbidden: Iterable[Callable] = ()) -> None:
    """Call `student(*args)` and `reference(*args)` on every input tuple; stop at the first difference.

    `forbidden`: package functions the student's code must not call (it would hand in the package's answer).
    """
    forbidden = list(forbidden)
    n = 0
    for args in inputs:
        n += 1
        want = reference(*args)
        try:
            with _watching(forbidden) as used:
                got = student(*args)
        except NotImplementedError:
            raise ExerciseFailed(f"✗ {name}: not implemented yet") from None
        except Exception as e:  # the student's code may fail in any way; report it as a verdict
            raise ExerciseFailed(f"✗ {name}: raised {type(e).__name__}: {e} on input {n} ({_describe_args(args)})") from None
        ok, detail = _equal(got, want, atol)
        if not ok:
            raise ExerciseFailed(f"✗ {name}: wrong on input {n} ({_describe_args(args)}): {detail}."
                                 + (f" Hint: {hint}" if hint else ""))
        if used:
            raise ExerciseFailed(f"✗ {name}: calls the package's own {used[0]}, which computes the answer; "
                                 "write it yourself instead.")
    print(f"✓ {name}: matches the reference on {n} inputs")


def _describe_args(args: tuple) -> str:
    return ", ".join(_describe(a) for a in args)


def prediction(name: str, student: Callable[[], Any]) -> Any:
    """The student's recorded prediction, read BEFORE the experiment runs."""
    try:
        return student()
    except NotImplementedError:
        raise ExerciseFailed(f"✗ {name}: not implemented yet (return your prediction)") from None


def judge_prediction(name: str, predicted: Any, measured: Any, close: bool, lesson: str) -> None:
    """Print the prediction next to the measurement; fail (with the lesson, not the number) when they disagree."""
    if not close:
        raise ExerciseFailed(f"✗ {name}: you predicted {predicted!r}, the experiment measured {measured!r}. {lesson}")
    print(f"✓ {name}: you predicted {predicted!r}, the experiment measured {measured!r}")


def show_verdict(check: Callable[[Callable], None], fn: Callable) -> None:
    """Run a checker on `fn` and print its verdict instead of raising: shows what a planted bug does."""
    try:
        check(fn)
    except ExerciseFailed as e:
        print(e)
