"""Progress bars (qwen_min/progress.py): whole lines, not carriage-return redraws, when stderr is not a terminal;
and every bar of the package goes through that one helper."""

from __future__ import annotations

import io
import re
from pathlib import Path

import qwen_min
from qwen_min import progress
from qwen_min.progress import progress_bar


def test_a_bar_in_a_log_is_a_few_whole_lines(capsys):
    """stderr captured (not a terminal): a start line and an end line, no carriage return, the final count shown."""
    bar = progress_bar(total=1000, desc="work", unit="step")
    for _ in range(1000):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert 2 <= len(lines) <= 3 and lines[0].startswith("work:") and "1000/1000" in lines[-1]


def test_a_bar_on_a_terminal_redraws_in_place(monkeypatch):
    terminal = io.StringIO()
    terminal.isatty = lambda: True
    monkeypatch.setattr("sys.stderr", terminal)
    for _ in progress_bar(range(3), desc="work", mininterval=0):
        pass
    assert terminal.getvalue().count("\r") >= 3


def test_disabled_bar_writes_nothing(capsys):
    assert list(progress_bar(range(5), enabled=False)) == list(range(5))
    assert capsys.readouterr().err == ""


def test_every_progress_bar_of_the_package_goes_through_the_helper():
    package = Path(qwen_min.__file__).parent
    using_tqdm = [p.relative_to(package).as_posix() for p in package.rglob("*.py")
                  if re.search(r"^\s*(from tqdm|import tqdm)", p.read_text(encoding="utf-8"), re.M)]
    assert using_tqdm == [Path(progress.__file__).relative_to(package).as_posix()]
