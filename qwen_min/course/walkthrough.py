"""`make walkthrough`: execute every notebook in order and print what each one validated.

Notebooks report each validated claim with `validated(check, measured, bar)`. It prints one tagged
line and, when the environment variable QWEN_MIN_VALIDATIONS names a file, appends the claim to it
as one JSON line, under the notebook named by QWEN_MIN_NOTEBOOK. The runner below (and
notebooks/conftest.py under pytest) sets both before each notebook's kernel starts: a kernel is a
subprocess and inherits the environment of the process that starts it. The summary table, and the
one notebook 13 ends with, are read from that file: every figure in them was computed in this run.

    python -m qwen_min.course.walkthrough [--out build/walkthrough] [--full-chain] [notebooks/*.ipynb]

    found = read_validations(path)    # Validations(started=[notebook, ...], rows=[(notebook, check, measured, bar), ...])
    print(format_table(found.rows))

Design choices
- A file, not the notebooks' stored outputs: the table must never show a figure copied from a committed
  notebook, and a file written by `validated` itself works the same under nbclient, nbval and Jupyter.
- The runner also writes a start marker per notebook, so "this notebook ran but validated nothing"
  is visible (notebook 13 asserts it never happens).
- Kernels are started with CurveZMQ transport encryption where the kernel declares it (`KERNEL_CONFIG`,
  jupyter_client's `transport_encryption="auto"`): without it every kernel warns that it "is running over
  TCP without encryption". (nbval, under `make test`, sends its kernels' stderr to /dev/null.)
- The end-to-end notebook (13) runs its shortened chain by default, so every chapter of the walkthrough
  fits in about 3 minutes on 2 cores; `--full-chain` (`make full-chain`) sets QWEN_MIN_FULL_CHAIN=1 for
  the full-size one (about 20 minutes). Under pytest it always runs the shortened chain.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple

from qwen_min.course.exercises.predictions import FILE_VAR as PREDICTIONS_VAR

TAG = "VALIDATED"
SEP = " | "
FILE_VAR = "QWEN_MIN_VALIDATIONS"  # path of the JSONL file the claims of this run go to
NOTEBOOK_VAR = "QWEN_MIN_NOTEBOOK"  # name of the notebook now running (e.g. "02_rope")
FULL_CHAIN_VAR = "QWEN_MIN_FULL_CHAIN"  # "1": notebook 13 runs the full-size chain
HEADER = ("notebook", "validated", "measured", "bar")
KERNEL_CONFIG = {"KernelManager": {"transport_encryption": "auto"}}  # encrypted kernel sockets where supported


class Validations(NamedTuple):
    started: list[str]  # notebooks that started, in order
    rows: list[tuple[str, str, str, str]]  # (notebook, check, measured, bar)


def chapter_notebooks(folder: str | Path = "notebooks") -> list[Path]:
    """The chapter notebooks in course order: 00_overview ... 08_pretraining, 08b_..., 08c_..., 09_sft ...
    ('_' sorts before letters, so a chapter's parts follow it)."""
    return sorted(Path(folder).glob("[0-9][0-9]*_*.ipynb"))


def _append(path: str | os.PathLike, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:  # one short write per line: lines from one process never interleave
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def validated(check: str, measured: str, bar: str = "") -> None:
    """Report one validated claim of a notebook: what was compared, the measured figure, the bar it had to meet.

    >>> validated("RoPE == transformers", "max |diff| 0.0e+00", "1e-6")
    VALIDATED | RoPE == transformers | max |diff| 0.0e+00 | 1e-6
    """
    print(SEP.join([TAG, check, measured, bar]))
    path = os.environ.get(FILE_VAR)
    if path:
        _append(path, {"notebook": os.environ.get(NOTEBOOK_VAR, ""), "check": check, "measured": measured, "bar": bar})


def start_notebook(name: str, path: str | os.PathLike | None = None) -> None:
    """Runner side, before a notebook's kernel starts: claims made from now on belong to `name`, and the
    file (default: $QWEN_MIN_VALIDATIONS) records that it started. The exercises' first predictions of this run
    go next to it (not to notebooks/.qwen_min_predictions.json, where an earlier run's would be judged)."""
    os.environ[NOTEBOOK_VAR] = name
    path = path or os.environ.get(FILE_VAR)
    if path:
        _append(path, {"notebook": name, "started": True})
        os.environ[PREDICTIONS_VAR] = f"{path}.predictions.json"


def read_validations(path: str | os.PathLike) -> Validations:
    """The start markers and the claims of a validations file, in the order they were written."""
    started, rows = [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("started"):
            started.append(record["notebook"])
        else:
            rows.append((record["notebook"], record["check"], record["measured"], record["bar"]))
    return Validations(started, rows)


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...] = HEADER) -> str:
    """Rows as a text table, columns padded to their widest cell.

    >>> print(format_table([("02_rope", "RoPE == HF", "0.0", "1e-6")]))
    notebook  validated   measured  bar
    --------  ----------  --------  ----
    02_rope   RoPE == HF  0.0       1e-6
    """
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def run_notebook(path: Path, out_dir: Path, timeout: int) -> float:
    """Execute one notebook (its kernel inherits os.environ), write it and its HTML to out_dir; seconds taken."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                   config=Config(KERNEL_CONFIG)).execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, out_dir / path.name)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out_dir / path.with_suffix(".html").name).write_text(html, encoding="utf-8")
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=Path("build/walkthrough"))
    parser.add_argument("--full-chain", action="store_true",
                        help="notebook 13 runs the full-size chain (about 20 min on 2 cores) instead of its shortened one")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run (default 3600)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or chapter_notebooks()
    args.out.mkdir(parents=True, exist_ok=True)
    record = args.out / "validations.jsonl"
    record.write_text("")
    os.environ[FILE_VAR] = str(record.resolve())
    os.environ[FULL_CHAIN_VAR] = "1" if args.full_chain else "0"
    for path in notebooks:
        print(f"running {path} ...", flush=True)
        start_notebook(path.stem)
        seconds = run_notebook(path, args.out, args.timeout)
        claims = sum(row[0] == path.stem for row in read_validations(record).rows)
        print(f"  done in {seconds:.0f} s, {claims} validated claims", flush=True)
    found = read_validations(record)
    table = [row for name in found.started
             for row in [r for r in found.rows if r[0] == name] or [(name, "(nothing reported)", "", "")]]
    print()
    print(format_table(table))
    print(f"\nexecuted notebooks and HTML in {args.out}/, the claims in {record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
