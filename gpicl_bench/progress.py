"""A run's progress as plain lines, for logs: where stderr is not a terminal (a pipe, a file, a batch job) no bar
can redraw, so a run says what it has done in lines instead — one per finished group, and one every few minutes
within a long group — with episodes, rate and the time left, for the group and for the run.

The run's time left counts the groups not started yet at the latest rate measured for their learner (any suite or
shape), else at the time a long run's timed first batch expects; a learner with neither makes the figure a lower
bound ("≥", naming the learners not timed yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpicl_bench.engine import RunPlan
    from gpicl_bench.results import GroupKey

LINE_EVERY_SECONDS = 180.0  # within a long group


def duration(seconds: float) -> str:
    """Seconds for people: 0.4 s, 45 s, 12 min 5 s, 3 h 10 min."""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def size(count: float) -> str:
    """Bytes for people: 20 kB, 3 MB, 12,346 MB."""
    return f"{count / 1e3:,.0f} kB" if count < 999_500 else f"{count / 1e6:,.0f} MB"


def group_label(key: GroupKey) -> str:
    return f"{key.suite} · {key.learner} · {key.way}-way {key.shot}-shot {key.query}-query"


class ProgressLines:
    """Turns the engine's progress callbacks into lines for ``write``. Use :meth:`start` as the run's ``on_start`` and
    :meth:`update` as its ``on_progress``."""

    def __init__(
        self,
        write: Callable[[str], None],
        every: float = LINE_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.write = write
        self.every = every
        self.clock = clock
        self.began = clock()
        self.waiting: dict[GroupKey, int] = {}  # groups not started yet: episodes each
        self.expected: dict[GroupKey, float] = {}  # a long run's expected seconds per group
        self.rates: dict[str, float] = {}  # learner label: episodes per second of its latest group
        self.groups = 0
        self.finished = 0
        self.current: GroupKey | None = None
        self.current_began = self.last_line = self.began

    def start(self, plan: RunPlan) -> None:
        self.waiting = dict.fromkeys(plan.groups, plan.episodes)
        self.expected = dict(plan.seconds)
        self.groups = len(plan.groups)

    def update(self, key: GroupKey, done: int, total: int) -> None:
        now = self.clock()
        if key != self.current:
            self.current, self.current_began, self.last_line = key, now, now
            self.waiting.pop(key, None)
        if done == 0:
            return
        elapsed = now - self.current_began
        if elapsed > 0:
            self.rates[key.learner] = done / elapsed
        if done >= total:
            self.finished += 1
            rate = f", {self.rates[key.learner]:,.0f} episodes/s" if elapsed > 0 else ""
            self._line(f"{group_label(key)}: {done:,} episodes in {duration(elapsed)}{rate}", now, 0.0)
        elif now - self.last_line >= self.every:
            rate = self.rates[key.learner]
            left = (total - done) / rate
            self._line(
                f"{group_label(key)}: {done:,} of {total:,} episodes, {rate:,.0f} episodes/s, "
                f"{duration(left)} left in this group",
                now,
                left,
            )

    def _line(self, text: str, now: float, group_left: float) -> None:
        """``text`` stamped with the run's elapsed time, and followed by the groups done and the run's time left."""
        self.last_line = now
        left, untimed = group_left, {}
        for key, episodes in self.waiting.items():
            if key.learner in self.rates:
                left += episodes / self.rates[key.learner]
            elif key in self.expected:
                left += self.expected[key]
            else:
                untimed[key.learner] = None
        groups = f"{self.finished} of {self.groups}" if self.groups else str(self.finished)
        if untimed:
            left_text = f"≥ {duration(left)} left ({', '.join(untimed)} not timed yet)"
        else:
            left_text = f"{duration(left)} left"
        self.write(f"[{duration(now - self.began)}] {text} · run: {groups} groups done, {left_text}")
