"""Start-up time of the command line: how long the commands users wait on return, and what each one imports.

Each command runs in a fresh interpreter, the commands interleaved round by round (so that a burst of load on a
shared machine hits all of them alike); the table gives the median, fastest and slowest wall time, the median CPU
time (user + system: start-up runs on one core, so this is about the wall time on an idle machine, and it varies far
less with other load), and whether the command imported any of the heavy libraries, which the command line loads
only where a command needs them.

    .venv/bin/python benchmarks/perf/startup.py                 # 7 rounds of every command below
    .venv/bin/python benchmarks/perf/startup.py --rounds 15
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("torch", "scipy", "h5py", "pandas", "matplotlib", "sklearn", "timm", "open_clip", "torchvision")

# (what the row says, the arguments): listings, and user errors that are detectable before any heavy work.
COMMANDS = (
    ("--help", ["--help"]),
    ("--version", ["--version"]),
    ("learners", ["learners"]),
    ("suites", ["suites"]),
    ("run --help", ["run", "--help"]),
    ("train --help", ["train", "--help"]),
    ("error: unknown learner", ["run", "--learner", "protonett"]),
    ("error: bad option value", ["run", "--learner", "knn:k=three"]),
    ("error: missing spec file", ["run", "missing.toml"]),
    ("error: bad batch size", ["run", "--batch-size", "0"]),
    ("error: unknown device", ["run", "--device", "tpu"]),
    ("error: missing results file", ["compare", "missing.h5"]),
    ("error: bad training knob", ["train", "--steps", "many"]),
    ("error: impossible training knobs", ["train", "--way", "1"]),
    ("error: bad learner option value", ["run", "--learner", "metaopt:c=-1"]),
    ("error: fresh learner's knob", ["run", "--learner", "gpicl:fresh,min_way=1"]),
    ("error: missing checkpoint", ["run", "--learner", "gpicl:checkpoint=missing.safetensors"]),
)

# Runs one command the way the gpicl-bench script does, then reports the heavy libraries it imported.
_PROBE = """
import sys
from gpicl_bench.entry import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\nHEAVY=" + ",".join(sorted(m for m in {heavy!r} if m in sys.modules)) + "\\n")
"""


def time_command(args: list[str], cwd: str) -> tuple[float, float, str]:
    """Wall and CPU seconds of one fresh-interpreter run of the command line, and the heavy libraries it imported."""
    probe = _PROBE.format(heavy=HEAVY)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe, *args], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime
    heavy = done.stderr.rsplit("HEAVY=", 1)[-1].strip() if "HEAVY=" in done.stderr else "?"
    return seconds, cpu, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="runs of each command (default 7)")
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name, _ in COMMANDS}
    cpu_times: dict[str, list[float]] = {name: [] for name, _ in COMMANDS}
    imported: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as cwd:  # relative paths of the error cases name nothing there
        for _ in range(args.rounds):
            for name, command in COMMANDS:
                seconds, cpu, heavy = time_command(command, cwd)
                times[name].append(seconds)
                cpu_times[name].append(cpu)
                imported[name] = heavy
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{args.rounds} rounds, {os.cpu_count()} CPUs, load average {load:.2f} at the end")
    print(f"{'command':32} {'median s':>9} {'fastest':>8} {'slowest':>8} {'CPU s':>6}  heavy imports")
    for name, _ in COMMANDS:
        runs, cpu = times[name], statistics.median(cpu_times[name])
        wall = f"{statistics.median(runs):9.2f} {min(runs):8.2f} {max(runs):8.2f}"
        print(f"{name:32} {wall} {cpu:6.2f}  {imported[name] or '-'}")


if __name__ == "__main__":
    main()
