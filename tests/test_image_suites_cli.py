"""Every image suite through the command line, as a user runs it: data laid out under a data root, the pixels
encoder, protonet on seeded episodes of the `test` split. Class colours make the right answer known: 100%."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from layouts_fine_grained import write_aircraft, write_chestx, write_cub, write_folder
from layouts_imagenet import write_mini_csv, write_mini_pickles, write_tiered_npz, write_tiered_png

from gpicl_bench.results import load

# suite reference → how to write its data under the data root
LAYOUTS: dict[str, Callable[[Path], object]] = {
    "mini-imagenet": lambda root: write_mini_csv(root / "mini-imagenet"),
    "mini-imagenet:root=l2l": lambda root: write_mini_pickles(root / "l2l", val_name="val"),
    "tiered-imagenet": lambda root: write_tiered_png(root / "tiered-imagenet"),
    "tiered-imagenet:root=npz": lambda root: write_tiered_npz(root / "npz"),
    "cub": lambda root: write_cub(root / "CUB_200_2011", n_classes=12, per_class=3),
    "cub:preset=closer-look,crop": lambda root: write_cub(root / "CUB_200_2011", n_classes=16, per_class=3),
    "aircraft": lambda root: write_aircraft(root / "fgvc-aircraft-2013b", n_variants=12, per_class=3),
    "chestx": lambda root: write_chestx(root / "chestx", per_class=3),
    "folder:root=omniglot": lambda root: write_folder(root / "omniglot", ["Latin/a", "Latin/b", "Greek/a"], 3),
    "folder:root=prepared": lambda root: write_folder(root / "prepared" / "test", ["x", "y", "z", "w"], 3),
}


@pytest.mark.parametrize("suite", LAYOUTS)
def test_run_on_each_image_suite(cli, tmp_path: Path, suite: str) -> None:
    root = tmp_path / "data"
    LAYOUTS[suite](root)
    out = tmp_path / "results.h5"
    result = cli(
        "run", "--suite", suite, "--data-root", root, "--encoder", "pixels", "--learner", "protonet",
        "--ways", "3", "--shots", "1", "--queries", "2", "--episodes", "30", "--out", out, "--quiet",
    )  # fmt: skip
    assert result.code == 0, result.err
    rows = load(out)
    assert len(rows) == 30 and rows["suite"].iloc[0].endswith("[pixels]")
    assert rows["accuracy"].mean() == 1.0
