"""Evaluate a spec: every group's episodes in batches on one device, each finished group saved at once.

The engine knows no particular suite or learner. For each suite it loads the split once and moves it to the device;
for each episode shape it builds one sampler; each learner then runs over the episodes in batches, and the group is
written as soon as it is complete. A learner that declares a need for meta-training is fitted first, untimed, when
the run reaches it (:mod:`gpicl_bench.fitting`). Batching only groups work: every episode is drawn from its own
number.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpicl_bench import __version__, distributed, fitting
from gpicl_bench.batching import DEFAULT_BATCH_SIZE, BatchSize, episodes_per_batch
from gpicl_bench.distributed import Ranks
from gpicl_bench.episodes import EpisodeSampler
from gpicl_bench.errors import UserError
from gpicl_bench.evaluation import Evaluation, evaluate_group
from gpicl_bench.features import EncodeProgress, FeatureSettings
from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.results import GroupKey, ResultsFile
from gpicl_bench.spec import Spec, spec_from_dict
from gpicl_bench.suites import SplitData, open_suite

BYTES_PER_EPISODE = 8 + 4 + 8  # episode int64, correct int32, accuracy float64
LONG_RUN_EPISODES = 1_000_000  # runs this long time a first batch of every group, to say up front what they cost
PROBE_SECONDS = 1.0  # how long a long run times each group before it starts
PROBE_FIRST_EPISODES = 16  # the untimed warm-up batch, and the first timed size
SINGLE_PROCESS = Ranks()

# Called with (group, episodes done in the group, episodes in the group): with 0 as a group starts, then after each
# batch.
ProgressCallback = Callable[[GroupKey, int, int], None]


@dataclass(frozen=True)
class GroupOutcome:
    """A finished group as the run reports it (the per-episode data are in the results file)."""

    key: GroupKey
    correct: np.ndarray
    seconds: float

    @property
    def accuracy(self) -> np.ndarray:
        return self.correct / (self.key.way * self.key.query)

    @property
    def episodes_per_second(self) -> float:
        return len(self.correct) / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class RunPlan:
    """The groups a run is about to evaluate, announced before its first episode. For a long run (at least
    LONG_RUN_EPISODES in all) also the seconds each group is expected to take on this process, from a timed batch."""

    groups: tuple[GroupKey, ...]
    episodes: int  # per group
    seconds: dict[GroupKey, float]  # empty unless the run is long

    @property
    def total_episodes(self) -> int:
        return len(self.groups) * self.episodes

    @property
    def result_bytes(self) -> int:
        """What the groups' per-episode results take in the results file."""
        return self.total_episodes * BYTES_PER_EPISODE

    @property
    def expected_seconds(self) -> float | None:
        return sum(self.seconds.values()) if self.seconds else None


StartCallback = Callable[[RunPlan], None]


def _git_commit() -> str:
    """The commit of the checkout gpicl-bench runs from ('+dirty' if modified), or '' outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return ""
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def run_attributes(spec: Spec) -> dict[str, Any]:
    """What a results file records about the run as a whole, so that anyone can reproduce it."""
    return {
        "name": spec.name,
        "spec": spec.to_json(),
        "seed": spec.seed,
        "split": spec.split,
        "package_version": __version__,
        "git_commit": _git_commit(),
        "torch_version": str(torch.__version__),
        "python_version": platform.python_version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


@dataclass(frozen=True)
class _Plan:
    """The groups of one (suite, shape) still to run, with the data and sampler they share."""

    keys: list[GroupKey]
    project_inputs: bool
    data: SplitData
    sampler: EpisodeSampler
    data_fingerprint: str


def feature_settings(
    spec: Spec, device: torch.device, on_encode: EncodeProgress | None = None, skip_bad_images: bool = False
) -> FeatureSettings:
    """How this spec's image suites become features (encoding runs on the evaluation device)."""
    return FeatureSettings(
        spec.encoder,
        spec.data_root,
        spec.cache_dir,
        str(device),
        skip_bad_images=skip_bad_images,
        on_progress=on_encode,
    )


def _plan(spec: Spec, done: set[GroupKey], settings: FeatureSettings) -> list[_Plan]:
    """Open every suite and build every sampler first, so that bad input fails before any episode runs."""
    learners = spec.learner_labels()
    plans = []
    opened = {}
    for suite_text in spec.suites:
        suite = open_suite(suite_text, settings)
        opened.setdefault(suite.label, suite)  # two spellings of one suite are one suite
    for suite in opened.values():
        data = suite.suite.load(spec.split)
        for shape in spec.shapes():
            sampler = EpisodeSampler(data.labels, shape, spec.seed, where=f"split {spec.split!r} of {suite.label!r}")
            keys = [GroupKey(suite.label, label, shape.way, shape.shot, shape.query) for label in learners]
            plans.append(_Plan([k for k in keys if k not in done], suite.project, data, sampler, suite.fingerprint))
    return [plan for plan in plans if plan.keys]


def with_available_suites(spec: Spec, settings: FeatureSettings) -> tuple[Spec, list[str]]:
    """The spec with those of its optional suites whose split loads here appended to its suites (so results and
    ``--resume`` name only what ran), and a note for each one skipped."""
    available, notes = [], []
    for text in spec.optional_suites:
        try:
            open_suite(text, settings).suite.load(spec.split)
        except UserError as error:
            notes.append(f"note: skipping optional suite {text}: {error}")
            continue
        available.append(text)
    return dataclasses.replace(spec, suites=spec.suites + tuple(available), optional_suites=()), notes


def check(spec: Spec, settings: FeatureSettings) -> None:
    """Raise the user error that running ``spec`` would meet (unknown names, missing data, impossible shapes, the
    meta-training data of learners that need it); image suites are encoded here (or read from the cache), so the run
    itself starts at once."""
    learners = [LEARNERS.build(ref) for ref in spec.learner_refs().values()]
    _plan(spec, set(), settings)
    for learner in learners:
        fitting.check(learner, settings)


def run(
    spec: Spec,
    results: ResultsFile | None,
    device: torch.device,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    on_progress: ProgressCallback | None = None,
    settings: FeatureSettings | None = None,
    ranks: Ranks = SINGLE_PROCESS,
    on_start: StartCallback | None = None,
) -> list[GroupOutcome]:
    """Evaluate every group of ``spec`` missing from ``results``; each group is saved as soon as it finishes.

    ``on_start`` hears what the run will evaluate before its first episode, with each group's expected time when the
    run is long. Under torchrun every rank evaluates its contiguous share of each group's episodes and rank 0, which
    alone holds ``results``, writes the group: the file is the one a single process writes.
    """
    settings = settings or feature_settings(spec, device)
    learners = {label: LEARNERS.build(ref) for label, ref in spec.learner_refs().items()}
    done = distributed.broadcast(ranks, results.group_keys() if results is not None else set())
    shard = ranks.shard(spec.episodes)
    plans = _plan(spec, done, settings)
    if on_start is not None:
        keys = tuple(key for plan in plans for key in plan.keys)
        seconds = {}
        if len(keys) * spec.episodes >= LONG_RUN_EPISODES:
            seconds = {
                group.key: group.seconds_per_episode(shard) * len(shard)
                for group in _groups(plans, learners, device, batch_size, settings, ranks)
            }
        on_start(RunPlan(keys, spec.episodes, seconds))
    outcomes = []
    for group in _groups(plans, learners, device, batch_size, settings, ranks):
        key = group.key
        report = (lambda n, key=key: on_progress(key, n, len(shard))) if on_progress else None
        if report is not None:
            report(0)
        started = dt.datetime.now(dt.timezone.utc)
        clock = time.perf_counter()
        evaluation = group.evaluate(shard, report, with_curve=True)
        evaluation = Evaluation.merge(distributed.gather(ranks, evaluation))
        outcome = GroupOutcome(key, evaluation.correct, time.perf_counter() - clock)
        outcomes.append(outcome)
        if results is None:
            continue
        attributes = {
            "split": spec.split,
            "seed": spec.seed,
            "episodes": spec.episodes,
            "device": device.type,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "processes": ranks.world_size,
            "batch_size": group.batch,
            "batch_size_rule": str(batch_size),
            "seconds": outcome.seconds,
            "episodes_per_second": outcome.episodes_per_second,
            "started": started.isoformat(timespec="seconds"),
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "learner_details": json.dumps(group.learner.details(), sort_keys=True),
            "data_fingerprint": group.data_fingerprint,
        }
        curve = evaluation.position_accuracy
        curves = {"position_accuracy": curve} if curve is not None else {}
        results.add_group(key, np.arange(spec.episodes), evaluation.correct, attributes, curves)
    return outcomes


@dataclass(frozen=True)
class _Group:
    """One group ready to evaluate: its learner, data and sampler on the device, and its batch size."""

    key: GroupKey
    learner: Learner
    data: SplitData
    sampler: EpisodeSampler
    batch: int
    project_inputs: bool
    data_fingerprint: str

    def evaluate(
        self, episodes: range, report: Callable[[int], None] | None = None, with_curve: bool = False
    ) -> Evaluation:
        return evaluate_group(
            self.learner, self.data, self.sampler, episodes, self.batch, self.project_inputs, report, with_curve
        )

    def seconds_per_episode(self, shard: range) -> float:
        """Time per episode, measured after an untimed warm-up batch (first-call allocations, kernel selection,
        compilation) on batches that grow ×4 until one takes a quarter of PROBE_SECONDS or is a whole batch, then
        repeat at that size until PROBE_SECONDS have passed. Results are not kept: they are episodes of the run."""
        cap = min(self.batch, len(shard))
        if cap == 0:
            return 0.0
        size = min(PROBE_FIRST_EPISODES, cap)
        self.evaluate(range(shard.start, shard.start + size))
        while True:
            clock = time.perf_counter()
            self.evaluate(range(shard.start, shard.start + size))
            seconds = time.perf_counter() - clock
            if seconds >= PROBE_SECONDS / 4 or size == cap:
                break
            size = min(4 * size, cap)
        episodes = size
        while seconds < PROBE_SECONDS:
            clock = time.perf_counter()
            self.evaluate(range(shard.start, shard.start + size))
            seconds += time.perf_counter() - clock
            episodes += size
        return seconds / episodes


def _groups(
    plans: list[_Plan],
    learners: dict[str, Learner],
    device: torch.device,
    batch_size: BatchSize,
    settings: FeatureSettings,
    ranks: Ranks,
) -> Iterator[_Group]:
    """The plans' groups in order, each learner (fitted first if it needs meta-training) and each split's data moved
    to the device as their turn comes."""
    device_data: tuple[SplitData, SplitData] | None = None  # (data on the CPU, the same on the device)
    for plan in plans:
        if device_data is None or device_data[0] is not plan.data:
            device_data = (
                plan.data,
                SplitData(plan.data.features.to(device), plan.data.labels.to(device), plan.data.class_names),
            )
        sampler = plan.sampler.to(device)
        for key in plan.keys:
            learner = fitting.fit(learners[key.learner], device, settings, ranks, key.learner).to(device)  # untimed
            batch = episodes_per_batch(batch_size, learner, sampler.shape, plan.data.dim, plan.project_inputs, device)
            yield _Group(key, learner, device_data[1], sampler, batch, plan.project_inputs, plan.data_fingerprint)


def spec_for_resume(results: ResultsFile) -> Spec:
    """The spec stored in a results file, to complete its missing groups."""
    try:
        return spec_from_dict(json.loads(results.attrs()["spec"]), f"spec stored in {results.path}")
    except (KeyError, ValueError):
        raise UserError(f"{results.path} holds no readable spec to resume from") from None
