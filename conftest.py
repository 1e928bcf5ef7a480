"""Doctests of the package (`pytest --doctest-modules qwen_min`): examples may use `qm`, `torch` and `tok`,
the official Qwen2.5 tokenizer, as the README does."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def doctest_names(doctest_namespace):
    import torch

    import qwen_min as qm
    from qwen_min.paths import official_tokenizer_dir

    doctest_namespace.update(qm=qm, torch=torch, tok=qm.Tokenizer.from_pretrained(official_tokenizer_dir()))


def pytest_collection_modifyitems(items):
    """Whatever needs the real checkpoint is `slow`: tests using the `gguf_path` fixture, doctests that load it.
    So `pytest -m "not slow"` runs on a machine that has not fetched it."""
    for item in items:
        uses_fixture = "gguf_path" in getattr(item, "fixturenames", ())
        dtest = getattr(item, "dtest", None)
        doctest_loads = dtest is not None and any("default_checkpoint(" in ex.source for ex in dtest.examples)
        if uses_fixture or doctest_loads:
            item.add_marker(pytest.mark.slow)


# --doctest-modules would collect the conftest files themselves as modules, and tests/ and notebooks/ each have
# one named conftest.py; they hold no doctests, and pytest still loads them as conftests.
collect_ignore = ["tests/conftest.py", "notebooks/conftest.py"]
