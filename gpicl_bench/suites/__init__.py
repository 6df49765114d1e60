"""The suite registry and suite references such as ``digits`` or ``digits:project``.

Every suite accepts the generic option ``project``: each episode's inputs go through its own random linear map
(GPICL's task augmentation, :func:`gpicl_bench.episodes.random_projections`). It is part of the suite's label in
results, so projected and plain evaluations never mix.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpicl_bench.registry import Ref, Registry, coerce_option
from gpicl_bench.suites.base import SplitData, Suite
from gpicl_bench.suites.digits import Digits
from gpicl_bench.suites.idx import IDX

SUITES: Registry[Suite] = Registry("suite")
SUITES.register("digits", "scikit-learn's 8×8 handwritten digits, 10 classes split by image (embedded, no download)")(
    Digits
)
SUITES.register("idx", "MNIST, Fashion-MNIST, KMNIST or EMNIST from IDX files in root=DIR (optional resize=N)")(IDX)

__all__ = ["SUITES", "OpenSuite", "SplitData", "Suite", "open_suite"]


@dataclass(frozen=True)
class OpenSuite:
    """A suite built from a reference: its canonical label (names results), the suite, and whether to project."""

    label: str
    suite: Suite
    project: bool


def open_suite(text: str) -> OpenSuite:
    ref = Ref.parse(text)
    options = dict(ref.options)
    project = coerce_option(options.pop("project", "false"), bool, f"option 'project' of suite {ref.name!r}")
    inner = SUITES.canonical(Ref(ref.name, options))
    label = str(Ref(inner.name, {**inner.options, "project": "true"})) if project else str(inner)
    return OpenSuite(label=label, suite=SUITES.build(inner), project=project)
