"""The table few-shot papers print: learners as rows, a column group per suite with one column per shot, each cell
the mean accuracy (%) ± its 95% CI half-width, the best measured cell of each column in bold — in Markdown, LaTeX
(booktabs) or HTML.

One table per (split, seed, way, query): its cells differ only by suite and shot, so its caption states the rest once
and no two groups of results can claim the same cell. Published rows (``compare --reference``) follow the measured
ones under a heading per source, at the paper's precision, with no CI, never bold: they are not measurements of these
episodes.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from gpicl_bench.analysis import mark_best
from gpicl_bench.report import MISSING, latex_escape, markdown_row, percent, published_percent

Style = Literal["markdown", "latex", "html"]
TABLE_KEYS = ["split", "seed", "way", "query"]  # what one table's cells share


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False


Row = tuple[str, list[Cell]]  # a learner and its cells


@dataclass(frozen=True)
class Section:
    """Rows under one heading: the measured learners (no heading) or the rows of one published source."""

    heading: str
    rows: list[Row]


@dataclass(frozen=True)
class PaperTable:
    """Column ``(suite, shot)`` pairs in display order, grouped by suite; sections of rows; a caption."""

    caption: str
    columns: list[tuple[str, int]]
    sections: list[Section]

    def suite_spans(self) -> list[tuple[str, int]]:
        """Each suite with the number of its (adjacent) shot columns."""
        spans: list[tuple[str, int]] = []
        for suite, _ in self.columns:
            if spans and spans[-1][0] == suite:
                spans[-1] = (suite, spans[-1][1] + 1)
            else:
                spans.append((suite, 1))
        return spans


def _encoder_of(suite_label: str) -> str | None:
    """The encoder that an image suite's label names in brackets (``cub:preset=frn [clip]`` → ``clip``)."""
    if suite_label.endswith("]") and " [" in suite_label:
        return suite_label[suite_label.index(" [") + 2 : -1]
    return None


def _caption(rows: pd.DataFrame, encoder: str | None, published: bool) -> str:
    """What every cell of the table shares, in words."""
    first = rows.iloc[0]
    episodes = sorted(set(rows["episodes"]))
    count = f"{episodes[0]:,}" if len(episodes) == 1 else f"{episodes[0]:,} to {episodes[-1]:,}"
    parts = [
        f"{first['way']}-way accuracy (%) with 95% CI half-widths",
        f"{first['query']} queries per class",
        f"{first['split']} split, seed {first['seed']}, {count} episodes per cell",
    ]
    if encoder is not None:
        parts.append(f"features of {encoder}")
    text = "; ".join(parts) + ". Bold: the best measured learner of each column."
    if published:
        text += (
            " Rows under a 'published' heading are copied from that paper (its own episodes, encoder and protocol), "
            "not measured here: no CI, never bold."
        )
    return text


def _rows(frame: pd.DataFrame, columns: list[tuple[str, int]], cell: Callable[[Any], Cell]) -> list[Row]:
    """One row per learner of ``frame`` (first-seen order): its cell per column, ``—`` where it has none."""
    rows = []
    for learner, group in frame.groupby("learner", sort=False):
        cells = {(r.suite, r.shot): cell(r) for r in group.itertuples()}
        rows.append((learner, [cells.get(column, Cell(MISSING)) for column in columns]))
    return rows


def _measured(r: Any) -> Cell:
    return Cell(f"{percent(r.accuracy)} ± {percent(r.ci95)}", bool(r.best))


def _published(r: Any) -> Cell:
    return Cell(published_percent(r.accuracy))


def paper_tables(summary: pd.DataFrame, published: pd.DataFrame | None = None) -> list[PaperTable]:
    """The tables of a summary (:func:`gpicl_bench.analysis.summarise`), with ``published`` rows
    (:func:`gpicl_bench.reference.beside`) for the columns they match."""
    tables = []
    for _, rows in mark_best(summary).groupby(TABLE_KEYS, sort=False):
        suites = list(dict.fromkeys(rows["suite"]))
        columns = [(suite, shot) for suite in suites for shot in sorted(set(rows.loc[rows["suite"] == suite, "shot"]))]
        sections = [Section("", _rows(rows, columns, _measured))]
        if published is not None:
            in_columns = pd.MultiIndex.from_frame(published[["suite", "shot"]]).isin(columns)
            matched = published[(published["way"] == rows["way"].iloc[0]).to_numpy() & in_columns]
            for source, beside in matched.groupby("source", sort=False):
                sections.append(Section(source, _rows(beside, columns, _published)))
        encoders = {_encoder_of(suite) for suite in suites}
        shared = encoders.pop() if len(encoders) == 1 else None
        if shared is not None:  # said once in the caption
            columns = [(suite[: -len(f" [{shared}]")], shot) for suite, shot in columns]
        tables.append(PaperTable(_caption(rows, shared, len(sections) > 1), columns, sections))
    return tables


def to_markdown(table: PaperTable) -> str:
    """A caption line and a pipe table; Markdown has one header row, so a column reads ``suite · N-shot``."""
    width = len(table.columns)
    lines = [
        table.caption,
        "",
        markdown_row(["learner", *(f"{suite} · {shot}-shot" for suite, shot in table.columns)]),
        markdown_row(["---", *["---:"] * width]),
    ]
    for section in table.sections:
        if section.heading:
            lines.append(markdown_row([f"_{section.heading}_", *[""] * width]))
        for learner, cells in section.rows:
            lines.append(markdown_row([learner, *(f"**{c.text}**" if c.best else c.text for c in cells)]))
    return "\n".join([*lines, ""])


def to_latex(table: PaperTable) -> str:
    """A ``table`` float with a booktabs ``tabular``: a suite row spanning its shot columns, then the shots."""
    width = len(table.columns) + 1
    spans = table.suite_spans()
    suites, rules, start = [], [], 2
    for suite, span in spans:
        suites.append(rf"\multicolumn{{{span}}}{{c}}{{{latex_escape(suite)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + span - 1}}}")
        start += span
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.caption)}}}",
        r"\begin{tabular}{l" + "c" * (width - 1) + "}",
        r"\toprule",
        " & ".join(["", *suites]) + r" \\",
        " ".join(rules),
        " & ".join(["learner", *(f"{shot}-shot" for _, shot in table.columns)]) + r" \\",
    ]
    for section in table.sections:
        lines.append(r"\midrule")
        if section.heading:
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{latex_escape(section.heading)}}}}} \\")
        for learner, cells in section.rows:
            texts = [rf"\textbf{{{latex_escape(c.text)}}}" if c.best else latex_escape(c.text) for c in cells]
            lines.append(" & ".join([latex_escape(learner), *texts]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def to_html(table: PaperTable) -> str:
    """A ``<table>`` with a caption, a two-row header (suites spanning their shots) and a ``<tbody>`` per section."""
    width = len(table.columns) + 1
    suites = "".join(f'<th colspan="{span}">{html.escape(suite)}</th>' for suite, span in table.suite_spans())
    shots = "".join(f"<th>{shot}-shot</th>" for _, shot in table.columns)
    lines = [
        "<table>",
        f"<caption>{html.escape(table.caption)}</caption>",
        "<thead>",
        f'<tr><th rowspan="2">learner</th>{suites}</tr>',
        f"<tr>{shots}</tr>",
        "</thead>",
    ]
    for section in table.sections:
        lines.append("<tbody>")
        if section.heading:
            lines.append(f'<tr><th colspan="{width}"><em>{html.escape(section.heading)}</em></th></tr>')
        for learner, cells in section.rows:
            texts = "".join(
                f"<td><strong>{html.escape(c.text)}</strong></td>" if c.best else f"<td>{html.escape(c.text)}</td>"
                for c in cells
            )
            lines.append(f'<tr><th scope="row">{html.escape(learner)}</th>{texts}</tr>')
        lines.append("</tbody>")
    lines += ["</table>", ""]
    return "\n".join(lines)


RENDERERS = {"markdown": to_markdown, "latex": to_latex, "html": to_html}


def render(summary: pd.DataFrame, published: pd.DataFrame | None, style: Style) -> str:
    """Every table of ``summary`` in one style, one after another."""
    return "\n".join(RENDERERS[style](table) for table in paper_tables(summary, published))
