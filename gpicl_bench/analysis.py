"""Summaries and paired comparisons of results, as DataFrames that the reports render and users can keep.

A *setting* is what makes episodes identical: (suite, split, seed, way, shot, query). Groups of the same setting —
from one file or several — saw the very same episodes, so learners are compared episode by episode.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pandas as pd

from gpicl_bench.errors import UserError
from gpicl_bench.results import load
from gpicl_bench.stats import PairedTest, holm, mean_interval, noninferiority_p, paired_difference

SETTING = ["suite", "split", "seed", "way", "shot", "query"]

log = logging.getLogger(__name__)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per group: episodes, mean accuracy and its 95% CI half-width, episodes/s."""
    rows = []
    for keys, group in frame.groupby([*SETTING, "learner"], sort=False):
        interval = mean_interval(group["accuracy"].to_numpy())
        rows.append(
            {
                **dict(zip([*SETTING, "learner"], keys, strict=True)),
                "episodes": interval.n,
                "accuracy": interval.mean,
                "ci95": interval.half_width,
                "episodes_per_second": group["episodes_per_second"].iloc[0],
            }
        )
    columns = [*SETTING, "learner", "episodes", "accuracy", "ci95", "episodes_per_second"]
    return pd.DataFrame(rows, columns=columns)


TIE = 1e-12  # means this close are one: the same accuracies summed in another order differ in the last bits


def mark_best(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with a ``best`` column: the highest mean accuracy of its setting (tied learners are all best)."""
    highest = summary.groupby(SETTING)["accuracy"].transform("max")
    return summary.assign(best=summary["accuracy"] >= highest - TIE)


def load_many(paths: list[Path]) -> pd.DataFrame:
    """Per-episode rows of several files (a file named twice is read once); a learner found in more than one file
    is named with its file. Files without any finished group leave nothing to compare: a user error."""
    paths = list({Path(path).resolve(): Path(path) for path in paths}.values())
    frames = []
    for path in paths:
        frame = load(path)
        frame.insert(0, "source", str(path))
        frames.append(frame)
    combined = pd.concat(frames, ignore_index=True)
    if combined.empty:
        raise UserError(f"nothing to compare: {', '.join(map(str, paths))} hold(s) no finished group")
    for suite in suites_on_different_data(combined):
        log.warning("results labelled %r come from different data (their data fingerprints differ)", suite)
    sources = combined.groupby([*SETTING, "learner"])["source"].transform("nunique")
    if (sources > 1).any():
        stems = {p: Path(p).stem for p in map(str, paths)}
        if len(set(stems.values())) < len(stems):
            stems = {p: p for p in stems}
        clash = sources > 1
        combined.loc[clash, "learner"] = (
            combined.loc[clash, "learner"] + " [" + combined.loc[clash, "source"].map(stems) + "]"
        )
    return combined


def suites_on_different_data(frame: pd.DataFrame) -> list[str]:
    """Suite labels whose groups record different data fingerprints: one name, different data, so pairing them
    compares learners on different episodes' contents. Groups without a fingerprint (older files) are not judged."""
    known = frame[frame["data_fingerprint"].fillna("") != ""]
    counts = known.groupby("suite")["data_fingerprint"].nunique()
    return sorted(counts[counts > 1].index)


def compare(
    frame: pd.DataFrame, test: PairedTest = "t", margin: float | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary (with the best learner of each setting marked) and every pair of learners within a setting.

    Pairs are ordered so that ``difference`` = accuracy(a) − accuracy(b) ≥ 0 on their common episodes; p-values are
    two-sided, with Holm's adjustment over the pairs of the setting. With a ``margin`` (accuracy, e.g. 0.005 for half
    a point) each pair also gets ``p_b_noninferior``: the one-sided p-value that b, the lower of the two, is at least
    as good as a up to the margin (and ``p_a_superior``, that a is better than b).
    """
    summary = mark_best(summarise(frame))
    pair_rows = []
    episodes_by_setting = dict(iter(frame.groupby(SETTING, sort=False)))
    for setting, rows in summary.groupby(SETTING, sort=False):
        in_setting = episodes_by_setting[setting]
        by_learner = {
            learner: group.set_index("episode")["accuracy"] for learner, group in in_setting.groupby("learner")
        }
        ranked = rows.sort_values("accuracy", ascending=False)["learner"].tolist()
        setting_pairs = []
        for a, b in itertools.combinations(ranked, 2):
            both = pd.concat([by_learner[a], by_learner[b]], axis=1, join="inner")
            if both.empty:
                continue
            accuracy_a, accuracy_b = both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy()
            result = paired_difference(accuracy_a, accuracy_b, test)
            one_sided = {}
            if margin is not None:
                one_sided = {
                    "margin": margin,
                    "p_a_superior": noninferiority_p(accuracy_a, accuracy_b, 0.0, test),
                    "p_b_noninferior": noninferiority_p(accuracy_b, accuracy_a, margin, test),
                }
            setting_pairs.append(
                {
                    **dict(zip(SETTING, setting, strict=True)),
                    "learner_a": a,
                    "learner_b": b,
                    "episodes": result.difference.n,
                    "difference": result.difference.mean,
                    "ci95": result.difference.half_width,
                    "p_value": result.p_value,
                    "test": test,
                    **one_sided,
                }
            )
        for row, adjusted in zip(setting_pairs, holm([r["p_value"] for r in setting_pairs]), strict=True):
            row["p_holm"] = adjusted
        pair_rows.extend(setting_pairs)
    columns = [*SETTING, "learner_a", "learner_b", "episodes", "difference", "ci95", "p_value", "p_holm", "test"]
    if margin is not None:
        columns += ["margin", "p_a_superior", "p_b_noninferior"]
    return summary, pd.DataFrame(pair_rows, columns=columns)
