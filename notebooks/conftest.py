"""pytest over the notebooks (nbval): collect every notebook's validated claims of this run in one file.

nbval starts one kernel per notebook file, when the file's first cell is set up; the kernel is a
subprocess and inherits os.environ as it is then. So before the first notebook's kernel starts,
QWEN_MIN_VALIDATIONS is pointed at a fresh file (not earlier: kernels started by tests/ would write
to it too), and before each notebook's kernel starts QWEN_MIN_NOTEBOOK names the notebook.
Notebooks run in file order, so notebook 10 reads the claims of the notebooks before it and checks
that every notebook that ran reported at least one (see qwen_min.course.walkthrough).
"""

import os
import tempfile
from pathlib import Path

import pytest

from qwen_min.course.walkthrough import FILE_VAR, NOTEBOOK_VAR, start_notebook

_created = []  # the validations file of this session, removed at the end


@pytest.hookimpl(tryfirst=True)  # before pytest's own setup, which starts the notebook's kernel
def pytest_runtest_setup(item):
    path = Path(str(item.fspath))
    if path.suffix != ".ipynb" or os.environ.get(NOTEBOOK_VAR) == path.stem:
        return
    if not _created:
        fd, name = tempfile.mkstemp(prefix="qwen_min_validations_", suffix=".jsonl")
        os.close(fd)
        _created.append(name)
        os.environ[FILE_VAR] = name
    start_notebook(path.stem)


def pytest_unconfigure(config):
    for name in _created:
        Path(name).unlink(missing_ok=True)
