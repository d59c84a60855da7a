"""Run ``PythonSlicer -m deepliver COMMAND ...`` in the background from a module's widget.

The child process, its JSON-lines progress and the kill of its whole tree are the core's
(:class:`deepliver.background.BackgroundCommand`). This is the Qt side: a ``qt.QTimer`` polls the
command, fills a progress bar and a status label, turns the Apply button into Cancel while the
command runs, and shows the child's one-line error in a dialog, never a traceback.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

POLL_INTERVAL_MS = 200


def find_python(
    which: Callable[[str], str | None] = shutil.which,
    executable: str = sys.executable,
    exists: Callable[[str], bool] = os.path.isfile,
    windows: bool = os.name == "nt",
) -> str:
    """The Python that runs the child: Slicer's PythonSlicer, else this Python.

    Inside Slicer, PythonSlicer is on PATH; next to ``sys.executable`` otherwise. Outside
    Slicer (CI, a plain Python) the current interpreter does the job.
    """
    found = which("PythonSlicer")
    if found:
        return found
    beside = os.path.join(os.path.dirname(executable), "PythonSlicer" + (".exe" if windows else ""))
    if exists(beside):
        return beside
    return executable


def package_root() -> str:
    """The folder holding the ``deepliver`` package (the extension's or the source checkout)."""
    import deepliver

    return str(Path(deepliver.__file__).resolve().parent.parent)


def child_environment(base: Mapping[str, str], root: str) -> dict[str, str]:
    """``base`` with ``root`` first on PYTHONPATH, so that the child imports this ``deepliver``.

    Slicer adds module folders to its own ``sys.path`` only; a child PythonSlicer would not
    find the package installed beside the modules without this.
    """
    env = dict(base)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


@dataclass(frozen=True)
class Display:
    """What the widgets show for one event: bar value (0..100, None: unchanged) and text."""

    percent: int | None
    text: str | None


def display_for(event) -> Display:
    """How a :class:`deepliver.progress.ProgressEvent` shows in the progress bar and label."""
    if event.event == "progress":
        percent = None if event.fraction is None else round(100 * min(max(event.fraction, 0), 1))
        text = event.stage + (f": {event.message}" if event.message else "")
        return Display(percent, text or None)
    if event.event == "result":
        return Display(100, None)
    if event.event == "error":
        return Display(None, f"Error: {event.message}")
    return Display(None, None)  # log lines go to the Python console, not the label


def finished_text(returncode: int | None, error: str | None) -> str:
    if returncode == 0:
        return "Done."
    if error == "cancelled":
        return "Cancelled."
    return f"Failed: {error}" if error else f"Failed (exit code {returncode})."


def outputs_summary(outputs: dict | None) -> str:
    """One line for the status label from a command's result outputs."""
    parts = []
    for key, value in (outputs or {}).items():
        name = key.replace("_", " ")
        if isinstance(value, (list, tuple, dict)):
            parts.append(f"{name}: {len(value)}")
        else:
            parts.append(f"{name}: {value}")
    return "; ".join(parts)


# --- Qt ----------------------------------------------------------------------------------


class CommandRunner:
    """One background ``deepliver`` command at a time, shown in a module's widgets.

    ``on_finished(command, succeeded)`` is called once the child has exited and all its output
    has been read; ``command.result()`` holds the outputs of its result event.
    """

    def __init__(
        self,
        apply_button,
        progress_bar,
        status_label,
        on_finished: Callable | None = None,
        title: str = "DeepLiver",
    ) -> None:
        import qt

        self.apply_button = apply_button
        self.progress_bar = progress_bar
        self.status_label = status_label
        self.on_finished = on_finished
        self.title = title
        self.command = None
        self._apply_text = apply_button.text if apply_button is not None else ""
        self._apply_tip = apply_button.toolTip if apply_button is not None else ""
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._poll)

    @property
    def running(self) -> bool:
        return self.command is not None and self._timer.isActive()

    def start(self, command: str, *args: str, cwd: str | None = None) -> None:
        """Start ``deepliver COMMAND ARGS --progress jsonl`` in a child process."""
        from deepliver.background import BackgroundCommand, deepliver_argv

        if self.running:
            raise RuntimeError("a DeepLiver command is already running")
        argv = deepliver_argv(find_python(), command, *[str(a) for a in args])
        env = child_environment(os.environ, package_root())
        logging.info("DeepLiver: running %s", " ".join(argv))
        self.command = BackgroundCommand(argv, cwd=cwd, env=env)
        self.command.start()
        self._show(0, f"Running {command} ...")
        if self.apply_button is not None:
            self._apply_text, self._apply_tip = self.apply_button.text, self.apply_button.toolTip
            self.apply_button.text = "Cancel"
            self.apply_button.toolTip = f"Stop the running '{command}' command"
        self._timer.start()

    def cancel(self) -> None:
        if self.running:
            self.command.cancel()
            self._show(None, "Cancelling ...")

    def wait(self, timeout_s: float) -> bool:
        """Process Qt events until the command has finished; False on timeout (self-tests)."""
        import time

        import slicer

        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.02)
        return not self.running

    def _show(self, percent: int | None, text: str | None) -> None:
        if percent is not None and self.progress_bar is not None:
            self.progress_bar.value = percent
        if text and self.status_label is not None:
            self.status_label.text = text

    def _poll(self) -> None:
        for event in self.command.poll():
            if event.event == "log" and event.message:
                print(event.message)
            display = display_for(event)
            self._show(display.percent, display.text)
        if not self.command.running:
            self._finish()

    def _finish(self) -> None:
        import slicer

        self._timer.stop()
        command = self.command
        returncode, error = command.returncode, command.error_message()
        succeeded = returncode == 0
        self._show(100 if succeeded else None, finished_text(returncode, error))
        if self.apply_button is not None:
            self.apply_button.text = self._apply_text
            self.apply_button.toolTip = self._apply_tip
        if not succeeded and error != "cancelled":
            if command.stderr:
                logging.error("DeepLiver child output:\n%s", command.stderr)
            slicer.util.errorDisplay(
                error or finished_text(returncode, error), windowTitle=self.title
            )
        if self.on_finished is not None:
            self.on_finished(command, succeeded)
