"""How a command reports its progress: a bar and text for a person, JSON lines for a program.

Slicer runs heavy commands as ``python -m deepliver COMMAND ... --progress jsonl`` and reads the
child's stdout, one JSON object a line:

    {"event": "progress", "stage": "writing DICOM", "fraction": 0.42, "message": "..."}
    {"event": "log", "message": "what the command prints for a person"}
    {"event": "result", "outputs": {"ct": "/out/ct.nii.gz", ...}}      last line on success
    {"event": "error", "message": "the one-line error"}                 on failure

``fraction`` is of the whole command, never goes back, and is null when unknown. Commands
report through a :class:`Reporter` made by :func:`open_reporter`; core functions take a plain
:data:`Progress` callback so they need not know who listens.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

MODES = ("bar", "jsonl", "none")

Progress = Callable[[str, float], None]
"""``progress(stage, fraction)``: how far a piece of work got, as a fraction of itself."""

# Smaller steps within one stage are not reported: a few hundred lines per command at most.
MIN_STEP = 0.01


@dataclass(frozen=True)
class ProgressEvent:
    """One line of a command's JSON-lines output."""

    event: str
    stage: str = ""
    fraction: float | None = None
    message: str = ""
    outputs: dict = field(default_factory=dict)


def parse_event(line: str) -> ProgressEvent | None:
    """The event on one stdout line, or None for other text (a warning a library printed)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return None
    fraction = data.get("fraction")
    return ProgressEvent(
        event=data["event"],
        stage=str(data.get("stage") or ""),
        fraction=float(fraction) if isinstance(fraction, int | float) else None,
        message=str(data.get("message") or ""),
        outputs=dict(data.get("outputs") or {}),
    )


def within(progress: Progress | None, start: float, end: float) -> Progress | None:
    """``progress`` for a piece of work that spans ``start``..``end`` of the whole."""
    if progress is None:
        return None
    return lambda stage, fraction: progress(stage, start + (end - start) * fraction)


class Reporter:
    """What a command tells its caller: ``stage`` (how far), ``log`` (what it found, in words)
    and ``result`` (what it wrote). Subclasses decide how it is shown."""

    def __init__(self) -> None:
        self._fraction = 0.0
        self._shown: tuple[str, float | None] = ("", None)

    def stage(self, name: str, fraction: float | None = None, message: str = "") -> None:
        """Work on ``name`` has reached ``fraction`` of the whole command (None: unknown)."""
        if fraction is not None:
            fraction = min(max(float(fraction), self._fraction), 1.0)
            self._fraction = fraction
        last_name, last_fraction = self._shown
        if (
            name == last_name
            and fraction is not None
            and last_fraction is not None
            and fraction - last_fraction < MIN_STEP
        ):
            return
        self._shown = (name, fraction)
        self._show_progress(name, fraction, message or name)

    def _show_progress(self, name: str, fraction: float | None, message: str) -> None:
        raise NotImplementedError

    def log(self, text: str) -> None:
        raise NotImplementedError

    def result(self, **outputs: Any) -> None:
        """What the command wrote (paths) or found (values); only programs are told."""

    def error(self, message: str) -> None:
        """The one-line error; a person reads it on stderr, where the CLI prints it."""


class SilentReporter(Reporter):
    """Says nothing: the other processes of a data-parallel job, where process 0 reports."""

    def _show_progress(self, name: str, fraction: float | None, message: str) -> None:
        pass

    def log(self, text: str) -> None:
        pass


class TextReporter(Reporter):
    """For a person: the text on stdout, and a bar on stderr when it is a terminal."""

    def __init__(self, bar: bool) -> None:
        super().__init__()
        self._bar = tqdm(total=100, disable=None if bar else True, leave=False, bar_format=BAR)

    def _show_progress(self, name: str, fraction: float | None, message: str) -> None:
        self._bar.set_description_str(message)
        if fraction is not None:
            self._bar.update(round(100 * fraction) - self._bar.n)

    def log(self, text: str) -> None:
        tqdm.write(text)  # prints above the bar instead of through it

    def close(self) -> None:
        self._bar.close()


BAR = "{desc:<28.28} {bar} {percentage:3.0f}% [{elapsed}]"


class JsonLinesReporter(Reporter):
    """For a program: every event as one JSON line on ``stream``, flushed at once."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self._stream = stream

    def _emit(self, **event: Any) -> None:
        self._stream.write(json.dumps(event, default=str) + "\n")
        self._stream.flush()

    def _show_progress(self, name: str, fraction: float | None, message: str) -> None:
        fraction = None if fraction is None else round(fraction, 4)
        self._emit(event="progress", stage=name, fraction=fraction, message=message)

    def log(self, text: str) -> None:
        self._emit(event="log", message=text)

    def result(self, **outputs: Any) -> None:
        """Paths are made absolute: the caller need not know the command's working folder."""
        outputs = {k: v.absolute() if isinstance(v, Path) else v for k, v in outputs.items()}
        self._emit(event="result", outputs=outputs)

    def error(self, message: str) -> None:
        self._emit(event="error", message=message)


@contextmanager
def open_reporter(mode: str) -> Iterator[Reporter]:
    """The reporter for ``--progress MODE`` (one of :data:`MODES`).

    In ``jsonl`` mode anything else printed while the command runs goes to stderr, so stdout
    holds events only.
    """
    if mode == "jsonl":
        stdout = sys.stdout
        with redirect_stdout(sys.stderr):
            yield JsonLinesReporter(stdout)
        return
    reporter = TextReporter(bar=mode == "bar")
    try:
        yield reporter
    finally:
        reporter.close()
