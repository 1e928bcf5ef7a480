"""`make walkthrough`: execute every notebook in order and print what each one validated.

Notebooks report each validated claim with `validated(check, measured, bar)`, which
prints one tagged line; the runner collects those lines from the executed notebooks
into the summary table. So every figure in the table was computed in this run.

    python -m qwen_min.walkthrough [--out build/walkthrough] [notebooks/*.ipynb]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

TAG = "VALIDATED"
SEP = " | "


def validated(check: str, measured: str, bar: str = "") -> None:
    """Print one validated claim of a notebook: what was compared, the measured figure, the bar it had to meet."""
    print(SEP.join([TAG, check, measured, bar]))


def collect(notebook: dict) -> list[tuple[str, str, str]]:
    """The (check, measured, bar) lines a notebook printed with `validated`."""
    rows = []
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            for line in text.splitlines():
                if line.startswith(TAG + SEP):
                    parts = line.split(SEP)[1:] + ["", ""]
                    rows.append((parts[0], parts[1], parts[2]))
    return rows


def run_notebook(path: Path, out_dir: Path, timeout: int = 900) -> tuple[list, float]:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, out_dir / path.name)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out_dir / path.with_suffix(".html").name).write_text(html, encoding="utf-8")
    return collect(json.loads(nbformat.writes(nb))), seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=Path("build/walkthrough"))
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(Path("notebooks").glob("[0-9][0-9]_*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    table = []
    for path in notebooks:
        print(f"running {path} ...", flush=True)
        rows, seconds = run_notebook(path, args.out)
        print(f"  done in {seconds:.0f} s, {len(rows)} validated claims", flush=True)
        table += [(path.stem, *row) for row in rows] or [(path.stem, "(nothing reported)", "", "")]
    widths = [max(len(r[i]) for r in table + [("notebook", "validated", "measured", "bar")]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    print()
    print(line(("notebook", "validated", "measured", "bar")))
    print(line(tuple("-" * w for w in widths)))
    for row in table:
        print(line(row))
    print(f"\nexecuted notebooks and HTML in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
