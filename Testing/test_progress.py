"""The progress protocol: what `--progress jsonl` writes, and how the other side reads it."""

import io
import json
import subprocess
import sys
from pathlib import Path

from deepliver.progress import JsonLinesReporter, ProgressEvent, parse_event, within


def deepliver(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepliver", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_parse_event_reads_events_and_skips_other_text():
    line = '{"event": "progress", "stage": "reading", "fraction": 0.5, "message": "reading"}\n'
    assert parse_event(line) == ProgressEvent("progress", "reading", 0.5, "reading")
    result = parse_event('{"event": "result", "outputs": {"ct": "/x/ct.nii.gz"}}')
    assert result.outputs == {"ct": "/x/ct.nii.gz"} and result.fraction is None
    for other in ("", "UserWarning: something\n", "[1, 2]", '{"no": "event"}', "{broken"):
        assert parse_event(other) is None


def test_reported_fraction_never_goes_back_and_small_steps_are_merged():
    stream = io.StringIO()
    reporter = JsonLinesReporter(stream)
    reporter.stage("a", 0.5)
    reporter.stage("b", 0.2)  # a retry from the start of a step: stays at 0.5
    step = within(reporter.stage, 0.5, 1.0)
    for k in range(1000):
        step("c", k / 1000)
    reporter.result(out=Path("relative/file.nii.gz"), count=3)
    events = [parse_event(line) for line in stream.getvalue().splitlines()]
    fractions = [e.fraction for e in events if e.event == "progress"]
    assert fractions[:2] == [0.5, 0.5]
    assert fractions == sorted(fractions) and fractions[-1] > 0.99
    assert len(fractions) <= 60  # one per percent, not one per call
    assert events[-1].outputs == {"out": str(Path("relative/file.nii.gz").absolute()), "count": 3}


def test_jsonl_stdout_is_only_json_lines_ending_with_the_result(tmp_path):
    run = deepliver("phantom", tmp_path / "p", "--size", 48, 48, 16, "--progress", "jsonl")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert {r["event"] for r in records} == {"progress", "log", "result"}
    assert records[-1]["event"] == "result"
    assert Path(records[-1]["outputs"]["ct"]).is_file()
    assert any("Phantom seed" in r["message"] for r in records if r["event"] == "log")


def test_jsonl_error_is_an_event_and_a_non_zero_exit(tmp_path):
    run = deepliver("info", tmp_path / "nowhere", "--progress", "jsonl")
    assert run.returncode == 1
    last = json.loads(run.stdout.splitlines()[-1])
    assert last == {"event": "error", "message": f"{tmp_path / 'nowhere'}: no such file or folder"}
    assert "Traceback" not in run.stdout + run.stderr


def test_progress_none_prints_the_text_without_a_bar(tmp_path):
    run = deepliver("phantom", tmp_path / "p", "--size", 48, 48, 16, "--progress", "none")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("Phantom seed 0: 48 x 48 x 16 voxels")
    assert "{" not in run.stdout and "\r" not in run.stdout + run.stderr
    assert run.stderr == ""
