"""The three dependency lists (pyproject.toml, environment.yml, requirements.lock) agree, the README's dependency
tables list exactly pyproject.toml's, and the Makefile's `lab` target works as root."""

import os
import re
import subprocess
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def pyproject_names() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    return {_name(r) for r in requirements}


def environment_yml_names() -> set[str]:
    lines = (REPO / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    return {_name(line.split("- ", 1)[1]) for line in lines[start + 1:] if line.strip().startswith("- ")}


def lock_versions() -> dict[str, str]:
    lines = (REPO / "requirements.lock").read_text().splitlines()
    return {_name(line): line.split("==")[1] for line in lines if line and not line.startswith("#")}


def test_environment_yml_matches_pyproject():
    assert environment_yml_names() == pyproject_names()


def test_lock_pins_every_dependency_except_torch():
    locked = lock_versions()
    missing = pyproject_names() - set(locked) - {"torch"}
    assert not missing, f"requirements.lock lacks {sorted(missing)}: run `make lock`"
    assert "torch" not in locked  # installed first, pinned in the Makefile, from the local CPU wheel


def test_makefile_and_environment_pin_the_same_torch():
    makefile = (REPO / "Makefile").read_text()
    pin = re.search(r"^TORCH := (torch==[\d.]+)$", makefile, re.M).group(1)
    assert f"- {pin}" in (REPO / "environment.yml").read_text()


def readme_dependency_tables() -> dict[str, set[str]]:
    """{"dependencies" or an extra's name: package names} of the tables in the README's Dependencies section, each
    introduced by a line naming its list: "... (`pyproject.toml` `dependencies`):" or "... (`[test]` extra):"."""
    section = (REPO / "README.md").read_text().split("\n## Dependencies\n", 1)[1].split("\n## ", 1)[0]
    tables = {}
    for title, rows in re.findall(r"^(.*):\n\n\| package \| why \|\n\|---\|---\|\n((?:\|.*\n)+)", section, re.M):
        which = re.search(r"`(dependencies)`|`\[([\w-]+)\]` extra", title)
        tables[which.group(1) or which.group(2)] = {_name(row.split("|")[1]) for row in rows.splitlines()}
    return tables


def test_readme_dependency_tables_list_exactly_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lists = {"dependencies": project["dependencies"], **project["optional-dependencies"]}
    assert readme_dependency_tables() == {name: {_name(r) for r in group} for name, group in lists.items()}


def test_make_lab_allows_root_only_as_root():
    """JupyterLab refuses to start as root without --allow-root: `make lab` passes it exactly when run as root."""
    for extra, folder in (([], "notebooks/"), (["LAB_DIR=student"], "student/")):
        dry = subprocess.run(["make", "-n", "lab", *extra], cwd=REPO, capture_output=True, text=True, check=True).stdout
        command = next(line for line in dry.splitlines() if "jupyter lab" in line)
        expected = ".venv/bin/jupyter lab " + ("--allow-root " if os.geteuid() == 0 else "") + folder
        assert command == expected
