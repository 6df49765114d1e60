"""Figures of a results file: accuracy against shots with 95% CIs, and in-context learning curves.

matplotlib is an optional extra (``pip install 'gpicl-bench[plot]'``); without it, plotting is a one-line error.
"""

from __future__ import annotations

from pathlib import Path

from gpicl_bench.analysis import summarise
from gpicl_bench.errors import UserError
from gpicl_bench.results import load, load_curves


def plot_results(path: Path, out: Path) -> Path:
    """Write a PNG (or any format matplotlib infers from ``out``): accuracy vs shots per learner and suite, and,
    when the file holds them, accuracy by position in the sequence view (after t examples)."""
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
    panels = 2 if not curves.empty else 1
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False)

    shots_axis = axes[0][0]
    for (suite, way, query, learner), rows in summary.groupby(["suite", "way", "query", "learner"], sort=False):
        rows = rows.sort_values("shot")
        shots_axis.errorbar(
            rows["shot"],
            100 * rows["accuracy"],
            yerr=100 * rows["ci95"],
            marker="o",
            capsize=3,
            label=f"{learner} · {suite} · {way}-way, {query} queries",
        )
    shots_axis.set(xlabel="shots per class", ylabel="accuracy (%) ± 95% CI", title="Accuracy vs shots")
    shots_axis.set_xscale("log")
    shots_axis.minorticks_off()
    shots_axis.set_xticks(sorted(summary["shot"].unique()), labels=map(str, sorted(summary["shot"].unique())))
    shots_axis.grid(alpha=0.3)
    shots_axis.legend(fontsize=7)

    if panels == 2:
        curve_axis = axes[0][1]
        for (suite, way, shot, learner), rows in curves.groupby(["suite", "way", "shot", "learner"], sort=False):
            curve_axis.plot(rows["position"], 100 * rows["value"], label=f"{learner} · {suite} · {way}-way {shot}-shot")
            curve_axis.axvline(way * shot, color="grey", linestyle=":", linewidth=0.8)
        curve_axis.axhline(100 / curves["way"].max(), color="grey", linewidth=0.8)
        curve_axis.set(
            xlabel="examples seen (support first; dotted: end of support)",
            ylabel="accuracy (%)",
            title="In-context learning curve",
        )
        curve_axis.grid(alpha=0.3)
        curve_axis.legend(fontsize=7)

    figure.tight_layout()
    try:
        figure.savefig(out, dpi=150)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot write figure {out}: {error}") from None
    finally:
        plt.close(figure)
    return out
