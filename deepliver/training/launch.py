"""Training jobs started outside the current process, and their status read back.

Local: ``deepliver train ... -o RUN`` runs as a detached process (its own session, so closing
Slicer or the terminal does not stop it); its JSON-lines output goes to ``RUN/launch.log``, its
exit code to ``RUN/launch.exit`` when it ends, and ``RUN/launch.json`` records what was started.

Remote: a command template the user writes (an ``ssh`` line, a cluster's ``sbatch``), with
``{command}`` (the train command, shell-quoted), ``{run}`` and ``{data}``; DeepLiver runs it
and records its output. DeepLiver never stores credentials: the template relies on the user's
own ssh keys or scheduler login. The status of a remote job is read from RUN when the run
folder is shared with the remote machine, and is otherwise the scheduler's to tell.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deepliver.errors import DeepLiverError
from deepliver.io.atomic import write_atomically

RECORD = "launch.json"
OUTPUT = "launch.log"
EXIT = "launch.exit"
TRAIN_LOG = "log.jsonl"  # deepliver.training.loop.LOG
PLACEHOLDERS = ("{command}", "{run}", "{data}")


@dataclass(frozen=True)
class Status:
    state: str  # "running" | "finished" | "failed" | "unknown" (remote, nothing shared yet)
    epochs: list[dict]  # the training log so far: epoch, loss, validation score
    progress: dict | None  # the newest progress event
    message: str  # the error, or where the model is

    def describe(self) -> str:
        lines = [f"state: {self.state}"]
        if self.progress:
            fraction = self.progress.get("fraction")
            done = "" if fraction is None else f" ({100 * fraction:.0f}%)"
            lines.append(f"stage: {self.progress.get('stage', '')}{done}")
        for entry in self.epochs[-5:]:
            scores = ", ".join(
                f"{k.replace('_', ' ')} {v:.4f}"
                for k, v in entry.items()
                if k.startswith("validation_") and isinstance(v, float)
            )
            lines.append(f"epoch {entry['epoch']}: loss {entry['loss']:.4f}, {scores}")
        if self.message:
            lines.append(self.message)
        return "\n".join(lines)


def train_command(train_args: list[str], run: Path) -> list[str]:
    """``deepliver train ARGS -o RUN --progress jsonl`` for this Python."""
    if any(a in ("-o", "--output") for a in train_args):
        raise DeepLiverError("give the run folder once, as RUN, not in the train arguments")
    return [sys.executable, "-m", "deepliver", "train", *train_args, "-o", str(run)] + [
        "--progress",
        "jsonl",
    ]


def launch_local(run: Path, train_args: list[str]) -> dict:
    """Start the training detached; returns the record written to RUN/launch.json."""
    run = _fresh_run_folder(run)
    command = train_command(train_args, run)
    script = f"{shlex.join(command)} > {shlex.quote(str(run / OUTPUT))} 2>&1; "
    script += f"echo $? > {shlex.quote(str(run / EXIT))}"
    process = subprocess.Popen(
        ["/bin/sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return _record(run, {"where": "local", "pid": process.pid, "command": shlex.join(command)})


def launch_remote(run: Path, train_args: list[str], template: str) -> dict:
    """Run the user's template with the train command filled in; its output is recorded."""
    if "{command}" not in template:
        raise DeepLiverError(
            f"remote template {template!r} has no {{command}}: it must run the train command"
        )
    run = _fresh_run_folder(run)
    command = train_command(train_args, run)
    command[0] = "python3"  # the remote machine's Python, with deepliver installed
    data = _option(train_args, "--data") or ""
    line = (
        template.replace("{command}", shlex.quote(shlex.join(command)))
        .replace("{run}", shlex.quote(str(run)))
        .replace("{data}", shlex.quote(data))
    )
    with open(run / OUTPUT, "wb") as output:
        finished = subprocess.run(
            line, shell=True, stdout=output, stderr=subprocess.STDOUT, timeout=600
        )
    record = {"where": "remote", "template": template, "submitted": line}
    record["submit_exit_code"] = finished.returncode
    _record(run, record)
    if finished.returncode != 0:
        tail = (run / OUTPUT).read_text(errors="replace").strip().splitlines()[-3:]
        raise DeepLiverError(
            f"the remote template exited with {finished.returncode}: {' / '.join(tail)}"
        )
    return record


def status(run: Path) -> Status:
    """What a launched run is doing, from the files in RUN."""
    run = Path(run)
    record_path = run / RECORD
    if not record_path.is_file():
        raise DeepLiverError(f"{run}: no {RECORD}; not a run started by deepliver launch")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    epochs = _json_lines(run / TRAIN_LOG)
    events = _json_lines(run / OUTPUT)
    progress = next((e for e in reversed(events) if e.get("event") == "progress"), None)
    errors = [e["message"] for e in events if e.get("event") == "error"]
    results = [e for e in events if e.get("event") == "result"]
    exit_path = run / EXIT
    if exit_path.is_file():
        code = exit_path.read_text().strip()
        if code == "0":
            model = results[-1]["outputs"].get("model") if results else None
            return Status("finished", epochs, progress, f"model: {model}")
        return Status("failed", epochs, progress, errors[-1] if errors else f"exit code {code}")
    if record["where"] == "local" and not _alive(int(record["pid"])):
        return Status("failed", epochs, progress, "the process is gone without an exit code")
    if record["where"] == "remote" and not epochs:
        return Status("unknown", epochs, progress, "nothing in RUN yet: ask the scheduler")
    return Status("running", epochs, progress, "")


def wait(run: Path, timeout_s: float, poll_s: float = 0.5) -> Status:
    """Poll until the run is no longer running (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    current = status(run)
    while current.state == "running" and time.monotonic() < deadline:
        time.sleep(poll_s)
        current = status(run)
    return current


def _fresh_run_folder(run: Path) -> Path:
    run = Path(run).resolve()
    if (run / RECORD).exists():
        raise DeepLiverError(f"{run} already holds a launched run: use another folder")
    run.mkdir(parents=True, exist_ok=True)
    return run


def _record(run: Path, record: dict) -> dict:
    record = {**record, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    text = json.dumps(record, indent=1) + "\n"
    write_atomically(run / RECORD, lambda p: p.write_text(text, encoding="utf-8"))
    return record


def _option(args: list[str], name: str) -> str | None:
    for index, value in enumerate(args[:-1]):
        if value == name:
            return args[index + 1]
    return None


def _json_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # a line being written, or a warning on the stream
    return entries


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
