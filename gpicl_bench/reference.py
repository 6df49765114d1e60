"""Published reference numbers, shown beside measured results so a reader can place them — never mixed into them.

A reference set is one CSV shipped in ``gpicl_bench/published/`` (the only copy, so the installed tool has it and
nothing can drift): leading ``# key: value`` lines give its provenance (``display`` names it in reports), then one row
per published cell: ``learner, label, frozen, suite, paper_suite, way, shot, accuracy_percent, encoder``. ``suite``
uses this tool's suite names; ``label`` is the paper's learner name (``GPICL†``).
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gpicl_bench.errors import unknown_name_error
from gpicl_bench.registry import Ref

PUBLISHED = Path(__file__).resolve().parent / "published"
COLUMNS = ["learner", "label", "frozen", "suite", "paper_suite", "way", "shot", "accuracy_percent", "encoder"]
BESIDE_COLUMNS = ["suite", "way", "shot", "learner", "accuracy", "source"]


@dataclass(frozen=True)
class ReferenceSet:
    """One published table: its name, provenance (``# key: value`` lines) and rows (columns :data:`COLUMNS`)."""

    name: str
    metadata: dict[str, str]
    rows: pd.DataFrame

    @property
    def source(self) -> str:
        """How reports mark its rows, so that nobody takes them for measurements."""
        return f"published: {self.metadata.get('display', self.name)}"


def available() -> list[str]:
    """Names of the shipped reference sets (CSV file stems)."""
    return sorted(path.stem for path in PUBLISHED.glob("*.csv"))


def load(name: str) -> ReferenceSet:
    """A shipped reference set by name; an unknown name is a user error listing the known ones."""
    if name not in available():
        raise unknown_name_error("reference set", name, available())
    lines = (PUBLISHED / f"{name}.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    header = list(itertools.takewhile(lambda line: line.startswith("#"), lines))
    metadata = dict(line[1:].strip().split(": ", 1) for line in header)
    return ReferenceSet(name, metadata, pd.read_csv(io.StringIO("".join(lines[len(header) :]))))


def suite_base(label: str) -> str:
    """The suite name in a result suite label (``cub:preset=frn [pixels]`` → ``cub``): what references are keyed by.
    A ``folder`` suite is named by its folder (``folder:root=cifar-fs [clip]`` → ``cifar-fs``), as the prepared
    test trees of suites without a loader of their own are."""
    name = re.split(r"[:\s\[]", label.strip(), maxsplit=1)[0].lower()
    if name == "folder":
        root = Ref.parse(label.split(" [", 1)[0]).options.get("root", "")
        return Path(root).name.lower() or name
    return name


def projected(label: str) -> bool:
    """Whether a result suite label has the ``project`` option (``cub:preset=frn,project [pixels]``)."""
    return Ref.parse(label.split(" [", 1)[0]).options.get("project") == "true"


def select(reference: ReferenceSet, summary: pd.DataFrame) -> pd.DataFrame:
    """The published rows for the (unprojected) suites, ways and shots in ``summary``, keyed by the measured suite
    label.

    Columns :data:`BESIDE_COLUMNS`; ``learner`` is the paper's label and ``accuracy`` a fraction like measured ones.
    """
    keys = summary[["suite", "way", "shot"]].drop_duplicates()
    keys = keys[~keys["suite"].map(projected)]  # a randomly projected suite is another task than the paper's
    keys = keys.assign(base=keys["suite"].map(suite_base))
    published = reference.rows.rename(columns={"suite": "base"})
    matched = keys.merge(published, on=["base", "way", "shot"])
    return pd.DataFrame(
        {
            "suite": matched["suite"],
            "way": matched["way"],
            "shot": matched["shot"],
            "learner": matched["label"],
            "accuracy": matched["accuracy_percent"] / 100,
            "source": reference.source,
        },
        columns=BESIDE_COLUMNS,
    )


def beside(summary: pd.DataFrame, names: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Published rows of the named sets for ``summary``, and one note per set that matches none of its settings."""
    references = [load(name) for name in dict.fromkeys(names)]  # all names checked before any output
    frames, notes = [], []
    for reference in references:
        rows = select(reference, summary)
        if rows.empty:
            published = reference.rows
            ways = "/".join(map(str, sorted(set(published["way"]))))
            shots = "/".join(map(str, sorted(set(published["shot"]))))
            suites = ", ".join(dict.fromkeys(published["suite"]))
            notes.append(f"note: reference {reference.name} matches no result; it has {ways}-way {shots}-shot {suites}")
        else:
            frames.append(rows)
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=BESIDE_COLUMNS)), notes
