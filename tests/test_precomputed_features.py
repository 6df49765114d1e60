"""The features suite: a user's embeddings in .npz, .h5, .pt or .parquet files run end to end, give the numbers of
the same data in a built-in suite, travel between machines under one label, and every malformed file is one line."""

from __future__ import annotations

import fractions
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_cli import one_error_line
from test_malformed_inputs import snapshot

from gpicl_bench.results import ResultsFile, load
from gpicl_bench.suites import open_suite

FORMATS = ["npz", "h5", "pt", "parquet"]


def toy(n_classes: int = 12, per_class: int = 25, dim: int = 16) -> dict[str, np.ndarray]:
    """Separable-ish Gaussian classes with string labels and a split column: the first half of the classes train."""
    rng = np.random.default_rng(0)
    classes = np.repeat(np.arange(n_classes), per_class)
    features = 3 * rng.normal(size=(n_classes, dim))[classes] + rng.normal(size=(len(classes), dim))
    names = np.array([f"class-{c:02d}" for c in range(n_classes)])
    return {
        "features": features.astype(np.float32),
        "labels": names[classes],
        "split": np.where(classes < n_classes // 2, "train", "test"),
    }


def save(path: Path, arrays: dict[str, object]) -> Path:
    """Write named arrays the way a user would in the format of ``path``'s extension."""
    kind = path.suffix.lstrip(".")
    if kind == "npz":
        np.savez(path, **arrays)
    elif kind in ("h5", "hdf5"):
        with h5py.File(path, "w") as file:
            for name, value in arrays.items():
                value = np.asarray(value)
                file.create_dataset(name, data=value.astype(object) if value.dtype.kind == "U" else value,
                                    dtype=h5py.string_dtype() if value.dtype.kind == "U" else None)  # fmt: skip
    elif kind in ("pt", "pth"):
        torch.save({n: v.tolist() if v.dtype.kind == "U" else torch.from_numpy(v) for n, v in arrays.items()}, path)
    elif kind == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as parquet

        columns = {n: pa.array(list(v) if n == "features" else v.tolist()) for n, v in arrays.items()}
        parquet.write_table(pa.table(columns), path)
    else:
        path.write_text("not features\n")
    return path


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_gives_the_same_splits(tmp_path: Path, kind: str) -> None:
    """The same arrays read from any format give the same splits, features, per-split class numbers and names."""
    arrays = toy()
    suite = open_suite(f"features:path={save(tmp_path / f'toy.{kind}', arrays)}").suite
    assert suite.splits == ("train", "test")
    for split, classes in (("train", range(6)), ("test", range(6, 12))):
        data = suite.load(split)
        rows = arrays["split"] == split
        assert data.features.dtype == torch.float32 and data.labels.dtype == torch.int64
        np.testing.assert_array_equal(data.features.numpy(), arrays["features"][rows])
        assert data.class_names == tuple(f"class-{c:02d}" for c in classes)
        names = np.array(data.class_names)[data.labels.numpy()]
        np.testing.assert_array_equal(names, arrays["labels"][rows])


def test_class_lists_and_no_split(tmp_path: Path) -> None:
    """Splits from <split>_classes with integer labels and class_names; without any split, one test split."""
    arrays = toy()
    integers = np.repeat(np.arange(12), 25)
    listed = {
        "features": arrays["features"],
        "labels": integers,
        "class_names": np.array([f"c{i}" for i in range(12)]),
        "train_classes": np.arange(0, 12, 2),
        "val_classes": np.array([1, 3]),
        "test_classes": np.array([5, 7, 9, 11]),
    }
    suite = open_suite(f"features:path={save(tmp_path / 'lists.npz', listed)}").suite
    assert suite.splits == ("train", "val", "test")
    test = suite.load("test")
    assert test.class_names == ("c5", "c7", "c9", "c11") and len(test.labels) == 100
    np.testing.assert_array_equal(test.features.numpy(), arrays["features"][np.isin(integers, [5, 7, 9, 11])])

    plain = open_suite(
        f"features:path={save(tmp_path / 'plain.pt', {'features': arrays['features'], 'labels': integers})}"
    )
    assert plain.suite.splits == ("test",) and len(plain.suite.load("test").labels) == 300


def test_suites_command_shows_the_file(cli, tmp_path: Path) -> None:
    """``gpicl-bench suites features:path=FILE`` lists the file's splits with their classes and rows."""
    result = cli("suites", f"features:path={save(tmp_path / 'toy.h5', toy())}")
    assert result.code == 0, result.err
    rows = [line.split("│")[1:4] for line in result.out.splitlines() if "class-" in line]
    assert [[cell.strip() for cell in row] for row in rows] == [["train", "6", "150"], ["test", "6", "150"]]


def test_saved_digits_give_the_digits_suite_numbers(cli, tmp_path: Path) -> None:
    """Digits' test split saved as a features file runs end to end and gives, episode by episode, exactly the
    results of the built-in digits suite; its results are labelled by the file's name and carry its fingerprint."""
    data = open_suite("digits").suite.load("test")
    path = save(tmp_path / "digits-features.npz", {"features": data.features.numpy(), "labels": data.labels.numpy()})
    common = ["--learner", "protonet", "--learner", "metaqda", "--shots", "1", "--shots", "5", "--episodes", "150"]
    assert cli("run", "--suite", f"features:path={path}", *common, "--quiet", "--out", tmp_path / "f.h5").code == 0
    assert cli("run", "--suite", "digits", *common, "--quiet", "--out", tmp_path / "d.h5").code == 0
    ours, theirs = load(tmp_path / "f.h5"), load(tmp_path / "d.h5")
    assert set(ours["suite"]) == {"features:path=digits-features.npz"}
    columns = ["learner", "shot", "episode", "correct"]
    key = ["learner", "shot", "episode"]
    assert ours[columns].sort_values(key).to_numpy().tolist() == theirs[columns].sort_values(key).to_numpy().tolist()
    fingerprints = set(ours["data_fingerprint"])
    assert len(fingerprints) == 1 and len(fingerprints.pop()) == 64
    assert cli("compare", tmp_path / "f.h5").code == 0


def test_label_and_fingerprint_travel(tmp_path: Path) -> None:
    """Copies of one file in two folders have one label and one fingerprint; other content, another fingerprint."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = save(tmp_path / "a" / "clip.npz", toy()), tmp_path / "b" / "clip.npz"
    second.write_bytes(first.read_bytes())
    a, b = open_suite(f"features:path={first}"), open_suite(f"features:path={second}")
    assert a.label == b.label == "features:path=clip.npz"
    assert a.fingerprint == b.fingerprint
    changed = toy()
    changed["features"][0, 0] += 1
    save(second, changed)
    assert open_suite(f"features:path={second}").fingerprint != a.fingerprint


class RunsCode:
    """Pickles into a call of os.system: loading it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def arrays_with(**changes: object) -> Callable[[Path], dict[str, object]]:
    def make(tmp: Path) -> dict[str, object]:
        arrays: dict[str, object] = dict(toy())
        arrays.update(changes)
        return {name: value for name, value in arrays.items() if value is not None}

    return make


N = 300  # rows of toy()


def write(name: str, make: Callable[[Path], dict[str, object]]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        save(tmp / name, make(tmp))

    return setup


def write_raw(name: str, content: bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        (tmp / name).write_bytes(content)

    return setup


def torch_file(name: str, content: Callable[[Path], object]) -> Callable[[Path], None]:
    return lambda tmp: torch.save(content(tmp), tmp / name)


def npz_with_objects(tmp: Path) -> None:
    np.savez(tmp / "f.npz", features=toy()["features"], labels=np.array(list(toy()["labels"]), dtype=object))


def parquet_ragged(tmp: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    parquet.write_table(pa.table({"features": [[1.0, 2.0], [3.0]], "labels": [0, 1]}), tmp / "f.parquet")


RUN = ["run", "--learner", "protonet", "--episodes", "4", "--quiet", "--out", "{tmp}/r.h5", "--suite"]
F = "features:path={tmp}/f"

# (setup, suite reference and extra arguments, a fragment of the one line expected)
MALFORMED = {
    "no path": (lambda tmp: None, ["features"], "needs path=FILE"),
    "missing file": (lambda tmp: None, [f"{F}.npz"], "no features file"),
    "unknown extension": (write_raw("f.csv", b"1,2\n"), [f"{F}.csv"], "unknown extension '.csv'"),
    "not a zip": (write_raw("f.npz", b"garbage" * 10), [f"{F}.npz"], "not a .npz archive"),
    "not hdf5": (write_raw("f.h5", b"garbage" * 10), [f"{F}.h5"], "cannot read features file"),
    "not a torch file": (write_raw("f.pt", b"garbage" * 10), [f"{F}.pt"], "not a file that torch.save wrote"),
    "object arrays": (npz_with_objects, [f"{F}.npz"], "object arrays"),
    "no labels": (write("f.npz", arrays_with(labels=None)), [f"{F}.npz"], "has no 'labels'"),
    "no features in hdf5": (write("f.h5", arrays_with(features=None)), [f"{F}.h5"], "has no 'features'"),
    "features 1-D": (write("f.npz", arrays_with(features=np.zeros(N))), [f"{F}.npz"], "must be a 2-D array"),
    "features as text": (write("f.npz", arrays_with(features=np.full((N, 2), "x"))), [f"{F}.npz"], "must be numbers"),
    "no examples": (
        write("f.npz", arrays_with(features=np.zeros((0, 4)), labels=np.zeros(0, int), split=None)),
        [f"{F}.npz"],
        "hold no examples",
    ),
    "nan": (
        write("f.h5", arrays_with(features=np.where(np.arange(N)[:, None] == 7, np.nan, toy()["features"]))),
        [f"{F}.h5"],
        "first is row 7",
    ),
    "float32 overflow": (write("f.npz", arrays_with(features=np.full((N, 2), 1e300))), [f"{F}.npz"], "infinite"),
    "too few labels": (write("f.npz", arrays_with(labels=np.zeros(N - 1, int))), [f"{F}.npz"], "300 feature rows"),
    "labels 2-D": (write("f.npz", arrays_with(labels=np.zeros((N, 2), int))), [f"{F}.npz"], "labels of shape"),
    "float labels": (write("f.npz", arrays_with(labels=np.zeros(N))), [f"{F}.npz"], "integers or strings"),
    "split of wrong length": (
        write("f.npz", arrays_with(split=np.array(["test"] * 5))),
        [f"{F}.npz"],
        "one split name",
    ),
    "split and class lists": (
        write("f.npz", arrays_with(test_classes=np.array(["class-00"]))),
        [f"{F}.npz"],
        "give one of them",
    ),
    "empty class list": (
        write("f.npz", arrays_with(split=None, test_classes=np.array([], dtype=str))),
        [f"{F}.npz"],
        "test_classes is empty",
    ),
    "unknown class": (
        write("f.npz", arrays_with(split=None, test_classes=np.array(["class-99"]))),
        [f"{F}.npz"],
        "'class-99', a label no row has",
    ),
    "class in two splits": (
        write(
            "f.npz", arrays_with(split=None, train_classes=np.array(["class-01"]), test_classes=np.array(["class-01"]))
        ),
        [f"{F}.npz"],
        "in both train_classes and test_classes",
    ),
    "class names too short": (
        write("f.npz", arrays_with(labels=np.repeat(np.arange(12), 25), class_names=np.array(["a", "b"]))),
        [f"{F}.npz"],
        "class_names name 0..1",
    ),
    "torch file not a dict": (torch_file("f.pt", lambda tmp: torch.zeros(3, 2)), [f"{F}.pt"], "not a dict"),
    "torch file with code": (
        torch_file("f.pt", lambda tmp: {"features": torch.zeros(N, 2), "labels": RunsCode(tmp / "ran")}),
        [f"{F}.pt"],
        "which only unpickling could read",
    ),
    "torch file with an object": (
        torch_file("f.pt", lambda tmp: {"features": torch.zeros(N, 2), "labels": fractions.Fraction(1, 2)}),
        [f"{F}.pt"],
        "holds a fractions.Fraction",
    ),
    "ragged parquet": (parquet_ragged, [f"{F}.parquet"], "different lengths"),
    "no such split": (
        write("f.npz", arrays_with()),
        [f"{F}.npz", "--split", "val"],
        "no split 'val'; splits: train, test",
    ),
    "too few classes": (write("f.npz", arrays_with()), [f"{F}.npz", "--ways", "7"], "7-way episodes need 7 classes"),
    "too few rows per class": (write("f.npz", arrays_with()), [f"{F}.npz", "--queries", "30"], "images per class"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_features_file_is_one_line_and_changes_nothing(cli, tmp_path: Path, case: str) -> None:
    setup, args, expected = MALFORMED[case]
    setup(tmp_path)
    before = snapshot(tmp_path)
    line = one_error_line(cli(*[arg.replace("{tmp}", str(tmp_path)) for arg in [*RUN, *args]]))
    assert expected in line, line
    assert snapshot(tmp_path) == before  # no results file, and no code from the file ran (no marker)
    assert not (tmp_path / "ran").exists()


def test_results_file_is_kept_when_a_features_file_goes_bad(cli, tmp_path: Path) -> None:
    """A resume whose features file has since been damaged stops in one line and keeps the groups already written."""
    path = save(tmp_path / "f.npz", toy())
    out = tmp_path / "r.h5"
    assert cli("run", "--suite", f"features:path={path}", "--learner", "protonet", "--episodes", "5", "--quiet",
               "--out", out).code == 0  # fmt: skip
    path.write_bytes(b"damaged")
    line = one_error_line(cli("run", "--resume", out, "--quiet"))
    assert "not a .npz archive" in line
    assert len(ResultsFile.open(out).group_keys()) == 2
