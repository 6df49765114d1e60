"""Figures of a results file for papers: accuracy against shots with 95% CIs, and in-context learning curves with
95% bands.

One panel per setting but its shots (suite, way, query, split, seed): every point of a panel comes from the same
episodes. A learner keeps one colour and marker in every panel; what all panels share is said once, in the title, so
that the legend names learners only. Neighbouring learners' points are nudged apart along the shots axis so that no
error bar hides another. matplotlib is an optional extra (``pip install 'gpicl-bench[plot]'``); without it, plotting
is a one-line error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gpicl_bench import atomic
from gpicl_bench.analysis import summarise
from gpicl_bench.errors import UserError
from gpicl_bench.evaluation import CURVE_EPISODES
from gpicl_bench.results import load, load_curves
from gpicl_bench.stats import proportion_interval

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = ("png", "pdf", "svg")
PANEL = ["suite", "way", "query", "split", "seed"]  # a setting but its shots
# Okabe & Ito's colour-blind-safe palette (their yellow is too pale on white), with a marker each for greyscale prints.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DODGE = 0.05  # log2 units between neighbouring learners' points at one shot count (3.5% of the shot count)
MARGIN = 2**0.4  # room on the shots axis beyond the first and last shot counts (a factor)
MAX_COLUMNS = 4
MIN_WIDTH = 5.0  # inches: room for the title of a single panel
TITLE_CHARACTERS_PER_INCH = 12  # at 9 points
STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 9,
    "pdf.fonttype": 42,  # TrueType fonts in PDFs: journals refuse Type 3
    "svg.fonttype": "none",  # text stays text in SVGs
    "svg.hashsalt": "gpicl-bench",  # the same figure gives the same SVG
}


def plot_results(path: Path, outputs: Sequence[Path]) -> list[Path]:
    """Write the figure of a results file to every output, in the format its suffix names (png, pdf or svg)."""
    for out in outputs:
        if out.suffix.lower().lstrip(".") not in FORMATS:
            raise UserError(f"cannot write figure {out}: name it .png, .pdf or .svg")
        atomic.check_writable(out, "figure")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("plot needs matplotlib: pip install 'gpicl-bench[plot]'") from None
    summary = summarise(load(path))
    if summary.empty:
        raise UserError(f"{path} holds no results to plot")
    curves = load_curves(path)
    for out in outputs:  # a figure each: the layout depends on the format's resolution, and no file on another's
        fmt = out.suffix.lower().lstrip(".")
        with matplotlib.rc_context(STYLE):
            figure = results_figure(summary, curves)
            try:
                with atomic.replacing(out) as temporary:
                    figure.savefig(temporary, format=fmt, dpi=200, metadata=_reproducible_metadata(fmt))
            finally:
                plt.close(figure)
    return list(outputs)


def results_figure(summary: pd.DataFrame, curves: pd.DataFrame) -> Figure:
    """The figure: a row of accuracy-vs-shots panels and, when the file holds in-context learning curves, the curves
    of the same settings beneath them (wrapped every MAX_COLUMNS panels)."""
    import matplotlib.pyplot as plt

    learners = list(dict.fromkeys(summary["learner"]))
    styles = {name: (COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]) for i, name in enumerate(learners)}
    panels = list(summary.groupby(PANEL, sort=False))
    shared, varying = _shared_settings(summary)
    rows_per_panel = 2 if not curves.empty else 1
    columns = min(len(panels), MAX_COLUMNS)
    blocks = math.ceil(len(panels) / columns)
    width = max(3.6 * columns, MIN_WIDTH)
    figure, axes = plt.subplots(
        blocks * rows_per_panel,
        columns,
        figsize=(width, 3.1 * blocks * rows_per_panel + 1.0),
        squeeze=False,
        layout="constrained",
    )
    for axis in axes.flat:
        axis.set_visible(False)
    for index, (setting, rows) in enumerate(panels):
        block, column = divmod(index, columns)
        title = _panel_title(dict(zip(PANEL, setting, strict=True)), varying)
        shots_axis = axes[block * rows_per_panel][column]
        _shots_panel(shots_axis, rows, styles, learners, title)
        if rows_per_panel == 2:
            mask = np.logical_and.reduce([curves[c] == v for c, v in zip(PANEL, setting, strict=True)])
            _curve_panel(axes[block * rows_per_panel + 1][column], curves[mask], rows, styles, title)
    handles = [
        plt.Line2D([], [], color=colour, marker=marker, linewidth=1.5, markersize=5, label=name)
        for name, (colour, marker) in styles.items()
    ]
    figure.suptitle(_title_lines(shared, int(width * TITLE_CHARACTERS_PER_INCH)))
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False)
    return figure


def _shared_settings(summary: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The parts of the title saying what every panel shares (and how the numbers were made; "\\n" starts a line),
    and the setting columns whose values differ between panels (each panel's title names those)."""
    constant = {c: summary[c].iloc[0] for c in PANEL if summary[c].nunique() == 1}
    varying = [c for c in PANEL if c not in constant]
    parts = []
    if "way" in constant:
        parts.append(f"{constant['way']}-way")
    if "query" in constant:
        parts.append(f"{constant['query']} queries per class")
    if "split" in constant:
        parts.append(f"{constant['split']} split")
    if "seed" in constant:
        parts.append(f"seed {constant['seed']}")
    low, high = int(summary["episodes"].min()), int(summary["episodes"].max())
    parts.append(f"{low:,} episodes per point" if low == high else f"{low:,}–{high:,} episodes per point")
    return [*parts, "\n", "mean accuracy with 95% confidence intervals"], varying


def _title_lines(parts: list[str], width: int) -> str:
    """Parts joined by " · " in lines of at most ``width`` characters, broken only between parts (and at "\\n")."""
    lines = [""]
    for part in parts:
        if part == "\n":
            lines.append("")
        elif lines[-1] and len(lines[-1]) + 3 + len(part) > width:
            lines.append(part)
        else:
            lines[-1] = f"{lines[-1]} · {part}" if lines[-1] else part
    return "\n".join(lines)


def _panel_title(setting: dict[str, Any], varying: list[str]) -> str:
    words = {"way": "{}-way", "query": "{} queries", "split": "{} split", "seed": "seed {}"}
    extra = [words[c].format(setting[c]) for c in varying if c != "suite"]
    return " · ".join([str(setting["suite"]), *extra])


def _shots_panel(
    axis: Axes,
    rows: pd.DataFrame,
    styles: dict[str, tuple[str, str]],
    learners: list[str],
    title: str,
) -> None:
    """Accuracy (%) against shots per class, one line per learner with 95% CI error bars, nudged apart."""
    axis.set_visible(True)
    middle = (len(learners) - 1) / 2
    for name, group in rows.groupby("learner", sort=False):
        group = group.sort_values("shot")
        colour, marker = styles[name]
        nudge = 2 ** (DODGE * (learners.index(name) - middle))
        axis.errorbar(
            group["shot"].to_numpy(float) * nudge,
            100 * group["accuracy"].to_numpy(float),
            yerr=100 * group["ci95"].to_numpy(float),
            color=colour,
            marker=marker,
            markersize=4,
            linewidth=1.3,
            elinewidth=1.3,
            capsize=3,
            label=name,
        )
    shots = sorted(rows["shot"].unique())
    axis.set_xscale("log", base=2)
    axis.set_xlim(shots[0] / MARGIN, shots[-1] * MARGIN)
    axis.set_xticks(shots, labels=[str(s) for s in shots])
    axis.minorticks_off()
    axis.set(xlabel="shots per class", ylabel="accuracy (%)", title=title)
    axis.grid(alpha=0.3)


def _curve_panel(
    axis: Axes, curves: pd.DataFrame, summary: pd.DataFrame, styles: dict[str, tuple[str, str]], title: str
) -> None:
    """Accuracy at each position of the sequence view (after t examples) with a 95% band, at the largest shot count
    the setting has curves for; chance and the end of the support marked and labelled."""
    axis.set_visible(True)
    if curves.empty:
        axis.text(0.5, 0.5, "no in-context learner here", ha="center", va="center", transform=axis.transAxes)
        axis.set_axis_off()
        return
    shot = int(curves["shot"].max())
    curves = curves[curves["shot"] == shot]
    way = int(curves["way"].iloc[0])
    for name, rows in curves.groupby("learner", sort=False):
        episodes = summary.loc[(summary["learner"] == name) & (summary["shot"] == shot), "episodes"].iloc[0]
        band = proportion_interval(rows["value"].to_numpy(), min(int(episodes), CURVE_EPISODES))
        colour, _ = styles[name]
        position = rows["position"].to_numpy(float)
        axis.fill_between(position, 100 * band.low, 100 * band.high, color=colour, alpha=0.25, linewidth=0)
        axis.plot(position, 100 * rows["value"].to_numpy(float), color=colour, linewidth=1.2, label=name)
    support_end = way * shot
    axis.axvline(support_end, color="grey", linestyle=":", linewidth=1)
    axis.annotate(
        "support ends",
        (support_end, 0.02),
        xycoords=("data", "axes fraction"),
        xytext=(3, 0),
        textcoords="offset points",
        color="grey",
    )
    axis.axhline(100 / way, color="grey", linestyle="--", linewidth=1)
    axis.annotate(
        f"chance ({100 / way:.0f}%)",
        (1, 100 / way),
        xycoords=("axes fraction", "data"),
        xytext=(-3, 3),
        textcoords="offset points",
        ha="right",
        color="grey",
    )
    axis.set(
        xlabel="examples seen (support, then queries)",
        ylabel="accuracy at that position (%)",
        title=f"{title}: in-context learning, {shot}-shot",
    )
    axis.grid(alpha=0.3)


def _reproducible_metadata(fmt: str) -> dict[str, Any]:
    """No creation date in PDFs and SVGs, so that regenerating a figure from the same results gives the same file."""
    return {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(fmt, {})
