"""The checker's watch over a student's answer: which forbidden code it runs, and whether it tampers with the watch.

    from qwen_min.course.exercises.watch import Forbidden, watching
    with watching(Forbidden.of([QwenConfig.num_parameters], modules=["gguf.quants"], builtins=["rms_norm"])) as seen:
        answer(cfg)
    seen.used      # ["QwenConfig.num_parameters"] when the answer called it under any name
    seen.tampered  # "" or what the answer did to get out of sight (sys.setprofile, a thread, a process)

Design choices
- A profiler hook (`sys.setprofile`) sees every Python call ("call" events, with the frame's code object) and
  every call of a C function ("c_call" events, with the builtin itself) made by the answer.
- Python code is recognised by a fingerprint, not only by identity: the bytecode, the names it loads, its
  constants (nested code objects fingerprinted in turn, the docstring left out) and its argument counts. A function
  rebuilt from a forbidden code object (`types.FunctionType(f.__code__.replace(co_name=...), ...)`) or a copy of its
  source run through `exec` has the fingerprint of the original. Names, file names and line numbers are left out on
  purpose: they are what such a copy changes.
- Code compiled from a notebook cell is judged by identity only: a short honest answer can coincide with the
  package's own bytecode (`return f"{code}\n\n{test}..."`), and nothing tells it apart from a copy typed in.
- Builtins (torch's C functions) are matched by a part of their name: `builtins=["rms_norm"]` refuses
  `torch.rms_norm`, `torch._C._nn.rms_norm` and `torch.ops.aten.rms_norm` alike, whatever they are called through.
- Forbidden modules are imported (lazily, when a checker runs) and every function and method defined in them is
  forbidden; modules that are not installed are skipped (an answer cannot call them either). Forbidden packages
  (`packages=["trl"]`) are matched by file location without importing them, so a large library costs nothing.
- The answer must not step out of sight: calling `sys.setprofile`, `sys.settrace` or their `threading`
  versions, starting a thread or a process, or leaving a different profiler installed, is tampering, and the
  checker fails the answer for it.
- The answer is stopped at its first forbidden call (the hook raises `Refused` into it), so a forbidden
  experiment or training run costs nothing, and the block after the watch reads `seen` to report it.
- Every registered reference answer (`answer`, used by the modules in exercises/reference/) is forbidden in every
  check, so a reference or a `measured_*` helper is refused even when an answer reaches it through another chapter.
"""

from __future__ import annotations

import _thread
import contextlib
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import sys
import threading
import types
from dataclasses import dataclass, field
from typing import Callable, Iterable

REFERENCE_PACKAGE = "qwen_min.course.exercises.reference"  # where the reference answers live (see reference/__init__.py)
_ANSWERS: list[Callable] = []  # every reference answer and measurement of exercises/reference/, see `answer`
ANSWER_OF: dict[str, Callable] = {}  # "ch09_sft.check_fixed_lora_merge" -> its reference (tests/course/test_bypasses.py)
_CO_FUNCTION = inspect.CO_OPTIMIZED | inspect.CO_NEWLOCALS  # a function's code: co_consts[0] is its docstring or None


def answer(checker: str):
    """Decorator: register the function as the reference answer (or measurement) of `checker` ("chXX.check_name"),
    forbidden inside every student answer."""
    def register(fn: Callable) -> Callable:
        _ANSWERS.append(fn)
        ANSWER_OF[checker] = fn
        return fn
    return register


def all_answers() -> list[Callable]:
    """Every registered answer. The reference modules register themselves when imported; they import this module,
    so they are found here by name (as `Forbidden.of` finds forbidden modules), never imported at the top."""
    package = importlib.import_module(REFERENCE_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{REFERENCE_PACKAGE}.{module.name}")
    return list(_ANSWERS)


def fingerprint(code: types.CodeType) -> tuple:
    """What a copy of `code` keeps: bytecode, loaded names, constants (docstring left out), argument counts.

    >>> def f(x):
    ...     "Doc."
    ...     return x + 1
    >>> g = types.FunctionType(f.__code__.replace(co_name="g", co_filename="elsewhere", co_firstlineno=9), {})
    >>> fingerprint(g.__code__) == fingerprint(f.__code__), fingerprint((lambda x: x + 2).__code__) == fingerprint(f.__code__)
    (True, False)
    """
    consts = code.co_consts[1:] if code.co_flags & _CO_FUNCTION == _CO_FUNCTION else code.co_consts
    return (code.co_code, code.co_names, code.co_argcount, code.co_kwonlyargcount,
            tuple(fingerprint(c) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c)) for c in consts))


def _code(fn) -> types.CodeType | None:
    fn = inspect.unwrap(getattr(fn, "__func__", fn))
    return getattr(fn, "__code__", None)


def _functions_of(module: types.ModuleType) -> Iterable[Callable]:
    """Every function and method defined in `module` (classes' methods, static and class methods included)."""
    for value in list(vars(module).values()):
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            yield value
        elif inspect.isclass(value) and value.__module__ == module.__name__:
            for member in vars(value).values():
                member = getattr(member, "__func__", member)
                if inspect.isfunction(member):
                    yield member


def _package_dir(name: str) -> str | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.realpath(next(iter(spec.submodule_search_locations))) + os.sep


@dataclass(frozen=True)
class Forbidden:
    """What an answer may not run: code fingerprints (with a name each), builtin names, package folders."""

    names: dict = field(default_factory=dict)  # fingerprint -> qualified name
    builtins: frozenset = frozenset()
    folders: tuple = ()
    originals: frozenset = frozenset()  # id() of the forbidden code objects themselves (kept alive by their modules)

    @classmethod
    def of(cls, functions: Iterable[Callable] = (), modules: Iterable[str] = (), builtins: Iterable[str] = (),
           packages: Iterable[str] = ()) -> "Forbidden":
        """The functions given, every registered reference answer, every function of the (importable) modules."""
        names, originals = {}, set()
        functions = list(functions) + all_answers()
        for module_name in modules:
            try:
                functions += list(_functions_of(importlib.import_module(module_name)))
            except ImportError:
                continue  # not installed here: the answer cannot call it either
        for fn in functions:
            code = _code(fn)
            if code is not None:
                names.setdefault(fingerprint(code), getattr(fn, "__qualname__", code.co_name))
                originals.add(id(code))
        folders = tuple(d for d in (_package_dir(p) for p in packages) if d)
        return cls(names, frozenset(builtins), folders, frozenset(originals))

    def __or__(self, other: "Forbidden") -> "Forbidden":
        return Forbidden({**other.names, **self.names}, self.builtins | other.builtins, self.folders + other.folders,
                         self.originals | other.originals)


_TAMPERING = {sys.setprofile: "sys.setprofile", sys.settrace: "sys.settrace",
              _thread.start_new_thread: "a thread", os.fork: "a process"}
_TAMPERING_CODE = {threading.setprofile.__code__: "threading.setprofile", threading.settrace.__code__: "threading.settrace",
                   threading.Thread.start.__code__: "a thread"}
for _name in ("posix_spawn", "posix_spawnp", "execv", "execve", "system"):
    if hasattr(os, _name):
        _TAMPERING[getattr(os, _name)] = "a process"
with contextlib.suppress(ImportError):
    import _posixsubprocess

    _TAMPERING[_posixsubprocess.fork_exec] = "a process"


_CELL_FILE = re.compile(r"(<ipython-input-\d+-|.*ipykernel_\d+[/\\]\d+\.py$)")


def written_in_a_cell(code: types.CodeType) -> bool:
    """Whether `code` was compiled from a Jupyter cell (ipykernel names its files ipykernel_<pid>/<hash>.py).

    >>> written_in_a_cell(compile("1", "/tmp/ipykernel_41/3141.py", "eval")), written_in_a_cell(compile("1", "paths.py", "eval"))
    (True, False)
    """
    return bool(_CELL_FILE.match(code.co_filename))


def _torch_op_calls() -> set:
    """id() of the code objects through which `torch.ops.aten.<op>` calls run (their `self` is the op), if torch is loaded."""
    ops = sys.modules.get("torch._ops")
    if ops is None:
        return set()
    return {id(cls.__call__.__code__) for cls in (ops.OpOverload, ops.OpOverloadPacket) if hasattr(cls.__call__, "__code__")}


class Refused(BaseException):
    """Raised by the hook into the answer at its first forbidden call or tampering: the answer stops there.
    A BaseException, so that an answer's `except Exception` does not swallow it (if it does, the hook is gone
    and the watch reports tampering)."""


@dataclass
class Seen:
    """What the watch saw: forbidden code the answer ran (qualified names), and tampering ("" when none)."""

    used: list = field(default_factory=list)
    tampered: str = ""


@contextlib.contextmanager
def watching(forbidden: Forbidden):
    """Run the block under the profiler hook; yields a `Seen` filled in while the block runs."""
    seen = Seen()
    verdicts: dict[int, str | None] = {}  # id(code or builtin) -> forbidden name or None, cached
    keep: list = []  # the objects behind the ids above, kept alive so that an id is not reused

    def forbidden_code(code) -> str | None:
        if code in _TAMPERING_CODE:
            seen.tampered = seen.tampered or _TAMPERING_CODE[code]
        name = forbidden.names.get(fingerprint(code))
        if name is not None and id(code) not in forbidden.originals and written_in_a_cell(code):
            name = None
        if name is None and forbidden.folders and os.path.realpath(code.co_filename).startswith(forbidden.folders):
            name = code.co_qualname
        return name

    def forbidden_builtin(fn) -> str | None:
        with contextlib.suppress(TypeError):  # an unhashable callable is no builtin of the lists
            if fn in _TAMPERING:
                seen.tampered = seen.tampered or _TAMPERING[fn]
        name = str(getattr(fn, "__name__", "") or getattr(fn, "_name", "") or "")
        return name if any(part in name for part in forbidden.builtins) else None

    op_calls = _torch_op_calls() if forbidden.builtins else set()

    def hook(frame, event, arg):
        if closing:
            return
        if event == "call":
            target, check = frame.f_code, forbidden_code
        elif event == "c_call":
            target, check = arg, forbidden_builtin
        else:
            return
        key = id(target)
        if key not in verdicts:
            verdicts[key] = check(target)
            keep.append(target)
        name = verdicts[key]
        if name is None and key in op_calls:  # torch.ops.aten.<name>(...): the op is the frame's `self`
            name = forbidden_builtin(frame.f_locals.get("self"))
        if name is not None and name not in seen.used:
            seen.used.append(name)
        if seen.used or seen.tampered:
            stopped.append(True)  # raising from the hook also removes it: that is not the answer's doing
            raise Refused

    closing, stopped = False, []
    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield seen
    except Refused:
        pass  # the block stopped at its first forbidden call: `seen` says which
    finally:
        closing = True  # the hook sees the call below: it is the watch's own
        if sys.getprofile() is not hook and not stopped:
            seen.tampered = seen.tampered or "sys.setprofile"
        sys.setprofile(previous)
