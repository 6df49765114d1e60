"""Start-up: the command line module imports none of the heavy libraries, and neither do the listings, the help and
the user errors that need no data — they answer in well under a second (benchmarks/perf/startup.py times them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gpicl_bench.learners.models import MODEL_KINDS

SHIPPED_GPICL = MODEL_KINDS["transformer"].shipped_checkpoint()
HEAVY = ("torch", "scipy", "h5py", "pandas", "matplotlib", "sklearn", "PIL")  # (safetensors alone: 1 ms)

# (arguments, exit code): each runs in one fresh interpreter, one after the other.
COMMANDS = [
    (["--help"], 0),
    (["--version"], 0),
    (["learners"], 0),
    (["suites"], 0),
    (["run", "--help"], 0),
    (["train", "--help"], 0),
    (["compare", "--help"], 0),
    (["run", "--learner", "protonett"], 2),
    (["run", "--learner", "knn:k=three"], 2),
    (["run", "--learner", "logreg:steps=10,tol=1"], 2),
    (["run", "--learner", "gpicl:fresh,steps=many"], 2),
    (["run", "--suite", "cubb"], 2),
    (["run", "--suite", "cub:preset=frn,crop=maybe"], 2),
    (["run", "--encoder", "timm:resnet50,seed=x", "--suite", "cub"], 2),
    (["run", "missing.toml"], 2),
    (["run", "--ways", "1"], 2),
    (["run", "--batch-size", "0"], 2),
    (["run", "--device", "tpu"], 2),
    (["run", "--resume", "r.h5", "--episodes", "3"], 2),
    (["compare", "missing.h5"], 2),
    (["export-csv", "missing.h5"], 2),
    (["plot", "missing.h5"], 2),
    (["train", "--steps", "many"], 2),
    (["train", "missing.toml"], 2),
    (["train", "--way", "1"], 2),
    (["train", "--kind", "caml", "--queries", "0"], 2),
    (["train", "--kind", "perceiver"], 2),
    (["train", "--input-rule", "centre+whiten"], 2),
    (["train", "--weights-dtype", "bfloat16"], 2),
    (["train", "--init", "missing.safetensors"], 2),
    (["train", "--init", __file__], 2),  # not a checkpoint
    (["run", "--learner", "gpicl:fresh,min_way=1"], 2),
    (["run", "--learner", "metaopt:c=-1"], 2),
    (["run", "--learner", "gpicl:checkpoint=missing.safetensors"], 2),
    (["run", "--learner", f"lstm:checkpoint={SHIPPED_GPICL}"], 2),  # a checkpoint of another kind
    (["suites", "cubb"], 2),
    (["features", "--suite", "digits:size=3"], 2),
]

_PROBE = """
import json, sys
from gpicl_bench.cli import main
heavy = {heavy!r}
report = {{"after import": sorted(m for m in heavy if m in sys.modules)}}
for args, _ in {commands!r}:
    try:
        main(args)
    except SystemExit as done:
        report[" ".join(args)] = [done.code or 0, sorted(m for m in heavy if m in sys.modules)]
print(json.dumps(report))
"""


def test_cli_import_listings_help_and_early_errors_import_nothing_heavy(tmp_path: Path) -> None:
    probe = _PROBE.format(heavy=HEAVY, commands=COMMANDS)
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report.pop("after import") == []
    expected = {" ".join(args): [code, []] for args, code in COMMANDS}
    assert report == expected
    errors = [line for line in done.stderr.splitlines() if line.startswith("gpicl-bench: error: ")]
    assert len(errors) == sum(code == 2 for _, code in COMMANDS)  # one line each
