"""Automatic checkers for the exercises at the end of every chapter notebook.

A checker runs the student's function against the package's reference on random
(seeded) inputs and prints a short verdict: which input differs, how, and a hint,
never the solution. It raises `ExerciseFailed` (an AssertionError) on a wrong answer,
so a notebook executed in CI with the reference solutions fails if a checker breaks.

Conventions for chapter modules (`ch01_tokenizer.py`, `ch02_rope.py`, ...):
- one `check_<exercise>(student_fn)` per exercise, built on `compare` below;
- in the notebooks, the cell holding a solution is tagged `solution`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable


class ExerciseFailed(AssertionError):
    """The student's answer differs from the reference."""


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _equal(got, want, atol: float) -> tuple[bool, str]:
    try:
        import torch

        if isinstance(want, torch.Tensor):
            if not isinstance(got, torch.Tensor):
                return False, f"expected a tensor, got {type(got).__name__}"
            if got.shape != want.shape:
                return False, f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
            diff = (got.double() - want.double()).abs().max().item() if want.numel() else 0.0
            return diff <= atol, f"max |difference| {diff:.3g} (tolerance {atol:g})"
    except ImportError:
        pass
    if isinstance(want, float):
        ok = isinstance(got, (int, float)) and abs(got - want) <= atol
        return ok, f"got {_describe(got)}, expected a value within {atol:g} of the reference"
    return got == want, f"got {_describe(got)}"


def compare(name: str, student: Callable, reference: Callable, inputs: Iterable[tuple],
            hint: str = "", atol: float = 1e-5) -> None:
    """Call `student(*args)` and `reference(*args)` on every input tuple; stop at the first difference."""
    n = 0
    for args in inputs:
        n += 1
        want = reference(*args)
        try:
            got = student(*args)
        except NotImplementedError:
            raise ExerciseFailed(f"✗ {name}: not implemented yet") from None
        except Exception as e:  # the student's code may fail in any way; report it as a verdict
            raise ExerciseFailed(f"✗ {name}: raised {type(e).__name__}: {e} on input {n} ({_describe_args(args)})") from None
        ok, detail = _equal(got, want, atol)
        if not ok:
            raise ExerciseFailed(f"✗ {name}: wrong on input {n} ({_describe_args(args)}): {detail}."
                                 + (f" Hint: {hint}" if hint else ""))
    print(f"✓ {name}: matches the reference on {n} inputs")


def _describe_args(args: tuple) -> str:
    return ", ".join(_describe(a) for a in args)
