"""Typed settings for every training command (pretrain, sft, dpo, grpo): one dataclass per command.

    @dataclass
    class SFTSettings(LoopSettings):
        n_train: int = setting(2000, "training examples per task")
    add_settings_arguments(parser, SFTSettings)                  # --n-train N, with "(default 2000)" in its help
    settings = resolve_settings(SFTSettings(), given(args, SFTSettings), out="runs/sft", resume=False)
    save_settings("runs/sft", settings)                          # runs/sft/run.json == dataclasses.asdict(settings)
    config = train_config(settings, "runs/sft", resume=False, stop_at=None, progress=True)

Design choices
- A field carries its default and its help text (`setting(default, help)`); the command's flags are made from the
  fields, so a default is written once and `--help` shows it. A field whose flag is not its name says so
  (`flag="--checkpoint"`); booleans are switches (`--lora`, or `--no-eval` for one that defaults to on).
- Three layers, later wins: the dataclass's defaults (or a named recipe's, `qwen-min pretrain --recipe`), then the
  run folder's run.json when resuming, then the flags given on this command line. Flags default to None on the
  command line, so "given" means "not None" and no default is written twice. So `qwen-min sft --out runs/sft
  --resume` needs no other flag, and a flag still overrides (e.g. a larger --max-steps to train on).
- run.json is `dataclasses.asdict(settings)` (plain JSON values, paths as strings), so a run folder says how it was
  made. A key the dataclass does not know is refused in one line (run.json of another command); the older names of
  renamed settings (`RENAMED`) are read as the new ones.
- `LoopSettings`' fields are the shared loop's (`TrainConfig`'s): `train_config` copies them by name, with this
  session's knobs (resume, stop_at, progress), which are not settings and never go to run.json.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from qwen_min.train.trainer import TrainConfig

RUN_FILE = "run.json"
RENAMED = {"init": "checkpoint", "config": "size", "model": "size"}  # run.json keys of earlier releases -> today's fields


def setting(default, help: str, *, flag: str | None = None, choices=None, negative: str | None = None):
    """A settings field: its default, its help text, and (optionally) its flag, choices, or the name of the switch
    that turns a default-on boolean off (`negative="--no-eval"`)."""
    meta = {"help": help, "flag": flag, "choices": choices, "negative": negative}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class LoopSettings:
    """The shared loop's settings (train/trainer.py's TrainConfig); each command's dataclass sets its own defaults."""

    max_steps: int | None = setting(None, "optimizer steps; the learning-rate schedule ends here")
    lr: float | None = setting(None, "peak learning rate")
    min_lr: float | None = setting(None, "learning rate at the end of the cosine (default lr / 10)")
    warmup_steps: int | None = setting(0, "linear warmup steps")
    batch_size: int = setting(8, "rows per micro-batch, per process")
    grad_accum: int = setting(1, "micro-batches per optimizer step")
    weight_decay: float = setting(0.1, "AdamW weight decay on matrices")
    grad_clip: float = setting(1.0, "max gradient norm, 0 disables")
    eval_every: int = setting(0, "held-out figures every N steps and at the end")
    save_every: int = setting(0, "checkpoint every N steps (and at the end)")
    seed: int = setting(0, "seed of the data order and the initialisation")
    precision: str = setting("auto", "number format of the training compute: fp32, bf16 (autocast; weights, gradients "
                             "and optimizer state stay fp32), auto: bf16 on CUDA, fp32 on CPU", flag="--format",
                             choices=("auto", "fp32", "bf16"))


def loop_default(name: str, default):
    """A LoopSettings field with another default (same help): `max_steps: int | None = loop_default("max_steps", 300)`."""
    return setting(default, LoopSettings.__dataclass_fields__[name].metadata["help"],
                   flag=LoopSettings.__dataclass_fields__[name].metadata["flag"],
                   choices=LoopSettings.__dataclass_fields__[name].metadata["choices"])


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_settings_arguments(p, cls: type, shown: dict[str, str] | None = None) -> None:
    """One flag per field of `cls`, defaulting to None (not given), its help ending with the default
    (`shown` overrides that text, e.g. {"lr": "7e-6 (2e-4 with --lora)"})."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = (shown or {}).get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())
        negative = f.metadata.get("negative")
        help_text = f.metadata["help"] + ("" if default in (None, []) or negative else f" (default {_shown(default)})")
        kind = typing.get_args(hints[f.name]) or (hints[f.name],)
        if bool in kind:
            if negative:
                p.add_argument(negative, dest=f.name, action="store_false", default=None, help=help_text)
            else:
                p.add_argument(flag_of(f), dest=f.name, action="store_true", default=None, help=help_text)
        elif typing.get_origin(hints[f.name]) is list:
            p.add_argument(flag_of(f), dest=f.name, action="append", help=help_text + " (repeatable)")
        else:
            scalar = next(t for t in kind if t is not type(None))
            p.add_argument(flag_of(f), dest=f.name, type=scalar, choices=f.metadata.get("choices"), help=help_text)


def given(args, cls: type) -> dict:
    """{field: value} of the flags of `cls` that this command line set (not None)."""
    return {f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls)}


def resolve_settings(defaults, given: dict, out: str | Path, resume: bool):
    """`defaults` (a settings dataclass), then out/run.json when resuming, then the values given (None: not given).

    >>> resolve_settings(LoopSettings(lr=1e-3, max_steps=10), {"max_steps": 20, "lr": None}, "/no/such/run",
    ...                  resume=False).max_steps
    20
    """
    run_file = Path(out) / RUN_FILE
    values = {}
    if resume and run_file.exists():
        try:
            recorded = json.loads(run_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{run_file}: not valid JSON ({e}); fix it or start a new --out") from None
        values.update({RENAMED.get(key, key): value for key, value in recorded.items()})
    values.update({key: str(value) if isinstance(value, Path) else value for key, value in given.items()
                   if value is not None})
    known = {f.name for f in dataclasses.fields(defaults)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{run_file}: setting {unknown[0]!r} is not one of this command's "
                         "(a run folder of another command?); start a new --out")
    return dataclasses.replace(defaults, **values)


def require(settings, *names: str) -> None:
    """One clear error for a setting that neither the flags nor run.json gave."""
    fields = {f.name: f for f in dataclasses.fields(settings)}
    for name in names:
        if getattr(settings, name) is None:
            raise ValueError(f"{flag_of(fields[name])} is required (or --resume a run that has it)")


def require_positive(settings, *names: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(settings)}
    for name in names:
        if getattr(settings, name) < 1:
            raise ValueError(f"{flag_of(fields[name])} must be at least 1, got {getattr(settings, name)}")


def save_settings(out: str | Path, settings) -> None:
    """Write the resolved settings to out/run.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    record = dataclasses.asdict(settings)
    (out / RUN_FILE).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def train_config(settings: LoopSettings, out: str | Path, *, resume: bool, stop_at: int | None, progress: bool,
                 **extra) -> TrainConfig:
    """The TrainConfig of a run: the loop's settings, this session's knobs, and extras (e.g. flops_per_token)."""
    loop = {f.name: getattr(settings, f.name) for f in dataclasses.fields(LoopSettings)
            if f.name in {g.name for g in dataclasses.fields(TrainConfig)}}
    return TrainConfig(out=Path(out), resume=resume, stop_at=stop_at, progress=progress, **loop, **extra)
