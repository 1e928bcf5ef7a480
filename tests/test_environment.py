"""The three dependency lists (pyproject.toml, environment.yml, requirements.lock) agree."""

import re
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
