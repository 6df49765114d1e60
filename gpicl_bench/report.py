"""Render summaries and comparisons as rich tables, Markdown, LaTeX or CSV.

Each report is first built as plain :class:`TextTable` objects (title, header, rows of strings), so every format
shows the same numbers with the same rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
from rich.table import Table
from rich.text import Text

from gpicl_bench.analysis import SETTING, mark_best

Format = Literal["rich", "markdown", "latex", "csv"]
FORMATS: tuple[str, ...] = ("rich", "markdown", "latex", "csv")
BEST = "★"
MISSING = "—"
LEFT_COLUMNS = ("a", "b", "source")  # besides the first column
MEASURED = "measured"
PUBLISHED_NOTE = (
    "Rows whose source is 'published' are copied from that paper (its own episodes, encoder and protocol), "
    "not measured here: no CI, never starred."
)


@dataclass(frozen=True)
class TextTable:
    """A titled table of already formatted cells; ``bold`` marks rows to emphasise (the best learner); ``note`` is a
    caption under it."""

    title: str
    header: list[str]
    rows: list[list[str]]
    bold: list[bool]
    note: str = ""


def setting_title(row: pd.Series) -> str:
    return (
        f"{row['suite']} ({row['split']}, seed {row['seed']}) · "
        f"{row['way']}-way {row['shot']}-shot {row['query']}-query"
    )


def percent(value: float) -> str:
    return f"{100 * value:.2f}"


def published_percent(value: float) -> str:
    """A published accuracy (a fraction) at the precision papers print: one decimal."""
    return f"{100 * value:.1f}"


def p_value(value: float) -> str:
    if value == 0:
        return "<1e-300"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def summary_tables(summary: pd.DataFrame, speed: bool = True, published: pd.DataFrame | None = None) -> list[TextTable]:
    """Per setting: learner, accuracy (%) ± 95% CI, episodes (and episodes/s); the best learner starred.

    ``published`` rows (:func:`gpicl_bench.reference.select`) of the setting's suite, way and shot follow the measured
    ones, with a source column and the paper's precision, so they inform the reading without posing as measurements.
    """
    tables = []
    beside = {} if published is None else dict(iter(published.groupby(["suite", "way", "shot"], sort=False)))
    for _, rows in mark_best(summary).groupby(SETTING, sort=False):
        first = rows.iloc[0]
        extra = beside.get((first["suite"], first["way"], first["shot"]))
        source = [] if extra is None else [MEASURED]
        header = ["learner", "accuracy %", "± 95% CI", "episodes"] + (["episodes/s"] if speed else [])
        header += ["source"] if source else []
        cells = []
        for _, row in rows.iterrows():
            line = [
                row["learner"] + (f" {BEST}" if row["best"] else ""),
                percent(row["accuracy"]),
                percent(row["ci95"]),
                str(row["episodes"]),
            ]
            cells.append(line + ([f"{row['episodes_per_second']:,.0f}"] if speed else []) + source)
        bold = rows["best"].tolist()
        if extra is not None:
            blank = [MISSING] * (len(header) - 3)
            cells += [
                [row["learner"], published_percent(row["accuracy"]), *blank, row["source"]]
                for _, row in extra.iterrows()
            ]
            bold += [False] * len(extra)
        tables.append(TextTable(setting_title(first), header, cells, bold, "" if extra is None else PUBLISHED_NOTE))
    return tables


def pair_tables(pairs: pd.DataFrame) -> list[TextTable]:
    """Per setting: each pair's paired difference (points), its 95% CI, raw and Holm-adjusted p-values."""
    tables = []
    for _, rows in pairs.groupby(SETTING, sort=False):
        test = "paired t-test" if rows["test"].iloc[0] == "t" else "Wilcoxon signed-rank"
        header = ["a", "b", "a − b (points)", "± 95% CI", f"p ({test})", "p (Holm)", "episodes"]
        one_sided = "margin" in rows.columns
        if one_sided:
            margin = f"{100 * rows['margin'].iloc[0]:g}"
            header += ["p (a > b, one-sided)", f"p (b ≥ a − {margin} points, one-sided)"]
        cells = [
            [
                row["learner_a"],
                row["learner_b"],
                f"{100 * row['difference']:+.2f}",
                percent(row["ci95"]),
                p_value(row["p_value"]),
                p_value(row["p_holm"]),
                str(row["episodes"]),
                *([p_value(row["p_a_superior"]), p_value(row["p_b_noninferior"])] if one_sided else []),
            ]
            for _, row in rows.iterrows()
        ]
        tables.append(
            TextTable(
                "pairs · " + setting_title(rows.iloc[0]),
                header,
                cells,
                [row["p_holm"] < 0.05 for _, row in rows.iterrows()],
            )
        )
    return tables


def to_rich(table: TextTable) -> Table:
    """A rich table whose text is literal: labels such as ``cub [clip]`` or ``knn [a]`` are not markup."""
    caption = Text(table.note) if table.note else None
    out = Table(title=Text(table.title), title_justify="left", caption=caption, caption_justify="left")
    for index, name in enumerate(table.header):
        out.add_column(Text(name), justify="left" if index == 0 or name in LEFT_COLUMNS else "right")
    for cells, bold in zip(table.rows, table.bold, strict=True):
        out.add_row(*map(Text, cells), style="bold" if bold else None)
    return out


def markdown_row(cells: list[str]) -> str:
    """One Markdown table row; a ``|`` inside a cell is escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def to_markdown(table: TextTable) -> str:
    rows = [
        markdown_row([f"**{c}**" if bold else c for c in cells])
        for cells, bold in zip(table.rows, table.bold, strict=True)
    ]
    align = ["---" if i == 0 or h in LEFT_COLUMNS else "---:" for i, h in enumerate(table.header)]
    note = [f"_{table.note}_", ""] if table.note else []
    return "\n".join([f"**{table.title}**", "", markdown_row(table.header), markdown_row(align), *rows, "", *note])


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "−": r"$-$",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "†": r"\textdagger{}",
    MISSING: "---",
    BEST: r"$\star$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def to_latex(table: TextTable) -> str:
    columns = "".join("l" if i == 0 or h in LEFT_COLUMNS else "r" for i, h in enumerate(table.header))
    lines = [
        f"% {latex_escape(table.title)}",
        r"\begin{tabular}{" + columns + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in table.header) + r" \\",
        r"\midrule",
    ]
    for cells, bold in zip(table.rows, table.bold, strict=True):
        escaped = [latex_escape(c) for c in cells]
        lines.append(" & ".join(rf"\textbf{{{c}}}" if bold else c for c in escaped) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", *([f"% {latex_escape(table.note)}"] if table.note else []), ""]
    return "\n".join(lines)


def comparison_csv(summary: pd.DataFrame, pairs: pd.DataFrame, published: pd.DataFrame | None = None) -> str:
    """One tidy CSV: every pair with both learners' mean accuracies and which learner is best in the setting.

    With ``published`` (:func:`gpicl_bench.reference.select`) a ``source`` column tells measured pairs from published
    rows, which fill only suite, way, shot, ``learner_a`` and ``accuracy_a``: they have no episodes to pair.
    """
    means = summary.set_index([*SETTING, "learner"])["accuracy"]
    best = summary[summary["best"]].groupby(SETTING)["learner"].agg(" / ".join)
    frame = pairs.copy()
    index_a = pd.MultiIndex.from_frame(frame[[*SETTING, "learner_a"]].rename(columns={"learner_a": "learner"}))
    index_b = pd.MultiIndex.from_frame(frame[[*SETTING, "learner_b"]].rename(columns={"learner_b": "learner"}))
    frame.insert(len(SETTING) + 2, "accuracy_a", means.reindex(index_a).to_numpy())
    frame.insert(len(SETTING) + 3, "accuracy_b", means.reindex(index_b).to_numpy())
    frame["best_in_setting"] = best.reindex(pd.MultiIndex.from_frame(frame[SETTING])).to_numpy()
    if published is not None:
        extra = published.rename(columns={"learner": "learner_a", "accuracy": "accuracy_a"})
        frame = pd.concat([frame.assign(source=MEASURED).astype(object), extra.astype(object)], ignore_index=True)
    return frame.to_csv(index=False)
