"""The meta-training step benchmark runs on any training spec and reports every part of a step, per batch size."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perf" / "training_step.py"
PARTS = ("task generation", "input rule", "forward + backward", "clip + Adam", "whole step")


def test_every_part_of_a_step_is_timed_at_every_batch_size(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.toml"
    spec.write_text('source = "digits"\nd_model = 16\nlayers = 1\nsequence_length = 12\nqueries = 2\n')
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(spec), "--batch-size", "4", "8", "--profile"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    heading = r"batch (\d+) × 12 examples, d_model 16, 1 layers, on cpu \(ms\):\n"
    tables = re.findall(heading + r"((?:  .*\n){5})", done.stdout)
    assert [size for size, _ in tables] == ["4", "8"]
    for _, rows in tables:
        timed = dict(re.findall(r"  (.+?) +(\d+\.\d)\n", rows))
        assert list(timed) == list(PARTS) and all(float(ms) > 0 for ms in timed.values())
    assert "aten::" in done.stdout  # the profile of the last batch size's step
