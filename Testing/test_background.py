"""A `deepliver` command in a background child process, as the Slicer modules run it."""

import os
import sys
import time
from pathlib import Path

import pytest

from deepliver.background import BackgroundCommand, deepliver_argv
from deepliver.progress import ProgressEvent


def run_to_end(command: BackgroundCommand, timeout: float = 60) -> list[ProgressEvent]:
    """Poll as a UI timer would until the command is done."""
    deadline = time.monotonic() + timeout
    events = []
    while command.running:
        assert time.monotonic() < deadline, f"still running after {timeout} s"
        events += command.poll()
        time.sleep(0.02)
    return events + command.poll()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent to reap it is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc").is_dir():
        return True
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_phantom_in_the_background_reports_progress_and_its_outputs(tmp_path):
    argv = deepliver_argv(
        sys.executable, "phantom", str(tmp_path / "p"), "--size", "48", "48", "16"
    )
    assert argv[-2:] == ["--progress", "jsonl"]
    command = BackgroundCommand(argv, cwd=tmp_path)
    assert not command.running and command.returncode is None
    command.start()
    events = run_to_end(command)

    assert command.returncode == 0 and command.error_message() is None
    assert command.stderr == ""  # nothing on stderr, no stdout line that was not an event
    progress = [e for e in events if e.event == "progress"]
    fractions = [e.fraction for e in progress if e.fraction is not None]
    assert all(0 <= f <= 1 for f in fractions) and fractions == sorted(fractions)
    assert len({e.stage for e in progress}) >= 2
    assert events[-1].event == "result" and command.result() == events[-1].outputs
    outputs = command.result()
    for name in ("dicom", "ct", "labels", "record"):
        assert Path(outputs[name]).exists(), name
    assert Path(outputs["dicom"]).is_relative_to(tmp_path)
    assert len(outputs["series_uid"]) > 20


def test_a_failing_command_ends_with_its_one_line_error(tmp_path):
    missing = tmp_path / "no-such-series"
    argv = deepliver_argv(sys.executable, "convert", str(missing), str(tmp_path / "ct.nii.gz"))
    command = BackgroundCommand(argv)
    command.start()
    events = run_to_end(command)

    assert command.returncode == 1
    assert events[-1].event == "error" and str(missing) in events[-1].message
    assert command.error_message() == events[-1].message
    assert command.result() is None
    assert "Traceback" not in command.stderr + "".join(e.message for e in events)


def test_without_an_error_event_the_last_stderr_line_explains(tmp_path):
    command = BackgroundCommand(deepliver_argv(sys.executable, "phantom"))  # OUT missing
    command.start()
    assert command.wait(30) == 2
    assert "required" in command.error_message()


@pytest.mark.skipif(sys.platform == "win32", reason="checks POSIX process ids")
def test_cancel_kills_the_child_and_its_grandchild():
    script = (
        "import json, subprocess, sys, time\n"
        "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(json.dumps({'event': 'log', 'message': str(grandchild.pid)}), flush=True)\n"
        "time.sleep(60)\n"
    )
    command = BackgroundCommand([sys.executable, "-c", script])
    command.start()
    deadline = time.monotonic() + 10
    events = []
    while not events:
        assert time.monotonic() < deadline, "the child never reported its grandchild"
        events = command.poll()
        time.sleep(0.02)
    grandchild = int(events[0].message)
    assert alive(grandchild)

    started = time.monotonic()
    command.cancel()
    assert command.wait(5) != 0  # returns only once no process holds the output pipes
    while alive(grandchild) and time.monotonic() - started < 5:
        time.sleep(0.05)
    assert not alive(grandchild)
    assert not command.running and command.error_message() == "cancelled"


def test_cancel_stops_a_long_phantom(tmp_path):
    argv = deepliver_argv(
        sys.executable, "phantom", str(tmp_path / "p"), "--size", "512", "512", "400"
    )
    command = BackgroundCommand(argv)
    command.start()
    deadline = time.monotonic() + 20
    while not any(e.event == "progress" for e in command.poll()):
        assert time.monotonic() < deadline and command.running
        time.sleep(0.02)
    started = time.monotonic()
    command.cancel()
    assert command.wait(5) != 0 and time.monotonic() - started < 5
    assert command.result() is None and command.error_message() == "cancelled"
