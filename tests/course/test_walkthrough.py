"""The walkthrough's validation record: `validated` appends to the run's file, the runner names each notebook
for its kernel and builds the summary table from the file (never from stored outputs)."""

import json
import os

import nbformat

from qwen_min.course import walkthrough
from qwen_min.course.walkthrough import (
    FILE_VAR,
    NOTEBOOK_VAR,
    PREDICTIONS_VAR,
    format_table,
    read_validations,
    start_notebook,
    validated,
)


def test_validated_prints_and_appends_when_the_variable_is_set(tmp_path, monkeypatch, capsys):
    record = tmp_path / "v.jsonl"
    monkeypatch.setenv(FILE_VAR, str(record))
    monkeypatch.setenv(NOTEBOOK_VAR, "02_rope")
    validated("RoPE == HF", "0.0", "1e-6")
    validated("cache", "ok")
    assert capsys.readouterr().out.splitlines() == ["VALIDATED | RoPE == HF | 0.0 | 1e-6", "VALIDATED | cache | ok | "]
    assert [json.loads(line) for line in record.read_text().splitlines()] == [
        {"notebook": "02_rope", "check": "RoPE == HF", "measured": "0.0", "bar": "1e-6"},
        {"notebook": "02_rope", "check": "cache", "measured": "ok", "bar": ""}]


def test_validated_writes_nothing_without_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(FILE_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    validated("a", "b", "c")
    assert capsys.readouterr().out == "VALIDATED | a | b | c\n"
    assert list(tmp_path.iterdir()) == []


def test_start_markers_and_rows_read_back_in_order(tmp_path, monkeypatch):
    record = tmp_path / "v.jsonl"
    monkeypatch.setenv(FILE_VAR, str(record))
    for runner_side in (NOTEBOOK_VAR, PREDICTIONS_VAR):  # start_notebook sets them for the kernels; undone after the test
        monkeypatch.setenv(runner_side, "")  # so that the undo removes what the runner sets, too
        monkeypatch.delenv(runner_side)
    start_notebook("00_overview")
    validated("x", "1", "> 0")
    start_notebook("01_tokenizer")  # validated nothing
    start_notebook("02_rope")
    validated("y", "2")
    found = read_validations(record)
    assert found.started == ["00_overview", "01_tokenizer", "02_rope"]
    assert found.rows == [("00_overview", "x", "1", "> 0"), ("02_rope", "y", "2", "")]


def test_format_table_pads_every_column_to_its_widest_cell():
    table = format_table([("a", "long check", "1", ""), ("notebook-x", "c", "22", "bar")]).splitlines()
    assert table[0] == "notebook    validated   measured  bar"
    assert table[1] == "----------  ----------  --------  ---"
    assert table[2] == "a           long check  1"  # trailing spaces stripped
    assert table[3] == "notebook-x  c           22        bar"


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_runner_names_each_kernel_and_builds_the_table_from_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(FILE_VAR, "/nonexistent/ignored.jsonl")  # the runner always starts a fresh file in --out
    for name in (NOTEBOOK_VAR, PREDICTIONS_VAR, walkthrough.FULL_CHAIN_VAR):  # main() sets them for its kernels
        monkeypatch.setenv(name, "")  # so that the undo removes what main() sets, too
        monkeypatch.delenv(name)
    report = ("import os\nfrom qwen_min.course.walkthrough import validated\n"
              "validated('full chain flag', os.environ['QWEN_MIN_FULL_CHAIN'], 'seen by the kernel')")
    first = _notebook(tmp_path / "01_first.ipynb", report, "validated('two', '2')")
    silent = _notebook(tmp_path / "02_silent.ipynb", "1 + 1")
    out = tmp_path / "out"
    assert walkthrough.main([str(first), str(silent), "--out", str(out)]) == 0
    found = read_validations(out / "validations.jsonl")
    assert found.started == ["01_first", "02_silent"]
    assert found.rows == [("01_first", "full chain flag", "0", "seen by the kernel"), ("01_first", "two", "2", "")]
    printed = capsys.readouterr().out
    assert format_table([*found.rows, ("02_silent", "(nothing reported)", "", "")]) in printed
    assert (out / "01_first.ipynb").exists() and (out / "02_silent.html").exists()
    assert walkthrough.main([str(first), "--out", str(out), "--full-chain"]) == 0  # `make full-chain`
    assert read_validations(out / "validations.jsonl").rows[0] == ("01_first", "full chain flag", "1", "seen by the kernel")


def test_nbval_conftest_names_each_notebook_kernel(tmp_path):
    """notebooks/conftest.py under pytest --nbval-lax: the second notebook's kernel sees the first one's claims."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    shutil.copy(Path(__file__).resolve().parents[2] / "notebooks" / "conftest.py", tmp_path / "conftest.py")
    _notebook(tmp_path / "01_a.ipynb", "from qwen_min.course.walkthrough import validated\nvalidated('a', '1', '> 0')")
    _notebook(tmp_path / "02_b.ipynb", "import os\nfrom qwen_min.course.walkthrough import read_validations\n"
              "found = read_validations(os.environ['QWEN_MIN_VALIDATIONS'])\n"
              "assert os.environ['QWEN_MIN_NOTEBOOK'] == '02_b', os.environ['QWEN_MIN_NOTEBOOK']\n"
              "assert found.started == ['01_a', '02_b'], found\n"
              "assert found.rows == [('01_a', 'a', '1', '> 0')], found")
    env = {k: v for k, v in os.environ.items() if k not in (FILE_VAR, NOTEBOOK_VAR)}
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout
