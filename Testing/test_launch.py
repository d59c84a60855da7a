"""`deepliver launch`: a detached local training run followed to its end with --status, a
remote template (here one that runs on this machine), and the refusals."""

from __future__ import annotations

import json

from cli_helpers import deepliver

from deepliver.training import launch

TRAIN = [
    "--", "--arch", "unet2d", "--stage", "liver", "--data", "phantom:2", "--validation", "1",
    "--batch", "2", "--phantom-size", "48", "48", "16", "--channels", "4", "8",
    "--patch", "32", "32", "1", "--steps", "2", "--epochs", "2", "--device", "cpu",
]  # fmt: skip


def test_local_launch_returns_at_once_and_status_follows_it_to_the_model(tmp_path):
    run = tmp_path / "run"
    started = deepliver("launch", run, "--progress", "jsonl", *TRAIN)
    result = json.loads(started.stdout.splitlines()[-1])
    assert result["event"] == "result" and result["outputs"]["where"] == "local"
    record = json.loads((run / launch.RECORD).read_text())
    assert record["pid"] > 0 and "deepliver train" in record["command"]

    final = launch.wait(run, timeout_s=240)
    assert final.state == "finished", final.describe()
    assert [e["epoch"] for e in final.epochs] == [1, 2]
    assert str(run / "model") in final.message and (run / "model" / "model.json").is_file()
    shown = deepliver("launch", run, "--status")
    assert "state: finished" in shown.stdout + shown.stderr
    assert "epoch 2: loss" in shown.stdout + shown.stderr

    again = deepliver("launch", run, *TRAIN, expect=1)  # never two jobs in one folder
    assert "already holds a launched run" in again.stderr


def test_a_failing_run_reports_its_error(tmp_path):
    run = tmp_path / "bad"
    deepliver("launch", run, "--", "--arch", "unet2d", "--stage", "liver", "--data", "nope:3")
    final = launch.wait(run, timeout_s=120)
    assert final.state == "failed" and "nope:3" in final.message
    deepliver("launch", run, "--status", expect=1)


def test_remote_template_gets_the_quoted_command(tmp_path):
    run = tmp_path / "remote run"  # a space: quoting matters
    marker = tmp_path / "submitted.txt"
    template = f"echo {{command}} {{run}} {{data}} > {marker} && echo queued as 42"
    deepliver("launch", run, "--remote", template, *TRAIN)
    line = marker.read_text()
    assert "python3 -m deepliver train --arch unet2d" in line and "phantom:2" in line
    assert str(run) in line
    record = json.loads((run / launch.RECORD).read_text())
    assert record["where"] == "remote" and record["submit_exit_code"] == 0
    assert "queued as 42" in (run / launch.OUTPUT).read_text()
    assert launch.status(run).state == "unknown"  # nothing shared back yet

    failing = deepliver("launch", tmp_path / "r2", "--remote", "exit 3 {command}", *TRAIN, expect=1)
    assert "exited with 3" in failing.stderr
    no_command = deepliver("launch", tmp_path / "r3", "--remote", "ssh host", *TRAIN, expect=1)
    assert "{command}" in no_command.stderr


def test_nothing_to_launch_and_no_run_to_show(tmp_path):
    assert "nothing to launch" in deepliver("launch", tmp_path / "x", expect=1).stderr
    assert "not a run" in deepliver("launch", tmp_path, "--status", expect=1).stderr
