"""Run a `deepliver` command in a child process: follow its progress, cancel its whole tree.

A UI (the Slicer modules) must stay responsive while inference or training runs, so the work
runs in ``python -m deepliver COMMAND ... --progress jsonl``. Threads read the child's stdout
(events, see :mod:`deepliver.progress`) and stderr, so :meth:`BackgroundCommand.poll` never
blocks. The child starts in its own process group so that :meth:`BackgroundCommand.cancel`
also kills what it started (data loader workers, training ranks).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from deepliver.progress import ProgressEvent, parse_event


def deepliver_argv(python: str, command: str, *args: str) -> list[str]:
    """The command line that runs ``deepliver COMMAND ARGS`` under ``python`` with JSON lines."""
    return [python, "-m", "deepliver", command, *args, "--progress", "jsonl"]


class BackgroundCommand:
    """One child process; ``env`` replaces the environment when given (as in subprocess)."""

    def __init__(self, argv: list[str], cwd: Path | None = None, env: dict | None = None) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = env
        self._process: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []
        self._events: queue.SimpleQueue[ProgressEvent] = queue.SimpleQueue()
        self._text: list[str] = []
        self._error: str | None = None
        self._result: dict | None = None
        self._cancelled = False

    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError(f"already started: {' '.join(self.argv)}")
        self._process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            **_own_process_group(),
        )
        self._readers = [
            threading.Thread(target=self._read_events, args=(self._process.stdout,), daemon=True),
            threading.Thread(target=self._read_text, args=(self._process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def poll(self) -> list[ProgressEvent]:
        """The events read since the last call; never waits."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    @property
    def running(self) -> bool:
        """True until the child has exited and all its output has been read."""
        if self._process is None:
            return False
        return self._process.poll() is None or any(r.is_alive() for r in self._readers)

    @property
    def returncode(self) -> int | None:
        """The child's exit code once it is no longer :attr:`running` (negative: killed)."""
        if self._process is None or self.running:
            return None
        return self._process.returncode

    @property
    def stderr(self) -> str:
        """What the child wrote that is not an event: its stderr and any stray stdout lines."""
        return "\n".join(self._text)

    def wait(self, timeout: float | None = None) -> int:
        """The exit code once the child has exited and its output is read.

        Raises :class:`subprocess.TimeoutExpired` after ``timeout`` seconds.
        """
        if self._process is None:
            raise RuntimeError(f"not started: {' '.join(self.argv)}")
        deadline = None if timeout is None else time.monotonic() + timeout
        self._process.wait(timeout)
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():  # a grandchild still holds the pipe open
                raise subprocess.TimeoutExpired(self.argv, timeout)
        return self._process.returncode

    def cancel(self) -> None:
        """Kill the child and every process it started; :meth:`wait` then returns at once."""
        if not self.running:
            return
        self._cancelled = True
        _kill_tree(self._process.pid)

    def error_message(self) -> str | None:
        """Why the command failed, for a dialog; None while it runs or when it succeeded."""
        if self._error is not None:
            return self._error
        code = self.returncode
        if code is None or code == 0:
            return None
        if self._cancelled:
            return "cancelled"
        lines = [line.strip() for line in self._text if line.strip()]
        return lines[-1] if lines else f"{self.argv[0]} exited with code {code}"

    def result(self) -> dict | None:
        """The outputs of the command's result event, or None if it sent none."""
        return self._result

    def _read_events(self, stream: IO[str]) -> None:
        for line in stream:
            event = parse_event(line)
            if event is None:
                self._text.append(line.rstrip("\n"))
                continue
            if event.event == "error":
                self._error = event.message
            elif event.event == "result":
                self._result = event.outputs
            self._events.put(event)

    def _read_text(self, stream: IO[str]) -> None:
        for line in stream:
            self._text.append(line.rstrip("\n"))


def _own_process_group() -> dict:
    if sys.platform == "win32":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        return {"creationflags": flags}
    return {"start_new_session": True}


def _kill_tree(pid: int) -> None:
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(pid)], capture_output=True)
        return
    # The child leads its own group (pgid == pid). Nothing left to kill raises ESRCH, or EPERM
    # on macOS when only zombies remain.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
