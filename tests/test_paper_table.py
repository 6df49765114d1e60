"""``compare --format table``: the paper's table (learners × suites and shots) in Markdown, LaTeX and HTML."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_TRAINING
from scipy import stats

from gpicl_bench import reference
from gpicl_bench.registry import Ref
from gpicl_bench.results import GroupKey, ResultsFile, load
from gpicl_bench.spec import load_spec

SOURCE = "published: CAML 2024 (CLIP ViT-B/16)"
DIGITS_SPEC = Path(__file__).resolve().parents[1] / "benchmarks" / "caml-table-digits.toml"
ATTRS = {"split": "test", "seed": 0, "device": "cpu", "episodes_per_second": 100.0}


def write_results(path: Path, groups: dict[GroupKey, np.ndarray]) -> Path:
    """A results file holding the given groups' correct counts per episode."""
    results = ResultsFile.create(path, {"name": path.stem, "seed": 0, "split": "test"})
    for key, correct in groups.items():
        results.add_group(key, np.arange(len(correct)), correct, ATTRS)
    results.close()
    return path


def random_groups(suites: list[str], learners: list[str], shots: list[int], way: int = 5, query: int = 16, n: int = 50):
    rng = np.random.default_rng(len(suites) + 10 * len(learners) + 100 * way)
    total = way * query
    return {
        GroupKey(suite, learner, way, shot, query): rng.integers(total // 3, total + 1, size=n)
        for suite in suites
        for learner in learners
        for shot in shots
    }


def markdown_tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Each table of the Markdown output: caption (the line before it), header cells, body rows' cells."""
    tables, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        end = index
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        if end > index:
            cells = [row[2:-2].split(" | ") for row in lines[index:end]]
            tables.append((lines[index - 2], cells[0], cells[2:]))
        index = end + 1
    return tables


def table_cells(text: str) -> dict[tuple[str, str, int], tuple[float, float, bool]]:
    """(learner, suite, shot) → (accuracy %, CI half-width, bold) from every measured row of the Markdown tables."""
    cells = {}
    for _, header, rows in markdown_tables(text):
        columns = [re.fullmatch(r"(.+) · (\d+)-shot", name).groups() for name in header[1:]]
        for row in rows:
            if row[0].startswith("_"):  # a published section: no more measured rows in this table
                break
            for (suite, shot), cell in zip(columns, row[1:], strict=True):
                if cell != "—":
                    bold = cell.startswith("**")
                    mean, ci = re.fullmatch(r"([\d.]+) ± ([\d.]+)", cell.strip("*")).groups()
                    cells[(row[0], suite, int(shot))] = (float(mean), float(ci), bold)
    return cells


def compare_cells(text: str, encoder: str = "") -> dict[tuple[str, str, int], tuple[float, float, bool]]:
    """The same from ``compare --format markdown``'s summary tables (the best learner starred), suite labels without
    `` [encoder]``."""
    cells, setting = {}, None
    for line in text.splitlines():
        if title := re.fullmatch(r"\*\*(.+) \(test, seed 0\) · \d+-way (\d+)-shot \d+-query\*\*", line):
            setting = (title.group(1).removesuffix(f" [{encoder}]"), int(title.group(2)))
        elif line.startswith("**"):
            setting = None  # a pair table
        elif setting and line.startswith("| "):
            cell = [c.strip("*") for c in line[2:-2].split(" | ")]
            if all(re.fullmatch(r"[\d.]+", c) for c in cell[1:3]):
                cells[(cell[0].removesuffix(" ★"), *setting)] = (float(cell[1]), float(cell[2]), cell[0].endswith("★"))
    return cells


def episodes(frame: pd.DataFrame, learner: str, suite: str, shot: int) -> np.ndarray:
    """One group's per-episode accuracies."""
    group = frame[(frame["learner"] == learner) & (frame["suite"] == suite) & (frame["shot"] == shot)]
    return group["accuracy"].to_numpy()


@pytest.fixture
def digits_file(cli, tmp_path: Path) -> Path:
    """benchmarks/caml-table-digits.toml (5-way 1- and 5-shot, 16 queries) with 60 episodes per setting; a learner it
    meta-trains on the spot is meta-trained for two tiny steps instead (the table is the subject, not the learner)."""
    learners = []
    for text in load_spec(DIGITS_SPEC).learners:
        ref = Ref.parse(text)
        learners += ["--learner", f"{ref.name}:fresh,{TINY_TRAINING}" if "fresh" in ref.options else text]
    path = tmp_path / "digits.h5"
    assert cli("run", DIGITS_SPEC, *learners, "--episodes", "60", "--quiet", "--out", path).code == 0
    return path


def test_table_numbers_match_compare_and_the_episodes(cli, digits_file: Path) -> None:
    result = cli("compare", digits_file, "--format", "table")
    assert result.code == 0 and result.err == ""
    assert result.out == cli("compare", digits_file, "--format", "table", "--style", "markdown").out
    table = table_cells(result.out)
    assert table == compare_cells(cli("compare", digits_file, "--format", "markdown").out)
    frame = load(digits_file)
    assert len(table) == len(set(frame["learner"])) * 2
    for key, (mean, ci, bold) in table.items():
        accuracy = episodes(frame, *key)
        assert mean == round(100 * accuracy.mean(), 2)
        half_width = stats.t.ppf(0.975, len(accuracy) - 1) * accuracy.std(ddof=1) / np.sqrt(len(accuracy))
        assert ci == round(100 * half_width, 2)
        best = max(episodes(frame, learner, *key[1:]).mean() for learner in set(frame["learner"]))
        assert bold == (accuracy.mean() >= best - 1e-12)
    assert sum(bold for *_, bold in table.values()) >= 2  # at least one best per column
    caption, header, _ = markdown_tables(result.out)[0]
    assert "5-way" in caption and "16 queries per class" in caption and "60 episodes per cell" in caption
    assert header == ["learner", "digits:project · 1-shot", "digits:project · 5-shot"]


def test_several_files_combine_and_mixed_ways_form_separate_tables(cli, tmp_path: Path) -> None:
    five = write_results(tmp_path / "five.h5", random_groups(["cub [clip]"], ["protonet"], [1, 5]))
    more = write_results(tmp_path / "more.h5", random_groups(["cub [clip]", "chestx [clip]"], ["knn"], [1]))
    three = write_results(tmp_path / "three.h5", random_groups(["cub [clip]"], ["protonet", "knn"], [1], way=3))
    text = cli("compare", five, more, three, "--format", "table").out
    tables = markdown_tables(text)
    assert [caption.split(" ", 1)[0] for caption, _, _ in tables] == ["5-way", "3-way"]
    caption, header, rows = tables[0]
    assert "features of clip" in caption
    assert header == ["learner", "cub · 1-shot", "cub · 5-shot", "chestx · 1-shot"]
    by_learner = {row[0]: row[1:] for row in rows}
    assert set(by_learner) == {"protonet", "knn"}
    assert by_learner["protonet"][2] == "—" and by_learner["knn"][1] == "—"  # cells nobody measured stay empty
    assert table_cells(text) == compare_cells(cli("compare", five, more, three, "--format", "markdown").out, "clip")


def test_different_queries_are_different_tables(cli, tmp_path: Path) -> None:
    groups = random_groups(["digits"], ["knn"], [1], query=15) | random_groups(["digits"], ["knn"], [1], query=16)
    text = cli("compare", write_results(tmp_path / "q.h5", groups), "--format", "table").out
    captions = [caption for caption, _, _ in markdown_tables(text)]
    assert len(captions) == 2 and "15 queries per class" in captions[0] and "16 queries per class" in captions[1]


def test_reference_rows_appear_with_the_published_values(cli, tmp_path: Path) -> None:
    suites = ["cub:preset=frn [clip]", "folder:root=cifar-fs [clip]", "digits:project"]
    path = write_results(tmp_path / "r.h5", random_groups(suites, ["protonet", "knn"], [1, 5]))
    result = cli("compare", path, "--format", "table", "--reference", "caml-2024")
    assert result.code == 0 and result.err == ""
    caption, header, rows = markdown_tables(result.out)[0]
    assert "'published' heading are copied from that paper" in caption and "never bold" in caption
    assert "features of clip" not in caption  # digits has no encoder: suite labels keep theirs
    assert [row[0] for row in rows[:3]] == ["protonet", "knn", f"_{SOURCE}_"]  # measured rows in the order written
    paper = reference.load("caml-2024").rows
    published = {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows[3:]}
    assert len(published) == paper["label"].nunique() == 9
    columns = {"cub:preset=frn [clip]": "cub", "folder:root=cifar-fs [clip]": "cifar-fs"}
    for label, cells in published.items():
        for shot in (1, 5):
            for column, suite in columns.items():
                row = paper[(paper["label"] == label) & (paper["suite"] == suite) & (paper["shot"] == shot)]
                assert cells[f"{column} · {shot}-shot"] == f"{row['accuracy_percent'].item():.1f}", (label, suite)
            assert cells[f"digits:project · {shot}-shot"] == "—"  # projected digits: the paper has no such task
    assert [published["GPICL†"][f"{suite} · {shot}-shot"] for suite in columns for shot in (1, 5)] == [
        "75.1",
        "94.5",
        "41.5",
        "78.3",
    ]
    assert not any("**" in cell for cells in published.values() for cell in cells.values())

    latex = cli("compare", path, "--format", "table", "--style", "latex", "--reference", "caml-2024").out
    assert r"GPICL\textdagger{} & 75.1 & 94.5 & 41.5 & 78.3 & --- & --- \\" in latex  # suites as written
    assert r"\multicolumn{7}{l}{\textit{published: CAML 2024 (CLIP ViT-B/16)}} \\" in latex
    html_text = cli("compare", path, "--format", "table", "--style", "html", "--reference", "caml-2024").out
    assert (
        '<tr><th scope="row">CAML†</th><td>91.8</td><td>97.1</td><td>70.8</td><td>85.5</td><td>—</td><td>—</td>'
        in html_text
    )


def latex_checks(text: str) -> list[str]:
    """Structural LaTeX problems: unbalanced braces or environments, unescaped specials, rows of the wrong width."""
    problems = []
    unescaped = re.sub(r"\\[{}&%_$#]", "", text)
    depth = lowest = 0
    for char in unescaped:
        depth += {"{": 1, "}": -1}.get(char, 0)
        lowest = min(lowest, depth)
    if lowest < 0:
        problems.append("a } closes nothing")
    elif depth:
        problems.append(f"{depth} unclosed braces")
    if re.findall(r"\\begin\{(\w+)\}", text) != re.findall(r"\\end\{(\w+)\}", text)[::-1]:
        problems.append("environments do not nest")
    for special in "_%#$":
        if special in unescaped.replace("$\\pm$", "").replace("$-$", ""):
            problems.append(f"unescaped {special}")
    spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", text).group(1)
    for line in text.splitlines():
        if line.endswith(r"\\") and r"\multicolumn{" + str(len(spec)) not in line:
            spans = sum(int(n) - 1 for n in re.findall(r"\\multicolumn\{(\d+)\}", line))
            if line.count("&") - line.count(r"\&") + 1 + spans != len(spec):
                problems.append(f"row of the wrong width: {line}")
    return problems


@pytest.fixture
def table_file(tmp_path: Path) -> Path:
    """Results written directly: protonet and knn on plain and projected digits, 5-way 1- and 5-shot."""
    return write_results(tmp_path / "t.h5", random_groups(["digits", "digits:project"], ["protonet", "knn"], [1, 5]))


def test_latex_is_structurally_sound_and_escapes_special_characters(cli, tmp_path: Path) -> None:
    learners = ["knn:k=3", "my_net 50% & more #1"]
    suites = ["folder:root=my_birds [open_clip:model=ViT-B-16]", "chestx [open_clip:model=ViT-B-16]"]
    path = write_results(tmp_path / "x.h5", random_groups(suites, learners, [1, 5]))
    text = cli("compare", path, "--format", "table", "--style", "latex").out
    assert latex_checks(text) == []
    assert r"my\_net 50\% \& more \#1 &" in text and r"\multicolumn{2}{c}{folder:root=my\_birds}" in text
    assert r"\caption{5-way accuracy (\%) with 95\% CI half-widths" in text
    assert r"\cmidrule(lr){2-3} \cmidrule(lr){4-5}" in text and r"\toprule" in text and r"\bottomrule" in text
    assert text.count(r"\textbf{") >= 4 and r"$\pm$" in text
    assert latex_checks(text.replace(r"\_", "_", 1)) == ["unescaped _"]  # the check itself can fail
    assert latex_checks(text.replace(r"\bottomrule", "}", 1)) == ["a } closes nothing"]


class TableParser(HTMLParser):
    """Checks that every tag closes in order; collects each row's cells as (text, colspan, bold)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.rows: list[list[tuple[str, int, bool]]] = []
        self.caption = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append(("", int(dict(attrs).get("colspan") or 1), False))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(f"</{tag}> closes nothing open")

    def handle_data(self, data: str) -> None:
        if "caption" in self.stack:
            self.caption += data
        elif self.stack and self.stack[-1] in ("td", "th", "strong", "em") and data.strip():
            text, span, bold = self.rows[-1][-1]
            self.rows[-1][-1] = (text + data, span, bold or "strong" in self.stack)


def parse_html(text: str) -> TableParser:
    parser = TableParser()
    parser.feed(text)
    parser.close()
    if parser.stack:
        parser.problems.append(f"unclosed: {parser.stack}")
    return parser


def test_html_is_well_formed_and_holds_the_markdown_numbers(cli, table_file: Path) -> None:
    text = cli("compare", table_file, "--format", "table", "--style", "html", "--reference", "caml-2024").out
    parser = parse_html(text)
    assert parser.problems == []
    assert "5-way accuracy (%)" in parser.caption
    suites, shots, *body = parser.rows
    assert suites == [("learner", 1, False), ("digits", 2, False), ("digits:project", 2, False)]
    assert [cell[0] for cell in shots] == ["1-shot", "5-shot"] * 2
    markdown = table_cells(cli("compare", table_file, "--format", "table").out)
    columns = [("digits", 1), ("digits", 5), ("digits:project", 1), ("digits:project", 5)]
    from_html = {}
    for learner, *cells in body:
        for (suite, shot), (cell, _, bold) in zip(columns, cells, strict=True):
            mean, ci = cell.split(" ± ")
            from_html[(learner[0], suite, shot)] = (float(mean), float(ci), bold)
    assert from_html == markdown
    broken = parse_html(text.replace("</strong>", "", 1))
    assert broken.problems  # the parser's check can fail


def test_html_escapes_labels(cli, tmp_path: Path) -> None:
    path = write_results(tmp_path / "h.h5", random_groups(["digits"], ["<b>x</b> & y"], [1]))
    parser = parse_html(cli("compare", path, "--format", "table", "--style", "html").out)
    assert parser.problems == [] and parser.rows[2][0][0] == "<b>x</b> & y"


def test_output_file_is_written_whole(cli, table_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "table.tex"
    result = cli("compare", table_file, "--format", "table", "--style", "latex", "-o", target)
    assert result.code == 0 and result.out == "" and result.err.split() == ["wrote", str(target)]
    assert target.read_text() == cli("compare", table_file, "--format", "table", "--style", "latex").out
    assert [p.name for p in target.parent.iterdir()] == ["table.tex"]  # no temporary left beside it


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--format", "table", "--style", "pdf"], "'pdf' is not one of"),
        (["--style", "latex"], "--style applies to --format table only"),
        (["--format", "markdown", "--style", "html"], "--style applies to --format table only"),
        (["--format", "table", "--margin", "0.5"], "--margin adds paired tests"),
        (["--format", "tabel"], "'tabel' is not one of"),
    ],
)
def test_bad_table_options_are_one_line_exit_2(cli, table_file: Path, tmp_path: Path, args, expected) -> None:
    target = tmp_path / "t.md"
    result = cli("compare", table_file, *args, "-o", target)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2 and len(lines) == 1 and expected in lines[0], result.err
    assert lines[0].startswith("gpicl-bench: error: ") and result.out == "" and not target.exists()


def test_results_without_finished_groups_are_one_line_exit_2(cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.h5"
    ResultsFile.create(empty, {"name": "empty", "seed": 0, "split": "test"}).close()
    result = cli("compare", empty, "--format", "table", "--reference", "caml-2024")
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert result.code == 2 and len(lines) == 1 and "no finished group" in lines[0] and result.out == ""


def test_learners_tied_up_to_summation_order_are_both_best(cli, tmp_path: Path) -> None:
    """The same accuracies in another episode order sum to means that differ in the last bits: still a tie."""
    assert (np.array([8, 16, 24]) / 80).mean() != (np.array([24, 16, 8]) / 80).mean()
    groups = {
        GroupKey("digits", name, 5, 1, 16): np.array(correct)
        for name, correct in [("a", [8, 16, 24]), ("b", [24, 16, 8]), ("c", [8, 16, 23])]
    }
    text = cli("compare", write_results(tmp_path / "tie.h5", groups), "--format", "table").out
    assert {learner: bold for (learner, *_), (*_, bold) in table_cells(text).items()} == {
        "a": True,
        "b": True,
        "c": False,
    }
