"""Published reference numbers: the shipped CAML table, selection by suite, and ``compare --reference``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpicl_bench import reference
from gpicl_bench.errors import UserError
from gpicl_bench.results import GroupKey, ResultsFile

SOURCE = "published: CAML 2024 (CLIP ViT-B/16)"
CUB = "cub:preset=frn [clip]"


def cell(rows: pd.DataFrame, label: str, suite: str, shot: int) -> float:
    hit = rows[(rows["label"] == label) & (rows["suite"] == suite) & (rows["shot"] == shot)]
    assert len(hit) == 1, (label, suite, shot)
    return hit["accuracy_percent"].item()


def test_caml_table_is_complete_and_exact() -> None:
    caml = reference.load("caml-2024")
    rows = caml.rows
    assert reference.available() == ["caml-2024"]
    assert list(rows.columns) == reference.COLUMNS
    assert len(rows) == 9 * 11 * 2
    assert not rows.duplicated(["label", "suite", "shot"]).any()
    assert set(rows["way"]) == {5} and set(rows["shot"]) == {1, 5} and set(rows["encoder"]) == {"CLIP ViT-B/16"}
    assert rows["suite"].nunique() == 11 and {"cub", "mini-imagenet", "tiered-meta-inat", "pascal+paintings"} <= set(
        rows["suite"]
    )
    # Cells checked against /work/shared/REFERENCE.md, section 2.
    assert cell(rows, "GPICL†", "cub", 5) == 94.5
    assert cell(rows, "GPICL†", "chestx", 5) == 20.9
    assert cell(rows, "GPICL†", "aircraft", 1) == 19.8
    assert cell(rows, "CAML†", "mini-imagenet", 1) == 96.2
    assert cell(rows, "CAML†", "pascal+paintings", 5) == 78.3
    assert cell(rows, "MetaOpt", "cub", 5) == 41.2
    assert cell(rows, "P>M>F (in-domain)", "cifar-fs", 1) == 84.3
    assert cell(rows, "SNAIL†", "tiered-meta-inat", 1) == 77.3
    frozen = rows.drop_duplicates("label").set_index("label")
    assert frozen.loc["ProtoNet†", "frozen"] and not frozen.loc["ProtoNet", "frozen"]
    assert frozen.loc["ProtoNet†", "learner"] == frozen.loc["ProtoNet", "learner"] == "protonet"
    assert "arXiv 2310.10971" in caml.metadata["source"] and "reconstructed" in caml.metadata["alignment"]
    assert caml.source == SOURCE


@pytest.mark.parametrize(
    ("label", "base"),
    [
        ("cub", "cub"),
        ("cub:preset=frn,crop", "cub"),
        ("cub:preset=frn [pixels]", "cub"),
        ("cub [clip]", "cub"),
        ("folder:root=cifar-fs [clip]", "cifar-fs"),  # a prepared test tree: named by its folder
        ("folder:root=Pascal+Paintings,project", "pascal+paintings"),
        ("folder", "folder"),
    ],
)
def test_suite_base(label: str, base: str) -> None:
    assert reference.suite_base(label) == base


def test_select_keys_published_rows_by_measured_suite_way_and_shot() -> None:
    summary = pd.DataFrame(
        {
            "suite": ["cub:preset=frn", "cub:preset=frn", "chestx", "digits", "aircraft", "cub:project [pixels]"],
            "way": [5, 5, 5, 5, 10, 5],
            "shot": [5, 5, 1, 1, 1, 1],
        }
    )
    rows = reference.select(reference.load("caml-2024"), summary)
    assert list(rows.columns) == reference.BESIDE_COLUMNS
    assert rows.groupby(["suite", "way", "shot"]).size().to_dict() == {("chestx", 5, 1): 9, ("cub:preset=frn", 5, 5): 9}
    gpicl = rows[(rows["suite"] == "cub:preset=frn") & (rows["learner"] == "GPICL†")]
    assert gpicl["accuracy"].item() == pytest.approx(0.945)
    assert set(rows["source"]) == {SOURCE}


def test_unknown_reference_lists_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown reference set 'caml-2023'.*did you mean 'caml-2024'"):
        reference.load("caml-2023")


@pytest.fixture
def cub_file(tmp_path: Path) -> Path:
    """Two learners on a ``cub`` suite label, 5-way 1- and 5-shot, on the same 20 episodes."""
    path = tmp_path / "cub.h5"
    results = ResultsFile.create(path, {"name": "cub-test", "seed": 0, "split": "test"})
    rng = np.random.default_rng(0)
    attrs = {"split": "test", "seed": 0, "device": "cpu", "episodes_per_second": 100.0}
    for shot in (1, 5):
        for learner in ("protonet", "knn"):
            correct = rng.integers(40, 76, size=20)
            results.add_group(GroupKey(CUB, learner, 5, shot, 15), np.arange(20), correct, attrs)
    return path


def test_compare_with_reference_every_format(cli, cub_file: Path) -> None:
    for fmt, marker in [("rich", "pairs"), ("markdown", "| ---"), ("latex", r"\begin{tabular}")]:
        result = cli("compare", cub_file, "--format", fmt, "--reference", "caml-2024")
        assert result.code == 0 and marker in result.out, (fmt, result.err)
        assert "copied from that paper" in result.out and CUB in result.out and result.err == ""
    markdown = cli("compare", cub_file, "--format", "markdown", "--reference", "caml-2024").out
    assert f"| GPICL† | 94.5 | — | — | {SOURCE} |" in markdown
    assert f"| CAML† | 91.8 | — | — | {SOURCE} |" in markdown
    assert markdown.count("| measured |") + markdown.count("| **measured** |") == 4  # the best learner is bold
    assert markdown.count(SOURCE) == 2 * 9
    latex = cli("compare", cub_file, "--format", "latex", "--reference", "caml-2024").out
    assert r"GPICL\textdagger{} & 94.5 & --- & --- & published: CAML 2024 (CLIP ViT-B/16) \\" in latex
    assert r"P\textgreater{}M\textgreater{}F" in latex

    plain = cli("compare", cub_file, "--format", "csv").out.splitlines()
    text = cli("compare", cub_file, "--format", "csv", "--reference", "caml-2024").out
    assert text.splitlines()[: len(plain)] == [plain[0] + ",source"] + [line + ",measured" for line in plain[1:]]
    published = pd.read_csv(io.StringIO(text)).iloc[len(plain) - 1 :]
    assert len(published) == 2 * 9 and set(published["suite"]) == {CUB} and set(published["source"]) == {SOURCE}
    assert published[["learner_b", "difference", "ci95", "p_value", "p_holm", "episodes"]].isna().all().all()
    gpicl = published[(published["learner_a"] == "GPICL†") & (published["shot"] == 5)]
    assert gpicl["accuracy_a"].item() == pytest.approx(0.945)


def test_compare_reference_without_match_notes_one_line(cli, tmp_path: Path) -> None:
    path = tmp_path / "digits.h5"
    run = ["--episodes", "10", "--shots", "1", "--learner", "protonet", "--learner", "knn", "--suite", "digits"]
    assert cli("run", *run, "--quiet", "--out", path).code == 0
    result = cli("compare", path, "--format", "markdown", "--reference", "caml-2024")
    assert result.code == 0
    assert result.out == cli("compare", path, "--format", "markdown").out
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "caml-2024 matches no result" in lines[0] and "cub" in lines[0]


def test_compare_unknown_reference_is_one_line_exit_2(cli, cub_file: Path) -> None:
    result = cli("compare", cub_file, "--reference", "nope")
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2 and len(lines) == 1 and result.out == ""
    assert lines[0].startswith("gpicl-bench: error: unknown reference set 'nope'") and "caml-2024" in lines[0]
