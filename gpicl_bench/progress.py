"""Progress as plain lines, for logs: where stderr is not a terminal (a pipe, a file, a batch job) no bar can redraw,
so long work says what it has done in lines instead — one per finished task (a run's group, a split encoded) and one
every few minutes within a long one — with the count, the rate and the time left, for the task and, in a run, for
the run.

The run's time left counts the groups not started yet at the latest rate measured for their learner (any suite or
shape), else at the time a long run's timed first batch expects; a learner with neither makes the figure a lower
bound ("≥", naming the learners not timed yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpicl_bench.engine import RunPlan
    from gpicl_bench.results import GroupKey

LINE_EVERY_SECONDS = 180.0  # within a long task


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


@dataclass
class _Task:
    began: float
    last_line: float
    done: int = 0
    rate: float | None = None  # per second, once measured


class CountLines:
    """Progress of counted work (images encoded, a group's episodes) as lines for ``write``: one when a task finishes
    and one every ``every`` seconds within it, stamped with the time since this object began, with the count, the
    rate and the time left. Feed it ``(task, done, total)``, with ``done`` 0 as a task starts."""

    def __init__(
        self,
        write: Callable[[str], None],
        unit: str,
        every: float = LINE_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.write = write
        self.unit = unit
        self.every = every
        self.clock = clock
        self.began = clock()
        self.tasks: dict[str, _Task] = {}

    def update(self, task: str, done: int, total: int) -> None:
        line = self.line(task, done, total)
        if line is not None:
            self.write(line)

    def line(self, task: str, done: int, total: int) -> str | None:
        """The line this update calls for, if any; the task's rate is kept either way."""
        now = self.clock()
        state = self.tasks.setdefault(task, _Task(now, now))
        state.done = done
        if done == 0:
            return None
        elapsed = now - state.began
        state.rate = done / elapsed if elapsed > 0 else None
        rate = f", {state.rate:,.0f} {self.unit}/s" if state.rate else ""
        if done >= total:
            text = f"{task}: {done:,} {self.unit} in {duration(elapsed)}{rate}"
        elif now - state.last_line >= self.every:
            text = f"{task}: {done:,} of {total:,} {self.unit}{rate}, {duration(self.left(task, total))} left"
        else:
            return None
        state.last_line = now
        return f"[{duration(now - self.began)}] {text}"

    def left(self, task: str, total: int) -> float:
        """Seconds the task has left at its rate so far (0 when finished or not timed yet)."""
        state = self.tasks[task]
        return (total - state.done) / state.rate if state.rate else 0.0


class ProgressLines:
    """A run's groups as lines, each followed by the run's groups done and time left. Use :meth:`start` as the run's
    ``on_start`` and :meth:`update` as its ``on_progress``."""

    def __init__(
        self,
        write: Callable[[str], None],
        every: float = LINE_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.write = write
        self.lines = CountLines(write, "episodes", every, clock)
        self.waiting: dict[GroupKey, int] = {}  # groups not started yet: episodes each
        self.expected: dict[GroupKey, float] = {}  # a long run's expected seconds per group
        self.rates: dict[str, float] = {}  # learner label: episodes per second of its latest group
        self.groups = 0
        self.finished = 0

    def start(self, plan: RunPlan) -> None:
        self.waiting = dict.fromkeys(plan.groups, plan.episodes)
        self.expected = dict(plan.seconds)
        self.groups = len(plan.groups)

    def update(self, key: GroupKey, done: int, total: int) -> None:
        self.waiting.pop(key, None)
        label = group_label(key)
        line = self.lines.line(label, done, total)
        rate = self.lines.tasks[label].rate
        if rate:
            self.rates[key.learner] = rate
        if done >= total > 0:
            self.finished += 1
        if line is None:
            return
        left, untimed = self.lines.left(label, total), {}
        for waiting, episodes in self.waiting.items():
            if waiting.learner in self.rates:
                left += episodes / self.rates[waiting.learner]
            elif waiting in self.expected:
                left += self.expected[waiting]
            else:
                untimed[waiting.learner] = None
        groups = f"{self.finished} of {self.groups}" if self.groups else str(self.finished)
        if untimed:
            left_text = f"≥ {duration(left)} left ({', '.join(untimed)} not timed yet)"
        else:
            left_text = f"{duration(left)} left"
        self.write(f"{line} · run: {groups} groups done, {left_text}")
