"""Batched episodes vs the usual one-episode-at-a-time loop: same episodes, same learner, episodes per second.

Peer libraries (easyfsl, learn2learn) evaluate a few-shot learner by looping over episodes: sample one episode,
gather its support and query features, run the learner on a batch of one, score it, next. gpicl-bench's engine
instead evaluates whole batches of seeded episodes as tensors (:func:`gpicl_bench.evaluation.evaluate_group`). This
script times both on the *same* episode ids with the *same* learner, and refuses to report a speed-up unless both
give the same per-episode accuracies on the episodes they share, so the comparison measures the batching and
nothing else.

Both timed regions do the full per-episode work with the package's own functions: sampling
(:meth:`EpisodeSampler.sample`), gathering features, the suite's per-episode projection if its label has
``:project``, the learner's ``predict``, argmax and accuracy. Run from the repository root::

    .venv/bin/python benchmarks/perf/batched_vs_loop.py
    .venv/bin/python benchmarks/perf/batched_vs_loop.py --learner knn:k=3 --suite digits:project --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

from gpicl_bench import fitting
from gpicl_bench.episodes import EpisodeSampler, EpisodeShape, project, random_projections
from gpicl_bench.errors import UserError
from gpicl_bench.evaluation import evaluate_group
from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.registry import Ref
from gpicl_bench.suites import SplitData, open_suite

DEFAULT_LEARNERS = ("protonet", "knn", "logreg")
# Accuracies are multiples of 1/(way*query), so any disagreement in a prediction is far above these tolerances;
# logreg gets a hair of slack only because its FISTA iterates are float computations that could, in principle,
# round differently in a batch of one than in a batch of many.
TOLERANCE = {"protonet": 0.0, "knn": 0.0, "logreg": 1e-6}  # any other learner: 1e-6
LOOP_PROBE = 10  # episodes the loop's second warm-up times to estimate its cost per episode
CONTENTION_WARNING = 0.05  # share of all CPUs used by other processes while timing that makes figures suspect


@dataclass(frozen=True)
class Workload:
    """One learner on one split and episode shape, already on the device: what both variants evaluate."""

    learner: Learner
    data: SplitData  # on the device
    sampler: EpisodeSampler  # on the device
    project_inputs: bool

    def accuracy(self, correct: np.ndarray) -> np.ndarray:
        """Per-episode accuracy from correct-query counts, computed identically for both variants."""
        return correct / (self.sampler.shape.way * self.sampler.shape.query)


def run_batched(work: Workload, n_episodes: int, batch_size: int) -> np.ndarray:
    """Accuracies of episodes 0..n-1 by gpicl-bench's engine: batches of ``batch_size`` episodes as tensors."""
    correct = evaluate_group(
        work.learner, work.data, work.sampler, range(n_episodes), batch_size, work.project_inputs
    ).correct
    return work.accuracy(correct)


def run_loop(work: Workload, n_episodes: int) -> np.ndarray:
    """Accuracies of episodes 0..n-1 the way peer libraries compute them: one episode at a time, a batch of one.

    Scores are kept on the device and fetched once at the end (no per-episode ``.item()``), which favours the loop.
    """
    features, sampler, way = work.data.features, work.sampler, work.sampler.shape.way
    correct: list[Tensor] = []
    with torch.inference_mode():
        for episode in range(n_episodes):
            ids = torch.tensor([episode], device=features.device)
            one = sampler.sample(ids)
            support_x, query_x = features[one.support_index], features[one.query_index]
            if work.project_inputs:
                maps = random_projections(sampler.seed, ids, work.data.dim)
                support_x, query_x = project(support_x, maps), project(query_x, maps)
            logits = work.learner.predict(support_x, one.support_labels, query_x, way)
            correct.append((logits.argmax(-1) == one.query_labels).sum(-1))
    return work.accuracy(torch.cat(correct).cpu().numpy())


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that the clock measures work done rather than work launched."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(fn: Callable[[], np.ndarray], device: torch.device) -> tuple[float, np.ndarray]:
    """Wall-clock seconds of one call of ``fn`` (synchronised on CUDA) and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - start, result


def affordable(requested: int, seconds_each: float, budget: float, step: int = 1) -> int:
    """How many episodes (a multiple of ``step``, at least one step) fit in ``budget`` seconds; all if no budget."""
    if budget <= 0 or requested * seconds_each <= budget:
        return requested
    return min(requested, max(1, int(budget / (seconds_each * step))) * step)


@dataclass(frozen=True)
class Result:
    """One learner's figures; rates are episodes per second from the median of the repeats."""

    learner: str
    batched_episodes: int
    loop_episodes: int
    batched_seconds: list[float]
    loop_seconds: list[float]
    batched_rate: float
    loop_rate: float
    speedup: float
    max_abs_difference: float
    tolerance: float
    check_passed: bool
    mean_accuracy: float
    other_cpu_share: float | None  # share of all CPUs that other processes used meanwhile (Linux), None elsewhere


def benchmark(work: Workload, label: str, tolerance: float, args: argparse.Namespace, device: torch.device) -> Result:
    """Time both variants for one learner and check them against each other on the shared prefix of episodes.

    Each variant is warmed up once untimed (first-call allocations, kernel selection); the warm-ups also estimate
    the cost per episode, so that a slow learner (logreg fits 500 FISTA steps per episode) runs only as many
    episodes as ``--max-seconds`` allows per timed run instead of many minutes. Rates are per second either way.
    """
    others = OtherProcessesMeter()
    first_batch = min(args.batch_size, args.episodes)
    warmup_s, _ = clock(lambda: run_batched(work, first_batch, args.batch_size), device)
    n_batched = affordable(args.episodes, warmup_s / first_batch, args.max_seconds, step=args.batch_size)

    run_loop(work, 1)  # warm-up for the batch-of-one shapes
    probe = min(LOOP_PROBE, args.loop_episodes, n_batched)
    probe_s, _ = clock(lambda: run_loop(work, probe), device)
    n_loop = affordable(min(args.loop_episodes, n_batched), probe_s / probe, args.max_seconds)

    batched_s: list[float] = []
    loop_s: list[float] = []
    for _ in range(args.repeats):
        seconds, batched_acc = clock(lambda: run_batched(work, n_batched, args.batch_size), device)
        batched_s.append(seconds)
    for _ in range(args.repeats):
        seconds, loop_acc = clock(lambda: run_loop(work, n_loop), device)
        loop_s.append(seconds)

    difference = float(np.abs(batched_acc[:n_loop] - loop_acc).max())
    batched_rate = n_batched / statistics.median(batched_s)
    loop_rate = n_loop / statistics.median(loop_s)
    return Result(
        learner=label,
        batched_episodes=n_batched,
        loop_episodes=n_loop,
        batched_seconds=batched_s,
        loop_seconds=loop_s,
        batched_rate=batched_rate,
        loop_rate=loop_rate,
        speedup=batched_rate / loop_rate,
        max_abs_difference=difference,
        tolerance=tolerance,
        check_passed=difference <= tolerance,
        mean_accuracy=float(batched_acc.mean()),
        other_cpu_share=others.share(),
    )


class OtherProcessesMeter:
    """How much CPU other processes took since creation: contention silently ruins timings, so measure it.

    Busy time of the whole machine comes from /proc/stat (Linux), this process's own from ``time.process_time``.
    """

    def __init__(self) -> None:
        self.start = (time.perf_counter(), _machine_busy_seconds(), time.process_time())

    def share(self) -> float | None:
        """Other processes' CPU time as a share of all CPUs' time, or None where the OS does not tell."""
        wall0, busy0, own0 = self.start
        busy1 = _machine_busy_seconds()
        if busy0 is None or busy1 is None:
            return None
        elapsed = (time.perf_counter() - wall0) * (os.cpu_count() or 1)
        return max(0.0, (busy1 - busy0) - (time.process_time() - own0)) / elapsed


def _machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs have spent not idle since boot (Linux /proc/stat), None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait
    except (OSError, ValueError, AttributeError, IndexError):
        return None


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the figures depend on: torch build, thread count and the device that ran them."""
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = _cpu_model() or platform.processor() or platform.machine()
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": _load_average(),
    }


def _load_average() -> float | None:
    """The 1-minute load average, where the OS reports one: a busy machine makes any timing meaningless."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _cpu_model() -> str | None:
    """The CPU's marketing name on Linux (platform.processor() is often empty there)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, validated up front so that a typo fails in a second rather than after minutes of timing."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add(
        "--learner",
        action="append",
        default=argparse.SUPPRESS,  # the defaults below, unless given at least once
        help=f"learner reference such as knn:k=3, repeatable (default: {', '.join(DEFAULT_LEARNERS)})",
    )
    add("--suite", default="digits", help="suite reference, e.g. digits:project")
    add("--split", default="test", help="split to draw episodes from")
    add("--way", type=int, default=5, help="classes per episode")
    add("--shot", type=int, default=5, help="support images per class")
    add("--query", type=int, default=15, help="query images per class")
    add("--episodes", type=int, default=10_000, help="episodes for the batched variant (ids 0..N-1)")
    add("--loop-episodes", type=int, default=1_000, help="episodes for the loop: a prefix of the same ids")
    add("--batch-size", type=int, default=1_000, help="episodes per batch in the batched variant")
    add("--device", choices=("cpu", "cuda"), default="cpu", help="where both variants run")
    add("--seed", type=int, default=0, help="episode seed")
    add("--repeats", type=int, default=3, help="timed runs per variant; the median is reported")
    add(
        "--max-seconds",
        type=float,
        default=5.0,
        help="cap on one timed run: a slow learner runs fewer episodes (whole batches; rates stay per second), "
        "so that the defaults take about a minute on 2 cores; 0 = no cap",
    )
    add("--json", type=Path, metavar="PATH", help="also write the results and machine info here as JSON")
    args = parser.parse_args(argv)
    args.learner = getattr(args, "learner", list(DEFAULT_LEARNERS))
    for name in ("episodes", "loop_episodes", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available to this torch build")
    return args


def render(results: list[Result], machine: dict[str, Any], setting: str, console: Console) -> None:
    """The results table and the machine it ran on."""
    table = Table(
        title=f"batched vs per-episode loop: {setting}",
        caption="episodes: batched / loop (the loop's are the first ids of the batched ones); "
        "check: max |Δ accuracy| over them",
    )
    table.add_column("learner")
    table.add_column("episodes", justify="right")
    table.add_column("batched ep/s", justify="right")
    table.add_column("loop ep/s", justify="right")
    table.add_column("speed-up", justify="right")
    table.add_column("check")
    for r in results:
        verdict = "[green]pass[/]" if r.check_passed else "[red]FAIL[/]"
        table.add_row(
            r.learner,
            f"{r.batched_episodes:,} / {r.loop_episodes:,}",
            f"{r.batched_rate:,.0f}",
            f"{r.loop_rate:,.1f}",
            f"{r.speedup:,.1f}×",
            f"{verdict} Δ={r.max_abs_difference:.2g} (≤{r.tolerance:g})",
        )
    console.print(table)
    console.print(
        f"machine: torch {machine['torch']}, {machine['torch_threads']} threads, {machine['cpu_count']} CPUs, "
        f"device {machine['device']} ({machine['device_name']})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; exit status 0 if every check passed, 1 if one failed, 2 for bad input."""
    args = parse_args(argv)
    console, stderr = Console(), Console(stderr=True)
    device = torch.device(args.device)
    try:
        suite = open_suite(args.suite)
        data = suite.suite.load(args.split)
        shape = EpisodeShape(args.way, args.shot, args.query)
        sampler = EpisodeSampler(data.labels, shape, args.seed, where=f"{suite.label}/{args.split}").to(device)
        refs = [LEARNERS.canonical(Ref.parse(text)) for text in args.learner]
        learners = [(str(ref), ref.name, fitting.fit(LEARNERS.build(ref), device).to(device)) for ref in refs]
    except UserError as error:
        stderr.print(f"[red]error:[/] {error}")
        return 2
    data = SplitData(data.features.to(device), data.labels.to(device), data.class_names)
    setting = f"{suite.label}/{args.split}, {shape}, seed {args.seed}"
    console.print(
        f"{setting}: batched up to {args.episodes:,} episodes in batches of {args.batch_size:,}, loop up to "
        f"{min(args.loop_episodes, args.episodes):,} of them one at a time; median of {args.repeats} after a warm-up"
    )

    results: list[Result] = []
    for label, name, learner in learners:
        work = Workload(learner, data, sampler, suite.project)
        with console.status(f"timing {label} …"):
            results.append(benchmark(work, label, TOLERANCE.get(name, 1e-6), args, device))

    machine = machine_info(device)
    render(results, machine, setting, console)
    if args.json:
        report = {
            "setting": {
                "suite": suite.label,
                "split": args.split,
                "way": shape.way,
                "shot": shape.shot,
                "query": shape.query,
                "seed": args.seed,
                "batch_size": args.batch_size,
                "repeats": args.repeats,
                "max_seconds": args.max_seconds,
            },
            "machine": machine,
            "results": [asdict(r) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {args.json}")

    for r in results:
        if r.other_cpu_share is not None and r.other_cpu_share > CONTENTION_WARNING:
            stderr.print(
                f"[yellow]warning:[/] while timing {r.learner}, other processes used {r.other_cpu_share:.0%} of the "
                "CPUs: its figures are distorted (the batched variant, which uses every thread, suffers most); "
                "rerun on an idle machine"
            )
    failed = [r for r in results if not r.check_passed]
    for r in failed:
        stderr.print(
            f"[red]check failed:[/] {r.learner}: batched and loop accuracies differ on the first {r.loop_episodes} "
            f"episodes by up to {r.max_abs_difference:.3g} (tolerance {r.tolerance:g}); the timings are not comparable"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
