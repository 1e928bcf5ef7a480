"""Run untrusted generated programs, each in its own process: time, memory and CPU limits, a temp folder.

A model's program can loop forever, allocate until the machine swaps, delete files or call
`os._exit` - and HumanEval's own harness says so in capitals before it runs anything. So a
candidate never runs inside the caller (a notebook kernel, the test process): it is written
to a fresh temporary folder and run by a new interpreter.

Design choices
- One process per candidate, `python -I` (isolated mode: no user site, no PYTHON* variables,
  the current folder not on sys.path) with an empty environment, started in its own session
  so a timeout kills the whole process group (a candidate that forks does not outlive it).
- Limits through `resource` in the child before exec: address space (default 1 GiB: a
  runaway list fails with MemoryError), CPU seconds (timeout + 1: a busy loop is killed by the
  kernel even if the parent is gone), file size (10 MB), no core dumps. The wall-clock
  timeout (default 5 s) catches programs that sleep or wait.
- This is isolation against accidents, not a security boundary: the child still runs as the
  same user and can reach the network and the filesystem. Evaluate untrusted models in a
  container or VM; HumanEval problems on a trusted model are the accident case.
- `run_programs` runs several candidates at once with a thread pool (each thread waits on a
  process): the work is in the children, so threads are enough.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    passed: bool
    error: str | None  # None when passed; else "timed out after 5.0 s", the exception line, ...


def _limits(timeout: float, memory_bytes: int):
    def apply():  # runs in the child between fork and exec
        cpu = int(timeout) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (10 << 20, 10 << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _last_line(stderr: str) -> str:
    return [line for line in stderr.strip().splitlines() if line.strip()][-1].strip()[:300]


def run_program(program: str, timeout: float = 5.0, memory_mb: int = 1024) -> Outcome:
    """Run `program` in a fresh interpreter in a temporary folder; passed = it exits with status 0.

    >>> run_program("assert 1 + 1 == 2")
    Outcome(passed=True, error=None)
    >>> run_program("assert 1 + 1 == 3, 'wrong'")
    Outcome(passed=False, error='AssertionError: wrong')
    >>> run_program("while True: pass", timeout=0.5)
    Outcome(passed=False, error='timed out after 0.5 s')
    """
    with tempfile.TemporaryDirectory(prefix="qwen_min_sandbox_") as tmp:
        path = Path(tmp) / "candidate.py"
        path.write_text(program, encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-I", str(path)], cwd=tmp, env={}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
                                start_new_session=True, preexec_fn=_limits(timeout, memory_mb << 20))
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Outcome(False, f"timed out after {timeout} s")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if proc.returncode == 0:
        return Outcome(True, None)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return Outcome(False, f"killed by {name}" + (" (CPU limit)" if name == "SIGXCPU" else ""))
    return Outcome(False, _last_line(stderr) if stderr.strip() else f"exit status {proc.returncode}")


def run_programs(programs: list[str], timeout: float = 5.0, memory_mb: int = 1024, workers: int = 2) -> list[Outcome]:
    """`run_program` on each program, `workers` at a time; outcomes in input order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: run_program(p, timeout, memory_mb), programs))
