"""Running `deepliver` the way a user does: a real process, its exit code and its output."""

import subprocess
import sys


def deepliver(*args, expect: int = 0) -> subprocess.CompletedProcess:
    """Run ``python -m deepliver ARGS``; assert the exit code and that no traceback escaped."""
    result = subprocess.run(
        [sys.executable, "-m", "deepliver", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == expect, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result
