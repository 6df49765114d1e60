"""The eigendecomposition benchmark times every size it is given, on the host when no GPU is asked for."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perf" / "eigh.py"


def test_every_size_is_timed() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--sizes", "4x6", "3x40", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"  (\d+) of (\d+)×\d+: torch\.linalg\.eigh on cpu +(\d+\.\d)\n", done.stdout)
    assert [(count, size) for count, size, _ in rows] == [("4", "6"), ("3", "40")]
    assert "1 host threads" in done.stdout
