"""The one progress bar of the package: a tqdm bar on a terminal, one plain line now and then in a log file.

    for layer in progress_bar(layers, desc="GPTQ", unit="layer", enabled=show):
        ...
    bar = progress_bar(total=len(problems), desc="humaneval", unit="problem")   # bar.update(n), bar.close()

Design choices
- Every long loop of the package (training, BPE merges, sampling, HumanEval, GPTQ) goes through
  `progress_bar`, so they all behave alike when the output is redirected.
- On a terminal (or in a Jupyter kernel, whose output area redraws a carriage return in place) the
  bar is tqdm's own, redrawn as it goes.
- Anywhere else (`qwen-min pretrain ... 2> log.txt`, CI, a pipe) a redrawn bar would fill the file
  with carriage returns. There the bar writes a whole line at its start, at most every
  `LOG_INTERVAL_S` seconds, and at its end: a log reads as a short history of the run.
- Plain `tqdm.tqdm`, never `tqdm.auto`: its notebook widget needs ipywidgets, which this project does not
  install, and warns about it.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL_S = 30.0  # seconds between two lines of a bar when stderr is not a terminal


class _Lines:
    """A stream for tqdm that turns each redraw ("\\r" + bar + padding) into one line of its own."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def redraws_in_place(stream) -> bool:
    """Whether `stream` shows a carriage return as a redraw: a terminal, or a Jupyter kernel's output."""
    return stream.isatty() or type(stream).__module__.startswith("ipykernel")


def progress_bar(iterable=None, *, enabled: bool = True, **options) -> tqdm:
    """A tqdm bar on stderr (options as tqdm's: total, desc, unit, initial, ...); `enabled=False` shows nothing."""
    stream = sys.stderr
    if redraws_in_place(stream):
        options = {"dynamic_ncols": True, **options}
    else:
        # miniters=1: tqdm's monitor thread stays out (its refreshes came on top of the timed ones, two lines at once)
        options |= {"file": _Lines(stream), "mininterval": LOG_INTERVAL_S, "miniters": 1}
    return tqdm(iterable, disable=not enabled, **options)
