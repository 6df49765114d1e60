"""gpicl-bench's engine beside a peer library's evaluation path, on the same features: easyfsl 1.5.0.

easyfsl (sicara/easy-few-shot-learning) evaluates a few-shot classifier on cached features the way its README and
notebooks show: a ``FeaturesDataset`` over the features, a ``TaskSampler`` drawing n-way k-shot q-query tasks with
Python's ``random``, a ``DataLoader`` with the sampler's episodic collate function, ``PrototypicalNetworks`` on its
default identity backbone, and ``easyfsl.utils.evaluate`` looping over the tasks. gpicl-bench evaluates its
``protonet`` on seeded episodes of the very same features with the engine's hot loop
(``gpicl_bench.evaluation.evaluate_group``, what ``gpicl-bench run`` calls) in batches of 500, the run's default.
Both compute the nearest class mean under Euclidean distance on 5-way 5-shot 15-query tasks, so their accuracies must
agree within their confidence intervals; the script checks that they do, or exits 1.

Each timed run of either side covers building its task sampler and evaluating its tasks, and is sized to take about
``--seconds``. The two sides run in alternation (which goes first alternates too), ``--repeats`` pairs per feature
size, each pair on a fresh seed, so that a slow spell of a shared machine hits both sides alike; the ratio is taken
within each pair and reported as the median with its range over the pairs, beside each side's median rate.

Run it in the side environment ``make perf-peers`` builds (``.venv-peers``: PyPI's torch 2.14.1 and torchvision
0.29.1, easyfsl 1.5.0, gpicl-bench), from the repository root::

    .venv-peers/bin/python benchmarks/perf/peers.py [--readme benchmarks/perf/README.md] [--json PATH] [--check]

``--readme`` replaces the text between the file's ``<!-- peers:begin -->`` and ``<!-- peers:end -->`` lines with the
table. Exit status 0; 1 if the two sides' accuracies disagree (the timings would not compare like with like); 2 for
bad arguments or a missing easyfsl; 3 with ``--check`` when gpicl-bench is less than TARGET times faster at some size.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import random
import statistics
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from batched_vs_loop import CONTENTION_WARNING, OtherProcessesMeter, machine_info
from harness import CLASSES, QUERY, ROWS_PER_CLASS, WAY, cached_features, json_default
from rich.console import Console
from rich.table import Table

from gpicl_bench.engine import DEFAULT_BATCH_SIZE
from gpicl_bench.episodes import EpisodeSampler, EpisodeShape
from gpicl_bench.evaluation import evaluate_group
from gpicl_bench.learners.protonet import ProtoNet
from gpicl_bench.suites import SplitData

DIMS = (64, 512)
SHOT = 5
TARGET = 50.0  # gpicl-bench episodes/s over easyfsl's, at every feature size
AGREEMENT_Z = 3.29  # accuracies further apart than this many standard errors (two-sided 99.9%) disagree
CALIBRATION_EPISODES = {"easyfsl": 50, "gpicl-bench": 2 * DEFAULT_BATCH_SIZE}
BEGIN, END = "<!-- peers:begin -->", "<!-- peers:end -->"
README_WIDTH = 118


@dataclass(frozen=True)
class Run:
    """One timed run of one side: its episodes, seconds, correct queries (and, where the side reports them per
    episode, their sum of squares) and other processes' CPU share."""

    side: str
    seed: int
    episodes: int
    seconds: float
    correct: int
    correct_squares: int | None
    other_cpu_share: float | None

    @property
    def rate(self) -> float:
        return self.episodes / self.seconds


@dataclass(frozen=True)
class Comparison:
    """Both sides at one feature size: every timed run, the median rates and the ratio within each pair of runs."""

    dim: int
    runs: list[Run]
    easyfsl_rate: float
    gpicl_rate: float
    ratios: list[float]
    ratio: float
    easyfsl_accuracy: float
    gpicl_accuracy: float
    accuracy_gap_in_standard_errors: float

    @property
    def agrees(self) -> bool:
        return self.accuracy_gap_in_standard_errors <= AGREEMENT_Z


def task_sampler_class() -> type:
    """easyfsl 1.5.0's TaskSampler as it runs on current torch: it calls ``Sampler.__init__(data_source=None)``,
    which torch no longer accepts (2.13 and 2.14 raise TypeError), so a do-nothing base that takes the argument sits
    between the two. easyfsl's own sampling (``__iter__``) and collation run unchanged."""
    from easyfsl.samplers import TaskSampler
    from torch.utils.data import Sampler

    class TakesDataSource(Sampler):
        def __init__(self, data_source: Any = None) -> None:
            pass

    return type("TaskSampler", (TaskSampler, TakesDataSource), {})


def time_easyfsl(dataset: Any, sampler_class: type, episodes: int, seed: int) -> Run:
    """easyfsl's evaluation path: TaskSampler + DataLoader(episodic_collate_fn) + PrototypicalNetworks + evaluate."""
    from easyfsl.methods import PrototypicalNetworks
    from easyfsl.utils import evaluate
    from torch.utils.data import DataLoader

    model = PrototypicalNetworks()
    others = OtherProcessesMeter()
    random.seed(seed)  # TaskSampler draws with Python's random
    start = time.perf_counter()
    sampler = sampler_class(dataset, n_way=WAY, n_shot=SHOT, n_query=QUERY, n_tasks=episodes)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=sampler.episodic_collate_fn)
    accuracy = evaluate(model, loader, device="cpu", use_tqdm=False)
    seconds = time.perf_counter() - start
    return Run("easyfsl", seed, episodes, seconds, round(accuracy * episodes * WAY * QUERY), None, others.share())


def time_gpicl(data: SplitData, episodes: int, seed: int, batch_size: int) -> Run:
    """gpicl-bench's engine: the seeded sampler and protonet over batches of episodes as tensors."""
    others = OtherProcessesMeter()
    start = time.perf_counter()
    sampler = EpisodeSampler(data.labels, EpisodeShape(WAY, SHOT, QUERY), seed)
    correct = evaluate_group(ProtoNet(), data, sampler, range(episodes), batch_size, project_inputs=False).correct
    seconds = time.perf_counter() - start
    squares = int((correct.astype(np.int64) ** 2).sum())
    return Run("gpicl-bench", seed, episodes, seconds, int(correct.sum()), squares, others.share())


def compare(dim: int, args: argparse.Namespace) -> Comparison:
    """Calibrate each side's run length to about ``--seconds``, then time ``--repeats`` interleaved pairs."""
    from easyfsl.datasets import FeaturesDataset

    data = cached_features(dim, "cpu", args.seed)
    dataset = FeaturesDataset(data.labels.tolist(), data.features, list(data.class_names))
    sampler_class = task_sampler_class()
    sides = {
        "easyfsl": lambda episodes, seed: time_easyfsl(dataset, sampler_class, episodes, seed),
        "gpicl-bench": lambda episodes, seed: time_gpicl(data, episodes, seed, args.batch_size),
    }
    lengths = {}
    for side, timed in sides.items():
        probe = CALIBRATION_EPISODES[side]
        timed(probe, args.seed)  # warm-up
        per_episode = timed(probe, args.seed).seconds / probe
        step = args.batch_size if side == "gpicl-bench" else 1
        lengths[side] = max(1, round(args.seconds / per_episode / step)) * step
    runs: list[Run] = []
    for repeat in range(args.repeats):
        seed = args.seed + 1 + repeat
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        runs += [sides[side](lengths[side], seed) for side in order]
    return summarise(dim, runs)


def summarise(dim: int, runs: list[Run]) -> Comparison:
    """Median rates, the ratio within each pair (same seed), and whether the two accuracies agree."""
    by_side = {side: [run for run in runs if run.side == side] for side in ("easyfsl", "gpicl-bench")}
    easyfsl, gpicl = by_side["easyfsl"], by_side["gpicl-bench"]
    ratios = [g.rate / e.rate for e, g in zip(easyfsl, gpicl, strict=True)]
    accuracy = {side: _pooled_accuracy(side_runs) for side, side_runs in by_side.items()}
    # Both sides draw episodes of one distribution, so gpicl-bench's per-episode spread of accuracy serves for both.
    episodes = {side: sum(run.episodes for run in side_runs) for side, side_runs in by_side.items()}
    queries = WAY * QUERY
    mean_square = sum(run.correct_squares or 0 for run in gpicl) / episodes["gpicl-bench"] / queries**2
    spread = math.sqrt(max(0.0, mean_square - accuracy["gpicl-bench"] ** 2))
    error = spread * math.sqrt(1 / episodes["easyfsl"] + 1 / episodes["gpicl-bench"])
    return Comparison(
        dim=dim,
        runs=runs,
        easyfsl_rate=statistics.median(run.rate for run in easyfsl),
        gpicl_rate=statistics.median(run.rate for run in gpicl),
        ratios=ratios,
        ratio=statistics.median(ratios),
        easyfsl_accuracy=accuracy["easyfsl"],
        gpicl_accuracy=accuracy["gpicl-bench"],
        accuracy_gap_in_standard_errors=abs(accuracy["easyfsl"] - accuracy["gpicl-bench"]) / error,
    )


def _pooled_accuracy(runs: list[Run]) -> float:
    return sum(run.correct for run in runs) / (sum(run.episodes for run in runs) * WAY * QUERY)


def markdown(comparisons: list[Comparison], machine: dict[str, Any], args: argparse.Namespace, argv: list[str]) -> str:
    """The README's table, with what it was measured on and by which command."""
    shares = [run.other_cpu_share for c in comparisons for run in c.runs if run.other_cpu_share is not None]
    contention = f"; other processes' CPU share up to {max(shares):.0%} during a run" if shares else ""
    threads = machine["torch_threads"]
    heading = (
        f"Measured {dt.date.today().isoformat()} with `peers.py {' '.join(argv)}` on {machine['device_name']}, "
        f"{machine['cpu_count']} CPUs, torch {machine['torch']} with {threads} thread{'s' if threads > 1 else ''}"
        f"{contention}. {WAY}-way {SHOT}-shot {QUERY}-query, synthetic features ({CLASSES} classes × "
        f"{ROWS_PER_CLASS} rows), gpicl-bench in batches of {args.batch_size}; {args.repeats} interleaved pairs of "
        f"timed runs of about {args.seconds:g} s each, medians with the range over the pairs in brackets:"
    )
    lines = [
        *textwrap.wrap(heading, README_WIDTH, break_on_hyphens=False),
        "",
        "| D | easyfsl 1.5.0 episodes/s | gpicl-bench episodes/s | gpicl-bench / easyfsl | accuracy: easyfsl, "
        "gpicl-bench |",
        "|---|---|---|---|---|",
    ]
    for c in comparisons:
        easyfsl = [run.rate for run in c.runs if run.side == "easyfsl"]
        gpicl = [run.rate for run in c.runs if run.side == "gpicl-bench"]
        lines.append(
            f"| {c.dim} | {c.easyfsl_rate:,.0f} ({min(easyfsl):,.0f}–{max(easyfsl):,.0f}) | {c.gpicl_rate:,.0f} "
            f"({min(gpicl):,.0f}–{max(gpicl):,.0f}) | **{c.ratio:.1f}×** ({min(c.ratios):.1f}–{max(c.ratios):.1f}×) "
            f"| {100 * c.easyfsl_accuracy:.2f}%, {100 * c.gpicl_accuracy:.2f}% |"
        )
    return "\n".join(lines)


def write_readme(path: Path, text: str) -> None:
    """Replace what lies between the BEGIN and END lines of ``path`` with ``text``."""
    content = path.read_text()
    if content.count(BEGIN) != 1 or content.count(END) != 1 or content.index(BEGIN) > content.index(END):
        raise SystemExit(f"peers.py: error: {path} needs one {BEGIN} line and, after it, one {END} line")
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def render(comparisons: list[Comparison], console: Console) -> None:
    table = Table(title=f"gpicl-bench vs easyfsl 1.5.0: protonet, {WAY}-way {SHOT}-shot {QUERY}-query")
    for column in ("D", "easyfsl ep/s", "gpicl-bench ep/s", "ratio (median)", "ratio range", "accuracies", "agree"):
        table.add_column(column, justify="right")
    for c in comparisons:
        table.add_row(
            str(c.dim),
            f"{c.easyfsl_rate:,.0f}",
            f"{c.gpicl_rate:,.0f}",
            f"{c.ratio:.1f}×",
            f"{min(c.ratios):.1f}–{max(c.ratios):.1f}×",
            f"{100 * c.easyfsl_accuracy:.2f}%, {100 * c.gpicl_accuracy:.2f}%",
            f"{'yes' if c.agrees else '[red]NO[/]'} ({c.accuracy_gap_in_standard_errors:.1f} SE)",
        )
    console.print(table)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--dims", type=int, nargs="+", default=list(DIMS), help=f"feature sizes (default: {DIMS})")
    add("--repeats", type=int, default=7, help="interleaved pairs of timed runs per feature size (default: 7)")
    add("--seconds", type=float, default=2.0, help="about how long each timed run takes (default: 2)")
    add("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="gpicl-bench's episodes per batch (default: 500)")
    add("--seed", type=int, default=0, help="seed of the features and of the first pair (default: 0)")
    add("--threads", type=int, help="torch's intra-op threads (default: torch's own choice)")
    add("--json", type=Path, metavar="PATH", help="also write every timed run and the machine here")
    add("--readme", type=Path, metavar="PATH", help="write the table between the peers markers of this file")
    add("--check", action="store_true", help=f"exit 3 when gpicl-bench is under {TARGET:g}× easyfsl at some size")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.seconds <= 0 or args.batch_size < 1 or min(args.dims) < 1:
        parser.error("--repeats, --batch-size and --dims must be at least 1, --seconds positive")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.readme is not None and not args.readme.is_file():
        parser.error(f"--readme: no such file {args.readme}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    console, stderr = Console(), Console(stderr=True)
    try:
        import easyfsl  # noqa: F401
    except ImportError:
        stderr.print(
            "peers.py: error: easyfsl is not installed here; `make perf-peers` builds .venv-peers with it",
            soft_wrap=True,
        )
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    comparisons = []
    for dim in args.dims:
        with console.status(f"D={dim}: easyfsl and gpicl-bench, {args.repeats} pairs …"):
            comparisons.append(compare(dim, args))
    render(comparisons, console)
    machine = machine_info(torch.device("cpu"))
    text = markdown(comparisons, machine, args, argv)
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    if args.json:
        report = {
            "argv": argv,
            "machine": machine,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "comparisons": [{**dataclasses.asdict(c), "agrees": c.agrees} for c in comparisons],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=json_default) + "\n")
    if args.readme:
        write_readme(args.readme, text)
        console.print(f"wrote the table into {args.readme}")
    shares = [run.other_cpu_share for c in comparisons for run in c.runs if run.other_cpu_share is not None]
    if shares and max(shares) > CONTENTION_WARNING:
        stderr.print(
            f"[yellow]warning:[/] other processes used up to {max(shares):.0%} of the CPUs during a timed run: the "
            "interleaving keeps the ratio fair, but the rates are low; rerun on an idle machine",
            soft_wrap=True,
        )
    if not all(c.agrees for c in comparisons):
        stderr.print("[red]the two sides' accuracies disagree: they did not solve the same tasks[/]", soft_wrap=True)
        return 1
    missed = [c.dim for c in comparisons if c.ratio < TARGET]
    if args.check and missed:
        stderr.print(f"[red]target missed:[/] gpicl-bench under {TARGET:g}× easyfsl at D={missed}", soft_wrap=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
