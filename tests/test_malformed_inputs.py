"""Every kind of bad input — specs, references, options, results files, checkpoints, IDX files, folders, paths, a
full disk — ends with exit code 2 and one line on stderr, no traceback, and no file created or changed."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_cli import one_error_line

from gpicl_bench import checkpoints
from gpicl_bench.learners.models import build_model
from gpicl_bench.learners.sequence import SequenceConfig
from gpicl_bench.locking import ExclusiveLock
from gpicl_bench.results import GroupKey, ResultsFile

KEY = GroupKey("digits", "knn", 5, 1, 15)
ATTRS = {"split": "test", "seed": 0, "device": "cpu", "episodes_per_second": 10.0}


def results_file(path: Path, groups: int = 1) -> Path:
    with ResultsFile.create(path, {"name": "r", "spec": "{}", "seed": 0, "split": "test"}) as results:
        for shot in range(1, groups + 1):
            results.add_group(GroupKey("digits", "knn", 5, shot, 15), np.arange(4), np.array([75, 0, 30, 60]), ATTRS)
    return path


def damaged(change: Callable[[h5py.Group], None]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        results_file(tmp / "r.h5")
        with h5py.File(tmp / "r.h5", "r+") as handle:
            change(handle["groups"][KEY.name])

    return setup


def tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(SequenceConfig(d_model=8, layers=1, heads=1))
    return checkpoints.save(path, model, {"metrics": {"plateau_exit_step": 1}})


def tampered_checkpoint(tmp: Path) -> None:
    """A single-file checkpoint whose weights were changed after its config was written."""
    path = tiny_checkpoint(tmp / "c.safetensors")
    tensors = load_file(str(path))
    tensors["head.bias"] = tensors["head.bias"] + 1
    save_file(tensors, str(path), metadata={checkpoints.METADATA_KEY: json.dumps(checkpoints.read_metadata(path))})


def mismatched_pair(tmp: Path) -> None:
    """A format 1 pair whose JSON describes another architecture than its weights."""
    path = tiny_checkpoint(tmp / "old.safetensors")
    config = checkpoints.read_metadata(path)
    config["model"]["d_model"] = 16
    tensors = load_file(str(path))
    save_file(tensors, str(path))
    (tmp / "old.json").write_text(json.dumps({**config, "format_version": 1}))


def idx_without_images(tmp: Path) -> None:
    folder = tmp / "idx"
    folder.mkdir()
    for part in ("train", "t10k"):
        (folder / f"{part}-images-idx3-ubyte").write_bytes(
            b"\0\0\x08\x03" + (0).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        )
        (folder / f"{part}-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + (0).to_bytes(4, "big"))


def files(*names: str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        for name in names:
            (tmp / name).write_text("not what you think\n")

    return setup


def nothing(tmp: Path) -> None:
    return None


RUN = ["run", "--episodes", "4", "--quiet", "--out", "{tmp}/new.h5"]
TRAIN = ["train", "--steps", "2", "--d-model", "8", "--layers", "1", "--quiet", "--out", "{tmp}/ck"]

# (setup, command line with {tmp} for the folder, a fragment of the one line expected)
CORPUS = {
    # specs and settings
    "spec missing": (nothing, ["run", "{tmp}/nope.toml"], "no such spec file"),
    "spec malformed": (files("s.toml"), ["run", "{tmp}/s.toml"], "malformed TOML"),
    "spec unknown field": (lambda t: (t / "s.toml").write_text("shotz = [1]\n"), ["run", "{tmp}/s.toml"], "unknown"),
    "spec wrong type": (lambda t: (t / "s.toml").write_text('shots = ["one"]\n'), ["run", "{tmp}/s.toml"], "whole"),
    "episodes 0": (nothing, [*RUN, "--episodes", "0"], "episodes must be between"),
    "huge seed": (nothing, [*RUN, "--seed", "99999999999999999999999"], "seed must be between"),
    "name with slash": (nothing, [*RUN, "--name", "a/b"], "without slashes"),
    "impossible shape": (nothing, [*RUN, "--shots", "400"], "images per class"),
    # references
    "duplicate learner option": (nothing, [*RUN, "--learner", "knn:k=3,k=5"], "given twice"),
    "duplicate suite option": (nothing, [*RUN, "--suite", "digits:project,project=false"], "given twice"),
    "nan option": (nothing, [*RUN, "--learner", "logreg:c=nan"], "finite number"),
    "infinite option": (nothing, [*RUN, "--learner", "logreg:c=inf"], "finite number"),
    "text for a number": (nothing, [*RUN, "--learner", "knn:k=x"], "whole number"),
    "unknown learner": (nothing, [*RUN, "--learner", "knm"], "did you mean 'knn'"),
    "unknown suite": (nothing, [*RUN, "--suite", "digitz"], "unknown suite"),
    "fresh with width 0": (nothing, [*RUN, "--learner", "gpicl:fresh,d_model=0"], "d_model"),
    # training options and checkpoint paths
    "copy fraction 2": (nothing, [*TRAIN, "--copy-fraction", "2"], "share between 0 and 1"),
    "negative bias fraction": (nothing, [*TRAIN, "--bias-fraction", "-0.5"], "share between 0 and 1"),
    "nan learning rate": (nothing, [*TRAIN, "--lr", "nan"], "finite number"),
    "one-way training": (nothing, [*TRAIN, "--way", "1"], "way"),
    "min_way above way": (nothing, [*TRAIN, "--way", "5", "--min-way", "7"], "min_way"),
    "checkpoint exists": (files("ck.safetensors"), TRAIN, "--force"),
    "checkpoint under a file": (files("f"), [*TRAIN[:-1], "{tmp}/f/ck"], "not a folder"),
    # checkpoints
    "checkpoint missing": (nothing, [*RUN, "--learner", "gpicl:checkpoint={tmp}/none.safetensors"], "not found"),
    "checkpoint not safetensors": (files("x.safetensors"), [*RUN, "--learner", "gpicl:checkpoint={tmp}/x"], "corrupt"),
    "checkpoint tampered": (tampered_checkpoint, [*RUN, "--learner", "gpicl:checkpoint={tmp}/c"], "damaged"),
    "old pair mismatched": (mismatched_pair, [*RUN, "--learner", "gpicl:checkpoint={tmp}/old"], "does not match"),
    "lstm checkpoint as gpicl": (nothing, [*RUN, "--learner", "lstm"], "ships no checkpoint"),
    # IDX files and folders
    "idx without images": (idx_without_images, [*RUN, "--suite", "idx:root={tmp}/idx"], "holds no images"),
    "idx folder missing": (nothing, [*RUN, "--suite", "idx:root={tmp}/idx"], "no IDX directory"),
    "image folder missing": (nothing, [*RUN, "--suite", "folder:root={tmp}/imgs"], "{tmp}/imgs"),
    "cache dir is a file": (files("cache"), ["features", "--suite", "digits", "--cache-dir", "{tmp}/cache"], "not a"),
    # results files
    "results missing": (nothing, ["compare", "{tmp}/r.h5"], "no such results file"),
    "results not hdf5": (files("r.h5"), ["export-csv", "{tmp}/r.h5"], "not a readable HDF5 file"),
    "results foreign hdf5": (lambda t: h5py.File(t / "r.h5", "w").close(), ["compare", "{tmp}/r.h5"], "not a gpicl"),
    "group lost an attribute": (
        damaged(lambda g: g.attrs.__delitem__("learner")),
        ["run", "--resume", "{tmp}/r.h5", "--quiet"],
        "attribute 'learner' is missing",
    ),
    "way as text": (damaged(lambda g: g.attrs.__setitem__("way", "five")), ["compare", "{tmp}/r.h5"], "'five'"),
    "datasets of different lengths": (
        damaged(lambda g: (g.__delitem__("correct"), g.create_dataset("correct", data=np.arange(3)))),
        ["export-csv", "{tmp}/r.h5"],
        "different lengths",
    ),
    "wrong dtype": (
        damaged(lambda g: (g.__delitem__("accuracy"), g.create_dataset("accuracy", data=np.array([b"x"] * 4)))),
        ["compare", "{tmp}/r.h5"],
        "not a list of numbers",
    ),
    "empty results to compare": (
        lambda t: ResultsFile.create(t / "r.h5", {"spec": "{}"}).close(),
        ["compare", "{tmp}/r.h5"],
        "no finished group",
    ),
    "resume with a spec": (
        lambda t: results_file(t / "r.h5"),
        ["run", "{tmp}/x.toml", "--resume", "{tmp}/r.h5"],
        "--resume",
    ),
    # output paths
    "run onto an existing file": (lambda t: results_file(t / "r.h5"), [*RUN[:-1], "{tmp}/r.h5"], "already exists"),
    "run under a file": (files("f"), [*RUN[:-1], "{tmp}/f/r.h5"], "not a folder"),
    "run onto a folder": (lambda t: (t / "d").mkdir(), [*RUN[:-1], "{tmp}/d"], "is a folder"),
    "compare -o under a file": (
        lambda t: (results_file(t / "r.h5"), (t / "f").write_text("x")),
        ["compare", "{tmp}/r.h5", "-o", "{tmp}/f/out.md"],
        "not a folder",
    ),
    "compare -o onto a folder": (
        lambda t: (results_file(t / "r.h5"), (t / "d").mkdir()),
        ["compare", "{tmp}/r.h5", "-o", "{tmp}/d"],
        "is a folder",
    ),
    "export-csv -o under a file": (
        lambda t: (results_file(t / "r.h5"), (t / "f").write_text("x")),
        ["export-csv", "{tmp}/r.h5", "-o", "{tmp}/f/out.csv"],
        "not a folder",
    ),
    # usage
    "unknown option": (nothing, ["run", "--shotz", "1"], "No such option"),
    "number expected": (nothing, ["run", "--shots", "one"], "'--shots'"),
}


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a digest of its bytes (folders by name)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        for path in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("case", list(CORPUS))
def test_malformed_input_is_one_line_and_changes_nothing(cli, tmp_path: Path, case: str) -> None:
    setup, args, expected = CORPUS[case]
    setup(tmp_path)
    before = snapshot(tmp_path)
    result = cli(*[arg.replace("{tmp}", str(tmp_path)) for arg in args])
    line = one_error_line(result)
    assert expected.replace("{tmp}", str(tmp_path)) in line, line
    assert "Traceback" not in result.err and "TaskDistribution(" not in line and "must be a int" not in line
    assert snapshot(tmp_path) == before


def test_second_writer_gets_one_line(cli, tmp_path: Path) -> None:
    """A resume of a file that another process is writing is refused, and the file is left as it was."""
    path = results_file(tmp_path / "r.h5")
    with ExclusiveLock(path):
        before = snapshot(tmp_path)
        line = one_error_line(cli("run", "--resume", path, "--quiet"))
        assert "being written by another gpicl-bench process" in line
        assert snapshot(tmp_path) == before


def test_repeated_settings_are_merged(cli, tmp_path: Path) -> None:
    """The same shape or suite given twice, in any spelling, runs once."""
    args = ["--episodes", "5", "--learner", "knn", "--quiet", "--shots", "1", "--shots", "1", "--ways", "5"]
    args += ["--ways", "5", "--suite", "digits", "--suite", "digits:project=false", "--out", tmp_path / "r.h5"]
    assert cli("run", *args).code == 0
    assert ResultsFile.open(tmp_path / "r.h5").group_keys() == {KEY}


def test_version_alone_and_debug_anywhere(cli) -> None:
    version = cli("--version")
    assert version.code == 0 and version.out.startswith("gpicl-bench ")
    with pytest.raises(Exception, match="episodes must be between"):
        cli("run", "--episodes", "0", "--debug")  # the traceback (the exception itself) instead of one line


def _limited(limit: int) -> Callable[[], None]:
    """A child process whose files cannot grow beyond ``limit`` bytes: a full disk, for that process only."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _gpicl_bench(*args: object, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpicl_bench", *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=_limited(limit) if limit else None,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


@pytest.mark.slow
def test_full_disk_is_one_line_and_damages_nothing(tmp_path: Path) -> None:
    """Writes that meet a full disk leave earlier content intact: the target of export-csv -o and compare -o, and
    a results file keeps its complete groups and loads."""
    source = results_file(tmp_path / "r.h5", groups=30)
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    for command in (["export-csv", source, "--per-episode", "-o", target], ["compare", source, "-o", target]):
        result = _gpicl_bench(*command, limit=50)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "File too large" in result.stderr
        assert target.read_text() == "old\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    out = tmp_path / "run.h5"
    shots = [arg for shot in range(1, 6) for arg in ("--shots", shot)]
    learners = ["--learner", "knn", "--learner", "protonet"]
    run = _gpicl_bench(
        "run", "--suite", "digits", *learners, *shots, "--episodes", 10_000, "--quiet", "--out", out, limit=2_000_000
    )
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "--resume" in run.stderr
    saved = ResultsFile.open(out).group_keys()
    assert 0 < len(saved) < 10  # the groups saved before the disk filled are all there, and complete
