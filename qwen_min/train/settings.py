"""One settings pattern for every training command (pretrain, sft, dpo, grpo).

    settings = resolve_settings(DEFAULTS, {"lr": 1e-3}, out=Path("runs/sft"), resume=False)
    save_settings(out, settings)                     # out/run.json: the resolved settings of the run
    config = train_config(settings, out, resume=False, stop_at=None, progress=True)

Design choices
- Three layers, later wins: the command's defaults (or a named recipe), then the run folder's run.json
  when resuming, then the flags given on this command line. So `qwen-min sft --out runs/sft --resume`
  needs no other flag, and a flag still overrides (e.g. a larger --max-steps to train on).
- Flags default to None on the command line, so "given" means "not None" and no default is written twice.
- run.json holds plain JSON values (paths as strings), so a run folder says how it was made.
- `train_config` is the one place settings become a TrainConfig; session-only knobs (resume, stop_at,
  progress) are not settings and never go to run.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from qwen_min.train.trainer import TrainConfig

RUN_FILE = "run.json"
LOOP_KEYS = ("max_steps", "lr", "min_lr", "warmup_steps", "weight_decay", "grad_clip", "grad_accum", "eval_every",
             "save_every", "seed", "precision")


def resolve_settings(defaults: dict, given: dict, out: str | Path, resume: bool) -> dict:
    """Defaults, then out/run.json when resuming, then the values given (None means not given).

    >>> resolve_settings({"lr": 1e-3, "max_steps": 10}, {"max_steps": 20, "lr": None}, "/no/such/run", resume=False)
    {'lr': 0.001, 'max_steps': 20}
    """
    run_file = Path(out) / RUN_FILE
    settings = dict(defaults)
    if resume and run_file.exists():
        try:
            settings.update(json.loads(run_file.read_text(encoding="utf-8")))
        except json.JSONDecodeError as e:
            raise ValueError(f"{run_file}: not valid JSON ({e}); fix it or start a new --out") from None
    for key, value in given.items():
        if value is not None:
            settings[key] = str(value) if isinstance(value, Path) else value
    return settings


def require(settings: dict, *keys: str) -> None:
    """One clear error for a setting that neither the flags nor run.json gave."""
    for key in keys:
        if settings.get(key) is None:
            raise ValueError(f"--{key.replace('_', '-')} is required (or --resume a run that has it)")


def require_positive(settings: dict, *keys: str) -> None:
    for key in keys:
        if settings[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be at least 1, got {settings[key]}")


def save_settings(out: str | Path, settings: dict) -> None:
    """Write the resolved settings to out/run.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_FILE).write_text(json.dumps(settings, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def train_config(settings: dict, out: str | Path, *, resume: bool, stop_at: int | None, progress: bool,
                 **extra) -> TrainConfig:
    """The TrainConfig of a run: the loop's settings, this session's knobs, and extras (e.g. flops_per_token)."""
    loop = {key: settings[key] for key in LOOP_KEYS if key in settings}
    return TrainConfig(out=Path(out), resume=resume, stop_at=stop_at, progress=progress, **loop, **extra)
