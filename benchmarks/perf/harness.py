"""The performance harness: what this machine can do, and how much of it gpicl-bench's hot paths use.

Six sections, printed as tables and written to ``--json``:

1. machine limits: bytes read per second by one large contiguous copy, FLOP/s of one large matmul (fp32; bf16 too
   on CUDA) — the two ceilings every other figure is measured against;
2. evaluation throughput on synthetic cached features: the engine's batched episodes vs ``batched_vs_loop.py``'s
   per-episode loop on the same episodes (checked to agree), and the share of the machine's ceiling each learner
   reaches: bytes read for the memory-bound protonet and knn, counted FLOPs for logreg and gpicl;
3. meta-training: steps/s, tokens/s and the share of each step spent generating tasks;
4. scaling: protonet (and gpicl over shots) vs episodes, shots, ways and feature size, flagging cost per unit of
   work that is not flat;
5. peak memory of every evaluation cell, beside what the batch-size rule estimated;
6. targets, pass/FAIL.

Every cell is budgeted by time (``--max-seconds`` per timed run), so that the defaults take a few minutes on 2 CPU
cores. Exit status 0; 1 if batched and loop accuracies disagree (the timings would not be comparable); 2 for bad
arguments; 3 with ``--check`` when a target this run measured is missed. Run from the repository root::

    .venv/bin/python benchmarks/perf/harness.py [--json results/perf.json] [--device cuda] [--quick] [--check]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from gpicl_bench import fitting
from gpicl_bench.batching import AUTO, episodes_per_batch, parse_batch_size
from gpicl_bench.episodes import EpisodeSampler, EpisodeShape
from gpicl_bench.errors import UserError
from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.models import build_model
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.learners.sequence import SequenceLearner
from gpicl_bench.registry import Ref
from gpicl_bench.suites import SplitData
from gpicl_bench.tasks import TaskStream
from gpicl_bench.training import TrainingOptions, optimisation_step

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark, from whatever directory this runs
from batched_vs_loop import (
    CONTENTION_WARNING,
    TOLERANCE,
    OtherProcessesMeter,
    Result,
    Workload,
    affordable,
    benchmark,
    clock,
    machine_info,
    run_batched,
    synchronize,
)

SECTIONS = ("limits", "evaluation", "training", "scaling")
DEFAULT_LEARNERS = ("protonet", "knn", "logreg", "gpicl")
# utilisation = bytes read / copy bandwidth for these; any other learner: FLOPs / matmul FLOP/s
BANDWIDTH_BOUND = ("protonet", "knn", "simpleshot")
WAY, QUERY = 5, 15
CLASSES, ROWS_PER_CLASS = 64, 100
SEPARATION = 1.0  # class means ~ N(0, (SEPARATION / D^¼)²) beside unit noise: accuracy well inside (chance, 1) at any D
COPY_BYTES = 512 << 20
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}
LIMIT_REPEATS = 5
PROBE_EPISODES = 64  # first batch tried when sizing batches by time
FLOP_EPISODES = 8  # episodes whose FLOPs are counted (the count per episode does not depend on the batch)
MAX_EPISODES = 100_000  # per timed batched run of an evaluation cell, before the time cap
MAX_LOOP_EPISODES = 1_000
SCALING_BASE = (EpisodeShape(WAY, 5, QUERY), 64)  # the point every scaling axis varies one thing of
SCALING_EPISODES = 10_000  # per point of the shots, ways and feature-size axes, before the time cap
FLAT = 1.5  # a point whose cost per unit of work exceeds this multiple of its axis's best is flagged
TRAINING_DIM = 64  # the default training source (digits) has 64 features
RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
DEFINITIONS = {
    "copy_bandwidth": "bytes read per second by dst.copy_(src) of 512 MiB float32: size / median time (the copy also "
    "writes as many bytes, so memory traffic is twice this)",
    "matmul_flops": "2·n³ FLOPs of an n×n by n×n matmul / median time (n = 2048 on CPU, 8192 on CUDA)",
    "bytes_per_episode": "way·(shot+query)·D·4: every feature row of the episode read once (float32)",
    "flops_per_episode": "FlopCounterMode's count over the engine's batched path for a few episodes, per episode: "
    "2·m·n·k per matmul, attention as the dense products its kernels compute; elementwise work is not counted",
    "utilisation": "protonet, knn, simpleshot: bytes_per_episode × batched episodes/s / copy bandwidth; other "
    "learners: flops_per_episode × batched episodes/s / matmul FLOP/s of the dtype their matmuls run in",
    "tokens_per_step": "batch_size × (context length + queries), averaged over the timed steps",
    "task_generation_share": "time of TaskStream.batch alone / time of the whole step (generation, forward, backward, "
    "clipping, Adam), summed over the timed steps, synchronised on CUDA",
    "scaling_units": "episodes axis: episodes; shots and ways axes: feature rows way·(shot+query) (tokens for gpicl); "
    "feature-size axis: KiB of features read",
}


@dataclass(frozen=True)
class Plan:
    """What one run measures: the full grid, or ``--quick``'s smaller one for trial runs."""

    dims: tuple[int, ...]
    shots: tuple[int, ...]
    max_seconds: float
    repeats: int
    training: TrainingOptions
    train_steps: int
    train_warmup: int
    episodes_axis: tuple[int, ...]
    shots_axis: tuple[int, ...]
    ways_axis: tuple[int, ...]
    dims_axis: tuple[int, ...]
    gpicl_shots_axis: tuple[int, ...]


FULL = Plan(
    dims=(64, 512, 768),
    shots=(1, 5),
    max_seconds=0.5,
    repeats=3,
    training=TrainingOptions(),
    train_steps=10,
    train_warmup=2,
    episodes_axis=(1_000, 10_000, 100_000),
    shots_axis=(1, 5, 10, 20),
    ways_axis=(5, 10, 20),
    dims_axis=(64, 256, 512, 768, 1024),
    gpicl_shots_axis=(1, 5, 10, 20),
)
QUICK = Plan(
    dims=(64, 512),
    shots=(5,),
    max_seconds=0.25,
    repeats=2,
    training=TrainingOptions(d_model=64, layers=2, batch_size=32),
    train_steps=4,
    train_warmup=1,
    episodes_axis=(1_000, 10_000),
    shots_axis=(1, 5, 20),
    ways_axis=(5, 20),
    dims_axis=(64, 512, 1024),
    gpicl_shots_axis=(1, 5),
)


@dataclass(frozen=True)
class Rate:
    """One machine limit: the median rate of a large operation repeated."""

    name: str
    operation: str
    work: float  # bytes or FLOPs per call
    unit: str
    seconds: list[float]
    rate: float


@dataclass(frozen=True)
class Memory:
    """Peak memory over one evaluation cell (all its runs) beside what the batch-size rule budgets for one batch."""

    rss_start_bytes: int
    rss_peak_bytes: int
    rss_scope: str  # "cell": peak since the cell began (Linux resets the mark); "process": since the process began
    cuda_start_bytes: int | None
    cuda_peak_bytes: int | None
    estimate_bytes: int  # learner.bytes_per_episode × batch size: what batching's auto rule assumes a batch takes


@dataclass(frozen=True)
class Cell:
    """One learner at one feature size and shot count: batched vs loop, utilisation and memory."""

    name: str
    dim: int
    shot: int
    batch_size: int
    batch_rule: str
    result: Result  # timings, speed-up and the agreement check, as batched_vs_loop computes them
    bytes_per_episode: int
    flops_per_episode: float
    matmul_dtype: str
    utilisation: float | None
    utilisation_of: str
    memory: Memory


@dataclass(frozen=True)
class TrainingRun:
    """Meta-training speed of one model, and how much of each step generating its tasks takes."""

    model: dict[str, Any]
    parameters: int
    batch_size: int
    tokens_per_step: int
    warmup_steps: int
    step_seconds: list[float]
    generation_seconds: list[float]
    steps_per_second: float
    tokens_per_second: float
    generation_share: float
    other_cpu_share: float | None


@dataclass(frozen=True)
class Point:
    """One point of a scaling axis; ``relative`` is its cost per unit over the axis's cheapest point."""

    learner: str
    axis: str
    value: int
    shape: str
    dim: int
    episodes: int
    batch_size: int
    runs: int
    seconds: float
    episodes_per_second: float
    unit: str
    ns_per_unit: float
    relative: float = 1.0
    flat: bool = True


@dataclass(frozen=True)
class Target:
    """A performance goal; ``passed`` is None when the run did not measure it."""

    name: str
    measured: float | None
    comparison: str  # ">=" or "<"
    threshold: float
    unit: str

    @property
    def passed(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.threshold if self.comparison == ">=" else self.measured < self.threshold


@functools.cache
def cached_features(dim: int, device: str, seed: int) -> SplitData:
    """A stand-in for an encoder's cached features: CLASSES Gaussian class means plus unit noise, ROWS_PER_CLASS rows
    each. Speed does not depend on the values; their scale only keeps accuracy away from chance and from 100%, so that
    the batched-vs-loop check compares real decisions."""
    generator = torch.Generator().manual_seed(seed)
    means = torch.randn(CLASSES, dim, generator=generator) * (SEPARATION / dim**0.25)
    labels = torch.arange(CLASSES).repeat_interleave(ROWS_PER_CLASS)
    features = means[labels] + torch.randn(len(labels), dim, generator=generator)
    return SplitData(features.to(device), labels.to(device), tuple(f"class {c}" for c in range(CLASSES)))


def copy_rate(device: torch.device, repeats: int) -> Rate:
    """Bytes read per second by one large contiguous copy: the bandwidth ceiling of memory-bound learners."""
    source = torch.ones(COPY_BYTES // 4, device=device)
    target = torch.empty_like(source)
    target.copy_(source)  # warm-up: faults in the target's pages
    seconds = [clock(lambda: target.copy_(source), device)[0] for _ in range(repeats)]
    operation = f"dst.copy_(src), {COPY_BYTES >> 20} MiB float32"
    return Rate("copy", operation, COPY_BYTES, "B/s", seconds, COPY_BYTES / statistics.median(seconds))


def matmul_rate(device: torch.device, dtype: torch.dtype, name: str, repeats: int) -> Rate:
    """FLOP/s of one large square matmul (2n³ FLOPs): the compute ceiling of dense learners."""
    n = MATMUL_SIZE[device.type]
    left, right = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(left, right, out=out)  # warm-up: kernel selection, workspaces
    seconds = [clock(lambda: torch.mm(left, right, out=out), device)[0] for _ in range(repeats)]
    return Rate(name, f"{n}×{n} @ {n}×{n} {name}", 2 * n**3, "FLOP/s", seconds, 2 * n**3 / statistics.median(seconds))


def measure_limits(device: torch.device) -> dict[str, Rate]:
    """Copy bandwidth and matmul FLOP/s (fp32; bf16 too on CUDA, where gpicl evaluates under bf16 autocast)."""
    limits = {
        "copy": copy_rate(device, LIMIT_REPEATS),
        "fp32": matmul_rate(device, torch.float32, "fp32", LIMIT_REPEATS),
    }
    if device.type == "cuda":
        limits["bf16"] = matmul_rate(device, torch.bfloat16, "bf16", LIMIT_REPEATS)
    return limits


def sequence_learner(learner: Learner) -> SequenceLearner | None:
    """The sequence learner inside a registry learner (gpicl wraps one), or None for set learners."""
    inner = getattr(learner, "learner", learner)
    return inner if isinstance(inner, SequenceLearner) else None


def matmul_dtype(learner: Learner, device: torch.device) -> str:
    """The dtype a learner's matmuls run in: bf16 under SequenceLearner's autocast rule (precision auto, a
    Transformer, CUDA), fp32 otherwise."""
    inner = sequence_learner(learner)
    bf16 = inner is not None and inner.precision == "auto" and inner.model.autocast_bf16
    return "bf16" if bf16 and device.type == "cuda" else "fp32"


def tolerance(name: str, learner: Learner, shape: EpisodeShape, device: torch.device) -> float:
    """batched_vs_loop's tolerance, except under bf16, where one near-tie query per episode may flip: the kernels
    picked for a batch of one and for a large batch round differently."""
    if matmul_dtype(learner, device) == "bf16":
        return 1 / (shape.way * shape.query) + 1e-9
    return TOLERANCE.get(name, 1e-6)


def time_fit_batch(work: Workload, cap: int, budget: float, device: torch.device) -> int:
    """Episodes per batch: grow ×4 from PROBE_EPISODES while a batch takes under half of one timed run's budget, up to
    ``cap`` (the most that fit in memory), and keep the largest batch that ran within the budget. Large batches
    amortise the sampler's fixed cost per call; the budget keeps slow learners (logreg, gpicl on a CPU) to batches
    that fit a run. The probes double as warm-ups."""
    size, fitted = min(PROBE_EPISODES, cap), 0
    while True:
        seconds, _ = clock(functools.partial(run_batched, work, size, size), device)
        if seconds <= budget or not fitted:
            fitted = size
        if seconds > budget / 2 or size >= cap:
            return fitted
        size = min(4 * size, cap)


def batch_for(work: Workload, args: argparse.Namespace, device: torch.device) -> tuple[int, str]:
    """The batch size to time with, and the rule that chose it (reported)."""
    if args.batch_size != AUTO:
        return int(args.batch_size), "fixed (--batch-size)"
    shape, dim = work.sampler.shape, work.data.dim
    cap = episodes_per_batch(AUTO, work.learner, shape, dim, work.project_inputs, device)
    size = time_fit_batch(work, cap, args.max_seconds, device)
    return size, f"auto: memory cap {cap:,} (batching auto), time fit → {size:,}"


class PeakMemory:
    """Peak memory from creation on: torch's CUDA allocator counter, and resident memory (ru_maxrss), whose
    high-water mark Linux resets through /proc/self/clear_refs; elsewhere it is the process's peak so far."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.scope = "cell"
        except OSError:
            self.scope = "process"
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.rss_start = _max_rss()
        self.cuda_start = torch.cuda.memory_allocated(device) if self.cuda else None

    def read(self, estimate: int) -> Memory:
        cuda_peak = torch.cuda.max_memory_allocated(self.device) if self.cuda else None
        return Memory(self.rss_start, _max_rss(), self.scope, self.cuda_start, cuda_peak, estimate)


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT


def _cpu_attention_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """torch's dense attention formula for the CPU attention kernel, which FlopCounterMode lacks (it has CUDA's)."""
    return sdpa_flop_count(query, key, value)


EXTRA_FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


def flops_per_episode(work: Workload) -> float:
    """Matmul FLOPs of one episode of the engine's batched path, counted exactly by FlopCounterMode."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter:
        run_batched(work, FLOP_EPISODES, FLOP_EPISODES)
    return counter.get_total_flops() / FLOP_EPISODES


def evaluate_cell(
    label: str,
    name: str,
    learner: Learner,
    data: SplitData,
    shape: EpisodeShape,
    limits: dict[str, Rate],
    args: argparse.Namespace,
    device: torch.device,
) -> Cell:
    """Batched vs loop (batched_vs_loop's ``benchmark``) on one setting, then its utilisation and peak memory."""
    sampler = EpisodeSampler(data.labels, shape, args.seed).to(device)
    work = Workload(learner, data, sampler, project_inputs=False)
    memory = PeakMemory(device)
    batch, rule = batch_for(work, args, device)
    budget = argparse.Namespace(
        episodes=MAX_EPISODES,
        loop_episodes=MAX_LOOP_EPISODES,
        batch_size=batch,
        repeats=args.repeats,
        max_seconds=args.max_seconds,
    )
    result = benchmark(work, label, tolerance(name, learner, shape, device), budget, device)
    estimate = learner.bytes_per_episode(shape.way, shape.way * shape.shot, shape.way * shape.query, data.dim) * batch
    peaks = memory.read(estimate)
    bytes_read = shape.way * (shape.shot + shape.query) * data.dim * 4
    flops = flops_per_episode(work)
    dtype = matmul_dtype(learner, device)
    limit, per_episode = ("copy", bytes_read) if name in BANDWIDTH_BOUND else (dtype, flops)
    utilisation = per_episode * result.batched_rate / limits[limit].rate if limit in limits else None
    return Cell(
        name=name,
        dim=data.dim,
        shot=shape.shot,
        batch_size=batch,
        batch_rule=rule,
        result=result,
        bytes_per_episode=bytes_read,
        flops_per_episode=flops,
        matmul_dtype=dtype,
        utilisation=utilisation,
        utilisation_of="copy bandwidth" if limit == "copy" else f"{limit} matmul FLOP/s",
        memory=peaks,
    )


def meta_training(options: TrainingOptions, steps: int, warmup: int, device: torch.device, seed: int) -> TrainingRun:
    """Time meta-training steps as ``training.train`` takes them after the curriculum — a task batch, forward,
    cross-entropy, backward, clipping, Adam — with task generation also timed on its own, on synthetic 64-feature
    data (the default source, digits, has 64 features; speed does not depend on the values)."""
    others = OtherProcessesMeter()
    data = cached_features(TRAINING_DIM, str(device), seed)
    stream = TaskStream(data, options.distribution(warming_up=False))
    torch.manual_seed(options.seed)
    model = build_model(options.model_config(data.dim)).to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=options.lr, eps=options.adam_eps)
    generation: list[float] = []
    total: list[float] = []
    tokens = 0
    for step in range(1, warmup + steps + 1):
        synchronize(device)
        start = time.perf_counter()
        batch = stream.batch(step, options.batch_size)
        synchronize(device)
        generated = time.perf_counter()
        optimisation_step(model, batch, options, optimiser)
        synchronize(device)
        if step > warmup:
            generation.append(generated - start)
            total.append(time.perf_counter() - start)
            tokens += batch.labels.numel()
    tokens //= len(total)
    return TrainingRun(
        model=options.model_config(data.dim).to_dict(),
        parameters=sum(p.numel() for p in model.parameters()),
        batch_size=options.batch_size,
        tokens_per_step=tokens,
        warmup_steps=warmup,
        step_seconds=total,
        generation_seconds=generation,
        steps_per_second=len(total) / sum(total),
        tokens_per_second=tokens * len(total) / sum(total),
        generation_share=sum(generation) / sum(total),
        other_cpu_share=others.share(),
    )


def scaling_point(
    label: str,
    learner: Learner,
    axis: str,
    value: int,
    shape: EpisodeShape,
    dim: int,
    episodes: int,
    batch: int,
    args: argparse.Namespace,
    device: torch.device,
) -> Point:
    """Median seconds over ``episodes`` after a one-batch warm-up; except on the episodes axis, the count is capped by
    the time budget (whole batches), and so is the number of repeats when one run is long."""
    data = cached_features(dim, str(device), args.seed)
    work = Workload(learner, data, EpisodeSampler(data.labels, shape, args.seed).to(device), project_inputs=False)
    batch = min(batch, episodes_per_batch(AUTO, learner, shape, dim, False, device))
    warm = min(batch, episodes)
    warm_seconds, _ = clock(functools.partial(run_batched, work, warm, batch), device)
    if axis != "episodes":
        episodes = affordable(episodes, warm_seconds / warm, args.max_seconds, step=batch)
    estimate = warm_seconds / warm * episodes
    runs = max(1, min(args.repeats, int(args.max_seconds * args.repeats / estimate)))
    timed = [clock(functools.partial(run_batched, work, episodes, batch), device)[0] for _ in range(runs)]
    seconds = statistics.median(timed)
    rows = shape.way * (shape.shot + shape.query)
    unit, per_episode = {
        "episodes": ("episode", 1.0),
        "shots": ("row" if sequence_learner(learner) is None else "token", float(rows)),
        "ways": ("row", float(rows)),
        "dim": ("KiB read", rows * dim * 4 / 1024),
    }[axis]
    return Point(
        learner=label,
        axis=axis,
        value=value,
        shape=str(shape),
        dim=dim,
        episodes=episodes,
        batch_size=batch,
        runs=runs,
        seconds=seconds,
        episodes_per_second=episodes / seconds,
        unit=unit,
        ns_per_unit=seconds * 1e9 / (episodes * per_episode),
    )


def scaling(
    protonet: Learner, gpicl: tuple[str, Learner] | None, plan: Plan, args: argparse.Namespace, device: torch.device
) -> list[Point]:
    """protonet along every axis from 5-way 5-shot 15-query D=64, gpicl (if evaluated) along shots; each learner keeps
    the batch size the time fit picks at that base point (capped by memory per point), so that an axis shows only its
    own effect."""
    shape, dim = SCALING_BASE
    n = SCALING_EPISODES
    settings = [
        *(("protonet", protonet, "episodes", count, shape, dim, count) for count in plan.episodes_axis),
        *(("protonet", protonet, "shots", k, EpisodeShape(WAY, k, QUERY), dim, n) for k in plan.shots_axis),
        *(("protonet", protonet, "ways", w, EpisodeShape(w, 5, QUERY), dim, n) for w in plan.ways_axis),
        *(("protonet", protonet, "dim", d, shape, d, n) for d in plan.dims_axis),
    ]
    if gpicl is not None:
        settings += [(*gpicl, "shots", k, EpisodeShape(WAY, k, QUERY), dim, n) for k in plan.gpicl_shots_axis]
    base = cached_features(dim, str(device), args.seed)
    batches: dict[str, int] = {}
    points: list[Point] = []
    for label, learner, axis, value, point_shape, point_dim, episodes in settings:
        if label not in batches:
            sampler = EpisodeSampler(base.labels, shape, args.seed).to(device)
            batches[label] = batch_for(Workload(learner, base, sampler, project_inputs=False), args, device)[0]
        point = scaling_point(
            label, learner, axis, value, point_shape, point_dim, episodes, batches[label], args, device
        )
        points.append(point)
    return flag_unflat(points)


def flag_unflat(points: list[Point]) -> list[Point]:
    """Each point's cost per unit relative to the cheapest point of its axis, flagged beyond FLAT."""
    best: dict[tuple[str, str], float] = {}
    for p in points:
        key = (p.learner, p.axis)
        best[key] = min(best.get(key, p.ns_per_unit), p.ns_per_unit)
    flagged = []
    for p in points:
        relative = p.ns_per_unit / best[(p.learner, p.axis)]
        flagged.append(dataclasses.replace(p, relative=relative, flat=relative <= FLAT))
    return flagged


def targets(cells: list[Cell], training: TrainingRun | None) -> list[Target]:
    """The goals, read from the cells they name (None where this run did not measure them)."""

    def cell(name: str, dim: int) -> Cell | None:
        return next((c for c in cells if c.name == name and c.dim == dim and c.shot == 5), None)

    protonet64, protonet512, gpicl64 = cell("protonet", 64), cell("protonet", 512), cell("gpicl", 64)
    protonet768 = cell("protonet", 768)
    return [
        Target(
            "protonet speed-up over the per-episode loop (D=64, 5-shot)",
            protonet64.result.speedup if protonet64 else None,
            ">=",
            30.0,
            "×",
        ),
        Target(
            "protonet bytes read / copy bandwidth (D=512, 5-shot)",
            protonet512.utilisation if protonet512 else None,
            ">=",
            0.40,
            "share",
        ),
        Target(
            "protonet bytes read / copy bandwidth (D=768, 5-shot)",
            protonet768.utilisation if protonet768 else None,
            ">=",
            0.60,
            "share",
        ),
        Target(
            "gpicl evaluation FLOP/s / matmul FLOP/s (D=64, 5-shot)",
            gpicl64.utilisation if gpicl64 else None,
            ">=",
            0.30,
            "share",
        ),
        Target(
            "task generation / meta-training step time",
            training.generation_share if training else None,
            "<",
            0.05,
            "share",
        ),
    ]


def human(value: float, unit: str) -> str:
    """A rate with an SI prefix: 12.3 GB/s, 1.52 TFLOP/s."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:,.0f} MiB"


def share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def render_limits(limits: dict[str, Rate], console: Console) -> None:
    table = Table(title="1. machine limits", caption="median of the repeats after a warm-up; copy: bytes read / time")
    for column in ("limit", "operation", "median", "rate"):
        table.add_column(column, justify="right" if column in ("median", "rate") else "left")
    for rate in limits.values():
        table.add_row(
            rate.name, rate.operation, f"{statistics.median(rate.seconds) * 1e3:.2f} ms", human(rate.rate, rate.unit)
        )
    console.print(table)


def render_evaluation(cells: list[Cell], console: Console) -> None:
    table = Table(
        title=f"2. evaluation: {WAY}-way, {QUERY} queries, synthetic cached features ({CLASSES} classes × "
        f"{ROWS_PER_CLASS} rows)",
        caption="episodes: batched / loop (a prefix of the same ids); utilisation: bytes read (metric learners) or "
        "counted FLOPs (others) per second over the machine limit; check: max |Δ accuracy| on the shared episodes",
    )
    for column in ("learner", "D", "shot", "batch", "episodes", "batched ep/s", "loop ep/s", "speed-up"):
        table.add_column(column, justify="left" if column == "learner" else "right")
    table.add_column("utilisation", justify="right")
    table.add_column("check")
    for c in cells:
        r = c.result
        verdict = "[green]pass[/]" if r.check_passed else "[red]FAIL[/]"
        table.add_row(
            r.learner,
            str(c.dim),
            str(c.shot),
            f"{c.batch_size:,}",
            f"{r.batched_episodes:,} / {r.loop_episodes:,}",
            f"{r.batched_rate:,.0f}",
            f"{r.loop_rate:,.1f}",
            f"{r.speedup:,.1f}×",
            f"{share(c.utilisation)} {c.utilisation_of.split(' ')[0]}",
            f"{verdict} Δ={r.max_abs_difference:.2g}",
        )
    console.print(table)


def render_training(run: TrainingRun, console: Console) -> None:
    table = Table(
        title="3. meta-training step",
        caption=f"{len(run.step_seconds)} timed steps after {run.warmup_steps} warm-up: s/step their median, rates "
        "over their total; tokens/step = batch × (sequence length + queries); task generation: TaskStream.batch's "
        "share of the steps' time",
    )
    for column in ("model", "parameters", "tokens/step", "s/step", "steps/s", "tokens/s", "task generation"):
        table.add_column(column, justify="left" if column == "model" else "right")
    model = run.model
    table.add_row(
        f"{model['kind']} d={model['d_model']} L={model['layers']} H={model['heads']}, batch {run.batch_size}",
        f"{run.parameters:,}",
        f"{run.tokens_per_step:,}",
        f"{statistics.median(run.step_seconds):.3f}",
        f"{run.steps_per_second:.2f}",
        f"{run.tokens_per_second:,.0f}",
        share(run.generation_share),
    )
    console.print(table)


def render_scaling(points: list[Point], console: Console) -> None:
    table = Table(
        title=f"4. scaling (from {SCALING_BASE[0]}, D={SCALING_BASE[1]})",
        caption=f"× best: cost per unit over the axis's cheapest point; flagged beyond {FLAT}×",
    )
    for column in ("learner", "axis", "value", "episodes", "batch", "seconds", "ep/s", "ns/unit", "unit", "× best"):
        table.add_column(column, justify="left" if column in ("learner", "axis", "unit") else "right")
    for p in points:
        table.add_row(
            p.learner,
            p.axis,
            str(p.value),
            f"{p.episodes:,}",
            f"{p.batch_size:,}",
            f"{p.seconds:.3f}",
            f"{p.episodes_per_second:,.0f}",
            f"{p.ns_per_unit:,.1f}",
            p.unit,
            f"{p.relative:.2f}×" if p.flat else f"[yellow]{p.relative:.2f}× not flat[/]",
        )
    console.print(table)


def render_memory(cells: list[Cell], console: Console) -> None:
    scope = cells[0].memory.rss_scope
    table = Table(
        title="5. peak memory per evaluation cell",
        caption=f"RSS: ru_maxrss, peak since the {'cell began' if scope == 'cell' else 'process began'}; estimate: "
        "learner.bytes_per_episode × batch (what batching's auto rule budgets)",
    )
    for column in ("learner", "D", "shot", "batch", "RSS start", "RSS peak", "CUDA start", "CUDA peak", "estimate"):
        table.add_column(column, justify="left" if column == "learner" else "right")
    for c in cells:
        m = c.memory
        table.add_row(
            c.result.learner,
            str(c.dim),
            str(c.shot),
            f"{c.batch_size:,}",
            mib(m.rss_start_bytes),
            mib(m.rss_peak_bytes),
            mib(m.cuda_start_bytes),
            mib(m.cuda_peak_bytes),
            mib(m.estimate_bytes),
        )
    console.print(table)


def render_targets(goals: list[Target], console: Console) -> None:
    table = Table(title="6. targets")
    for column in ("target", "goal", "measured", "verdict"):
        table.add_column(column, justify="left" if column == "target" else "right")
    for goal in goals:
        verdict = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "not measured"}[goal.passed]
        goal_text = f"{goal.comparison} {show_target(goal, goal.threshold)}"
        table.add_row(goal.name, goal_text, show_target(goal, goal.measured), verdict)
    console.print(table)


def show_target(goal: Target, value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}×" if goal.unit == "×" else share(value)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, validated before any timing; ``--quick`` picks the smaller plan and its budgets."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add(
        "--device",
        choices=("cpu", "cuda"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where everything runs (default: cuda if available, else cpu)",
    )
    add("--json", type=Path, metavar="PATH", help="also write every figure, the settings and the machine here")
    add("--quick", action="store_true", help="a smaller grid, model and budgets, for trial runs (about a minute)")
    add("--check", action="store_true", help="exit with status 3 when a target this run measured is missed")
    add(
        "--learner",
        action="append",
        default=argparse.SUPPRESS,
        help=f"learner reference for the evaluation section, repeatable (default: {', '.join(DEFAULT_LEARNERS)})",
    )
    add(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all; peak memory comes with evaluation, "
        "targets always)",
    )
    add(
        "--max-seconds",
        type=float,
        help=f"budget of one timed run (default {FULL.max_seconds}, --quick {QUICK.max_seconds})",
    )
    add(
        "--repeats",
        type=int,
        help=f"timed runs per variant, median reported (default {FULL.repeats}, --quick {QUICK.repeats})",
    )
    add(
        "--batch-size",
        default=AUTO,
        help="episodes per batch (default: auto, the most that fit memory by batching's auto rule, capped by what "
        "fits --max-seconds)",
    )
    add("--seed", type=int, default=0, help="seed of the episodes and the synthetic features (default: 0)")
    add(
        "--threads",
        type=int,
        help="torch's intra-op threads (default: torch's own choice); 1 avoids the stalls of threads that wait for a "
        "descheduled peer on a machine another job keeps busy",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    args.learner = getattr(args, "learner", list(DEFAULT_LEARNERS))
    args.max_seconds = plan.max_seconds if args.max_seconds is None else args.max_seconds
    args.repeats = plan.repeats if args.repeats is None else args.repeats
    args.sections = [part.strip() for part in args.sections.split(",") if part.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        parser.error(f"--sections: choose from {', '.join(SECTIONS)}, got {', '.join(unknown) or 'none'}")
    if args.max_seconds <= 0 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--max-seconds must be positive, --repeats and --threads at least 1")
    try:
        args.batch_size = parse_batch_size(args.batch_size)
    except UserError as error:
        parser.error(f"--batch-size: {error}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available to this torch build")
    return args


def build_learners(texts: list[str], device: torch.device) -> list[tuple[str, str, Learner]]:
    """(canonical label, registry name, learner on the device, meta-trained if it needs it) per reference; bad
    references raise UserError."""
    refs = [LEARNERS.canonical(Ref.parse(text)) for text in texts]
    return [(str(ref), ref.name, fitting.fit(LEARNERS.build(ref), device).to(device)) for ref in refs]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sections asked for; exit 0, or 1 if a batched-vs-loop check failed, 2 for bad input, 3 with
    ``--check`` if a measured target was missed."""
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    console, stderr = Console(), Console(stderr=True)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        learners = build_learners(args.learner, device)
        protonet = LEARNERS.build(Ref("protonet")).to(device)
    except UserError as error:
        stderr.print(f"[red]error:[/] {error}")
        return 2
    gpicl = next(((label, learner) for label, name, learner in learners if name == "gpicl"), None)
    started = time.perf_counter()
    section_seconds: dict[str, float] = {}
    contention: dict[str, float | None] = {}
    limits: dict[str, Rate] = {}
    cells: list[Cell] = []
    training: TrainingRun | None = None
    points: list[Point] = []
    console.print(
        f"device {device}, {torch.get_num_threads()} torch threads, {'quick' if args.quick else 'full'} plan: "
        f"{args.max_seconds:g} s per timed run, median of {args.repeats}, batch size {args.batch_size}"
    )

    if "limits" in args.sections:
        others, start = OtherProcessesMeter(), time.perf_counter()
        with console.status("machine limits …"):
            limits = measure_limits(device)
        section_seconds["limits"], contention["limits"] = time.perf_counter() - start, others.share()
        render_limits(limits, console)
    if "evaluation" in args.sections:
        start = time.perf_counter()
        for dim in plan.dims:
            data = cached_features(dim, str(device), args.seed)
            for shot in plan.shots:
                shape = EpisodeShape(WAY, shot, QUERY)
                for label, name, learner in learners:
                    with console.status(f"evaluation: {label}, D={dim}, {shape} …"):
                        cells.append(evaluate_cell(label, name, learner, data, shape, limits, args, device))
                    contention[f"evaluation {label} D={dim} {shot}-shot"] = cells[-1].result.other_cpu_share
        section_seconds["evaluation"] = time.perf_counter() - start
        render_evaluation(cells, console)
    if "training" in args.sections:
        start = time.perf_counter()
        with console.status("meta-training steps …"):
            training = meta_training(plan.training, plan.train_steps, plan.train_warmup, device, args.seed)
        section_seconds["training"], contention["training"] = time.perf_counter() - start, training.other_cpu_share
        render_training(training, console)
    if "scaling" in args.sections:
        others, start = OtherProcessesMeter(), time.perf_counter()
        with console.status("scaling …"):
            points = scaling(protonet, gpicl, plan, args, device)
        section_seconds["scaling"], contention["scaling"] = time.perf_counter() - start, others.share()
        render_scaling(points, console)
    if cells:
        render_memory(cells, console)
    goals = targets(cells, training)
    render_targets(goals, console)

    machine = {**machine_info(device), "float32_matmul_precision": torch.get_float32_matmul_precision()}
    wall = time.perf_counter() - started
    console.print(
        f"machine: torch {machine['torch']}, {machine['torch_threads']} threads, {machine['cpu_count']} CPUs, "
        f"device {machine['device']} ({machine['device_name']}); {wall:.0f} s"
    )
    if args.json:
        report = {
            "settings": {
                "argv": list(sys.argv[1:] if argv is None else argv),
                "device": str(device),
                "plan": "quick" if args.quick else "full",
                "sections": args.sections,
                "learners": [label for label, _, _ in learners],
                "max_seconds": args.max_seconds,
                "repeats": args.repeats,
                "batch_size": args.batch_size,
                "seed": args.seed,
                "threads": torch.get_num_threads(),
                "way": WAY,
                "query": QUERY,
                "dims": list(plan.dims),
                "shots": list(plan.shots),
                "features": f"synthetic: {CLASSES} classes × {ROWS_PER_CLASS} rows, Gaussian means + unit noise",
            },
            "machine": machine,
            "definitions": DEFINITIONS,
            "wall_seconds": wall,
            "section_seconds": section_seconds,
            "other_cpu_share": contention,
            "limits": {key: asdict(rate) for key, rate in limits.items()},
            "evaluation": [asdict(c) for c in cells],
            "training": asdict(training) if training else None,
            "scaling": [asdict(p) for p in points],
            "targets": [{**asdict(goal), "passed": goal.passed} for goal in goals],
            "checks_passed": all(c.result.check_passed for c in cells),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=json_default) + "\n")
        console.print(f"wrote {args.json}")

    contended = {
        where: other for where, other in contention.items() if other is not None and other > CONTENTION_WARNING
    }
    if contended:
        worst = max(contended, key=contended.__getitem__)
        stderr.print(
            f"[yellow]warning:[/] other processes used more than {CONTENTION_WARNING:.0%} of the CPUs during "
            f"{len(contended)} of {len(contention)} measured parts (worst: {contended[worst]:.0%}, {worst}): those "
            "figures are distorted (batched runs, which use every thread, suffer most); rerun on an idle machine"
        )
    failed = [c.result for c in cells if not c.result.check_passed]
    for r in failed:
        stderr.print(
            f"[red]check failed:[/] {r.learner}: batched and loop accuracies differ on the first {r.loop_episodes} "
            f"episodes by up to {r.max_abs_difference:.3g} (tolerance {r.tolerance:g}); the timings are not comparable"
        )
    missed = [goal for goal in goals if goal.passed is False]
    if args.check and missed:
        stderr.print(f"[red]targets missed:[/] {'; '.join(goal.name for goal in missed)}", soft_wrap=True)
    if failed:
        return 1  # the timings mean nothing, whatever the targets say
    return 3 if args.check and missed else 0


def json_default(value: Any) -> Any:
    """numpy scalars (from the accuracies) as plain numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
