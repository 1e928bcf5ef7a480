"""Predictions of the "predict, then measure" exercises: checked for type, and the first one per exercise recorded.

    from qwen_min.course.exercises.predictions import normalised, recorded
    first = recorded("MLP share of a 7B layer", normalised(0.87))   # 0.87, and written to the record
    recorded("MLP share of a 7B layer", 0.9)                        # still 0.87: the first prediction is the one judged

Design choices
- A prediction is a plain value: an int, a float, a str, a bool, or a tuple (or list) of them; numpy scalars and
  one-element tensors are read with `.item()`. Anything else (`unittest.mock.ANY`, a subclass with a permissive
  `__eq__`) is refused before any comparison, and lists come back as tuples.
- The first prediction of each exercise is recorded in the kernel and in a JSON file, and it is the one judged: a
  wrong first prediction shows the measurement, and typing that number in afterwards changes nothing. The file is
  `.qwen_min_predictions.json` in the working folder (the notebook's folder, so it travels with an nbgrader
  submission), or the path in $QWEN_MIN_PREDICTIONS.
- Recording is on inside a Jupyter kernel and wherever $QWEN_MIN_PREDICTIONS is set; elsewhere (pytest, a script)
  every call is judged on its own, and a failed prediction then never shows the measurement.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

FILE_VAR = "QWEN_MIN_PREDICTIONS"
DEFAULT_FILE = ".qwen_min_predictions.json"
_SCALARS = (bool, int, float, str)
_in_kernel_record: dict[str, Any] = {}


class NotAPrediction(TypeError):
    """The value is not a plain number, string, bool or tuple of them."""


def normalised(value: Any) -> Any:
    """The prediction as plain Python values (tuples for sequences), or NotAPrediction.

    >>> normalised([0.5, (True, "B")])
    (0.5, (True, 'B'))
    >>> from unittest import mock
    >>> normalised(mock.ANY)
    Traceback (most recent call last):
    ...
    qwen_min.course.exercises.predictions.NotAPrediction: _ANY
    """
    if type(value) in _SCALARS:
        return value
    if type(value) in (list, tuple):
        return tuple(normalised(v) for v in value)
    numpy = sys.modules.get("numpy")
    if numpy is not None and type(value).__module__ == "numpy" and isinstance(value, numpy.generic):
        return normalised(value.item())
    torch = sys.modules.get("torch")
    if torch is not None and type(value) is torch.Tensor and value.numel() == 1:
        return normalised(value.item())
    raise NotAPrediction(type(value).__name__)


def recording() -> bool:
    """Whether first predictions are recorded: inside a Jupyter kernel, or with $QWEN_MIN_PREDICTIONS set."""
    if os.environ.get(FILE_VAR):
        return True
    ipython = sys.modules.get("IPython")
    return ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None


def record_file() -> Path:
    return Path(os.environ.get(FILE_VAR) or DEFAULT_FILE)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def recorded(name: str, value: Any) -> Any:
    """The first prediction recorded for exercise `name` (`value` itself when it is the first, or when not recording)."""
    if not recording():
        return value
    path = record_file()
    stored = _read(path)
    if name in _in_kernel_record or name in stored:
        first = _in_kernel_record.get(name, stored.get(name))
        return normalised(first)
    _in_kernel_record[name] = value
    stored[name] = value
    path.write_text(json.dumps(stored, indent=1, ensure_ascii=False) + "\n")
    return value
