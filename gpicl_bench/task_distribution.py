"""What meta-training draws: the task sources and the knobs of the task distribution, checked without torch.

Kept apart from :mod:`gpicl_bench.tasks`, which generates the batches on the device, so that a bad training knob is
reported before torch is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpicl_bench.errors import UserError

FAMILIES = ("gaussian", "nonlinear", "fields")  # the synthetic families of gpicl_bench.synthetic
SOURCES = ("suite", *FAMILIES)


@dataclass(frozen=True)
class TaskDistribution:
    """Which tasks and sequences meta-training sees; ``mix`` gives each source's share of a batch (see SOURCES)."""

    way: int = 5
    min_way: int = 0  # 0: every task has ``way`` classes; else each task's count is uniform in [min_way, way]
    length: int = 30
    min_length: int = 0  # 0: every context has ``length`` examples; else a length per step in [min_length, length]
    queries: int = 0  # query slots after the context, each read like an episode's query
    balanced: float = 0.0  # share of sequences whose context has equal class counts (else each label uniform)
    tasks: int = 0
    bias_fraction: float = 0.0
    copy_fraction: float = 0.0  # share of each batch whose tasks use one fixed example per class (exact repeats)
    project: bool = True
    mix: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0)  # shares of SOURCES, normalised
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [
            "way must be at least 2" if self.way < 2 else "",
            f"min_way must be 0 or in [2, way={self.way}]"
            if self.min_way and not 2 <= self.min_way <= self.way
            else "",
            "sequence_length must be at least 2" if self.length < 2 else "",
            f"min_length must be 0 or in [1, sequence_length={self.length}]"
            if self.min_length and not 1 <= self.min_length <= self.length
            else "",
            "queries and tasks must not be negative" if self.queries < 0 or self.tasks < 0 else "",
            *(
                f"{name} is a share between 0 and 1, got {getattr(self, name)}"
                for name in ("balanced", "bias_fraction", "copy_fraction")
                if not 0.0 <= getattr(self, name) <= 1.0
            ),
            "the shares mix_suite, mix_gaussian, mix_nonlinear and mix_fields must not be negative nor all 0"
            if len(self.mix) != len(SOURCES) or min(self.mix) < 0 or sum(self.mix) <= 0
            else "",
        ]
        problems = [problem for problem in problems if problem]
        if problems:
            raise UserError(f"invalid task distribution: {'; '.join(problems)}")

    def source_counts(self, size: int) -> list[int]:
        """How many sequences of a batch of ``size`` each source gets (contiguous blocks, in SOURCES order)."""
        total = sum(self.mix)
        bounds = [round(size * sum(self.mix[: i + 1]) / total) for i in range(len(SOURCES))]
        return [bound - previous for bound, previous in zip(bounds, [0, *bounds[:-1]], strict=True)]
