"""The shape of an episode, N-way K-shot Q-query: validated where specs are read, without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from gpicl_bench.errors import UserError


@dataclass(frozen=True)
class EpisodeShape:
    """N-way K-shot Q-query: ``way`` classes, ``shot`` support and ``query`` query images per class."""

    way: int
    shot: int
    query: int

    def __post_init__(self) -> None:
        for name in ("way", "shot", "query"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.way < 2:
            raise UserError(f"way must be at least 2, got {self.way}")

    def __str__(self) -> str:
        return f"{self.way}-way {self.shot}-shot {self.query}-query"
