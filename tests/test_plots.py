"""Figures a paper can use: a colour per learner in every panel, a panel per setting, error bars of the 95% CIs, shared
settings in the title rather than the legend, in-context learning curves with 95% bands and a labelled chance line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpicl_bench.stats import proportion_interval

pytestmark = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="the plot extra is absent")

LEARNERS = ("gpicl", "logreg", "protonet")


def summary_rows(suites=("digits", "digits:project"), ways=(5,), shots=(1, 2, 5), episodes=600) -> pd.DataFrame:
    rows = []
    for s, suite in enumerate(suites):
        for way in ways:
            for shot in shots:
                for n, learner in enumerate(LEARNERS):
                    accuracy = 0.5 + 0.1 * np.log2(shot) / 3 + 0.01 * n - 0.02 * s
                    rows.append(
                        dict(suite=suite, split="test", seed=0, way=way, shot=shot, query=15, learner=learner,
                             episodes=episodes, accuracy=accuracy, ci95=0.004 * (n + 1), episodes_per_second=100.0)
                    )  # fmt: skip
    return pd.DataFrame(rows)


def curve_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """A rising curve for gpicl at every shot count of every setting."""
    frames = []
    for (suite, way, shot), _ in summary.groupby(["suite", "way", "shot"]):
        length = way * (shot + 15)
        value = 1 - (1 - 1 / way) * np.exp(-np.arange(length) / 4)
        frames.append(
            pd.DataFrame(dict(suite=suite, learner="gpicl", way=way, shot=shot, query=15, split="test", seed=0,
                              position=np.arange(length), value=value))
        )  # fmt: skip
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def figure_of():
    import matplotlib.pyplot as plt

    from gpicl_bench.plots import results_figure

    made = []

    def make(summary: pd.DataFrame, curves: pd.DataFrame):
        made.append(results_figure(summary, curves))
        return made[-1]

    yield make
    for figure in made:
        plt.close(figure)


def visible_axes(figure):
    return [axis for axis in figure.axes if axis.get_visible() and axis.axison]


def test_one_colour_per_learner_in_every_panel_and_settings_in_the_title(figure_of) -> None:
    summary = summary_rows()
    figure = figure_of(summary, curve_rows(summary))
    shots_panels = [axis for axis in visible_axes(figure) if axis.get_xlabel() == "shots per class"]
    assert [axis.get_title() for axis in shots_panels] == ["digits", "digits:project"]
    colours = [{c.get_label(): c.lines[0].get_color() for c in axis.containers} for axis in shots_panels]
    assert colours[0] == colours[1] and len(set(colours[0].values())) == len(LEARNERS)
    legend = figure.legends[0]
    assert [text.get_text() for text in legend.get_texts()] == list(LEARNERS)
    assert [line.get_color() for line in legend.legend_handles] == [colours[0][name] for name in LEARNERS]
    title = figure.get_suptitle()
    assert "5-way" in title and "15 queries per class" in title and "600 episodes per point" in title
    assert "95% confidence intervals" in title


def test_error_bars_are_the_95_percent_intervals_and_learners_do_not_overlap(figure_of) -> None:
    summary = summary_rows()
    axis = figure_of(summary, pd.DataFrame())
    axis = next(a for a in visible_axes(axis) if a.get_title() == "digits")
    xs = {}
    for container in axis.containers:
        rows = summary[(summary["suite"] == "digits") & (summary["learner"] == container.get_label())]
        bars = container.lines[2][0].get_segments()
        half_widths = [(segment[1][1] - segment[0][1]) / 2 for segment in bars]
        np.testing.assert_allclose(half_widths, 100 * rows["ci95"].to_numpy())
        np.testing.assert_allclose(container.lines[0].get_ydata(), 100 * rows["accuracy"].to_numpy())
        xs[container.get_label()] = np.asarray(container.lines[0].get_xdata())
    assert np.all(xs["gpicl"] < xs["logreg"]) and np.all(xs["logreg"] < xs["protonet"])
    np.testing.assert_allclose(xs["logreg"], [1, 2, 5])  # the middle learner sits on its shot count
    assert np.all(xs["protonet"] / xs["logreg"] < 1.05)  # the others only nudged


def test_curve_panel_has_a_band_a_labelled_chance_line_and_the_end_of_the_support(figure_of) -> None:
    summary = summary_rows(episodes=3000)
    curves = curve_rows(summary)
    figure = figure_of(summary, curves)
    curve_axes = [axis for axis in visible_axes(figure) if "in-context learning" in axis.get_title()]
    assert [axis.get_title() for axis in curve_axes] == [
        "digits: in-context learning, 5-shot",
        "digits:project: in-context learning, 5-shot",
    ]
    axis = curve_axes[0]
    [line] = [line for line in axis.get_lines() if line.get_label() == "gpicl"]
    expected = curves[(curves["suite"] == "digits") & (curves["shot"] == 5)]
    np.testing.assert_allclose(line.get_ydata(), 100 * expected["value"])
    band = proportion_interval(expected["value"].to_numpy(), 1000)  # the curve averages the first 1,000 episodes
    [outline] = axis.collections[0].get_paths()
    edges = pd.DataFrame(outline.vertices, columns=["x", "y"]).groupby("x")["y"]
    np.testing.assert_allclose(edges.min().loc[expected["position"]], 100 * band.low)
    np.testing.assert_allclose(edges.max().loc[expected["position"]], 100 * band.high)
    texts = {text.get_text(): text for text in axis.texts}
    assert texts["chance (20%)"].xy[1] == pytest.approx(20)
    assert texts["support ends"].xy[0] == 25  # 5-way 5-shot
    assert {tuple(line.get_ydata()) for line in axis.get_lines() if line.get_linestyle() == "--"} == {(20, 20)}


def test_settings_that_differ_name_their_panels_and_many_panels_wrap(figure_of) -> None:
    summary = summary_rows(suites=("a", "b", "c"), ways=(5, 10), shots=(1,))
    figure = figure_of(summary, pd.DataFrame())
    titles = [axis.get_title() for axis in visible_axes(figure)]
    assert titles == ["a · 5-way", "a · 10-way", "b · 5-way", "b · 10-way", "c · 5-way", "c · 10-way"]
    assert "-way" not in figure.get_suptitle()
    assert len(figure.axes) == 8  # two rows of four, the last two hidden


def test_wilson_intervals() -> None:
    """Known values (Wilson 1927; Newcombe 1998), and bounds that stay inside [0, 1] at 0% and 100%."""
    band = proportion_interval(np.array([0.5, 0.0, 1.0, 0.2]), 100)
    np.testing.assert_allclose(band.low, [0.4038, 0.0, 0.9630, 0.1333], atol=1e-4)
    np.testing.assert_allclose(band.high, [0.5962, 0.0370, 1.0, 0.2888], atol=1e-4)


def test_plot_command_writes_png_pdf_and_svg(cli, tmp_path: Path) -> None:
    results = tmp_path / "r.h5"
    run = ["run", "--suite", "digits", "--learner", "protonet", "--learner", "gpicl", "--shots", "1", "--shots", "2",
           "--episodes", "20", "--quiet", "--out", results]  # fmt: skip
    assert cli(*run).code == 0
    outputs = [tmp_path / "figs" / f"f.{fmt}" for fmt in ("png", "pdf", "svg")]
    result = cli("plot", results, *[arg for out in outputs for arg in ("-o", out)])
    assert result.code == 0, result.err
    assert result.out.splitlines() == [f"figure: {out}" for out in outputs]
    png, pdf, svg = (out.read_bytes() for out in outputs)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and pdf.startswith(b"%PDF") and b"<svg" in svg[:1000]
    assert b"FontFile2" in pdf  # TrueType embedded: journals refuse Type 3 fonts
    again = tmp_path / "again.svg"
    assert cli("plot", results, "-o", again).code == 0
    assert again.read_bytes() == svg  # the same results give the same file


def test_plot_refuses_bad_outputs_in_one_line(cli, tmp_path: Path) -> None:
    results = tmp_path / "r.h5"
    assert (
        cli("run", "--suite", "digits", "--learner", "protonet", "--episodes", "5", "--quiet", "--out", results).code
        == 0
    )
    good, bad = tmp_path / "f.png", tmp_path / "f.jpeg"
    result = cli("plot", results, "-o", good, "-o", bad)
    assert (
        result.code == 2
        and result.err.strip() == f"gpicl-bench: error: cannot write figure {bad}: name it .png, .pdf or .svg"
    )
    assert not good.exists()  # nothing written before every output is known good
