"""Where the time of the two hot paths the harness flags goes: one protonet batch at D=512, and one meta-training
task batch. Each part is timed on its own (median of 5 after a warm-up), on the CPU or CUDA.

protonet reads episodes from the feature table (:class:`gpicl_bench.learners.base.EpisodeRows`): the parts are
sampling, the query rows gathered chunk by chunk into a cache-sized buffer, the inner products with the class means
on those chunks, and the whole ``predict_rows`` (which also sums the class means by index); sampling plus the
gathered products is what this design cannot go below with these kernels, shown beside one copy of the episodes'
rows at the machine's copy bandwidth. ``--fused`` also times the gather and the inner
products fused into one loop by ``torch.compile`` (it needs a C++ compiler; about 20 s to compile), the kernel a
design would need to pass the harness's bandwidth target. Task generation: the whole ``TaskStream.batch`` and its
per-task random projections alone. Run from the repository root::

    .venv/bin/python benchmarks/perf/bottlenecks.py [--device cuda] [--fused]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from gpicl_bench.episodes import EpisodeSampler, EpisodeShape
from gpicl_bench.learners.base import EpisodeRows, FeatureTable
from gpicl_bench.learners.protonet import ProtoNet
from gpicl_bench.suites import SplitData, open_suite
from gpicl_bench.tasks import TaskStream
from gpicl_bench.training import TrainingOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark, from whatever directory this runs
from batched_vs_loop import clock

EPISODES, DIM, COPY_BYTES = 4096, 512, 256 << 20


def milliseconds(work: Callable[[], object], device: torch.device) -> float:
    """Median wall time of ``work`` in ms over 5 runs after a warm-up."""
    work()
    return 1000 * statistics.median(clock(work, device)[0] for _ in range(5))


def fused_inner_products(features: torch.Tensor, index: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Each episode's query rows (gathered inside the loop) times its class means: [E, Q, way]."""
    return (features[index][:, :, None, :] * means[:, None, :, :]).sum(-1)


def protonet_parts(device: torch.device, fused: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    table = FeatureTable(torch.randn(6400, DIM, generator=generator).to(device))
    assert table.squared_norms.shape == (6400,)  # taken once per table before timing, as the engine does
    sampler = EpisodeSampler(torch.arange(64).repeat_interleave(100), EpisodeShape(5, 5, 15), 0).to(device)
    ids = torch.arange(EPISODES, device=device)
    batch = sampler.sample(ids)
    support, query = EpisodeRows(table, batch.support_index), EpisodeRows(table, batch.query_index)
    means = support.class_means(batch.support_labels, 5)
    parts = {
        "sampling": lambda: sampler.sample(ids),
        "query rows gathered": lambda: query.map(lambda rows, part: rows[:, :1, :1]),
        "gathered and multiplied": lambda: query.map(lambda rows, part: torch.bmm(rows, means[part].mT)),
        "whole predict_rows": lambda: ProtoNet().predict_rows(support, batch.support_labels, query, 5),
    }
    if fused:
        compiled = torch.compile(fused_inner_products, dynamic=False)
        parts["fused (torch.compile)"] = lambda: compiled(table.features, batch.query_index, means)
    source = torch.empty(COPY_BYTES // 4, device=device)
    target = torch.empty_like(source)
    copy_rate = COPY_BYTES / (milliseconds(lambda: target.copy_(source), device) / 1000)
    episode_bytes = 5 * 20 * DIM * 4
    print(f"protonet, {EPISODES} episodes of 5-way 5-shot 15-query at D={DIM}, on {device} (µs per episode):")
    per_episode = {name: 1000 * milliseconds(work, device) / EPISODES for name, work in parts.items()}
    for name, micros in per_episode.items():
        print(f"  {name:26s} {micros:8.2f}")
    copy = episode_bytes / copy_rate * 1e6
    bound = per_episode["sampling"] + per_episode["gathered and multiplied"]
    whole = per_episode["sampling"] + per_episode["whole predict_rows"]
    print(f"  {'the rows at copy bandwidth':26s} {copy:8.2f}  ({copy_rate / 1e9:.1f} GB/s)")
    print(f"  sampling + predict_rows: {whole:.2f} µs, {copy / whole:.1%} of copy bandwidth")
    print(f"  sampling + gathered and multiplied alone: {bound:.2f} µs, at most {copy / bound:.1%} of copy bandwidth")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--fused", action="store_true", help="also time the inductor-fused gather and products")
    args = parser.parse_args()
    device = torch.device(args.device)
    protonet_parts(device, args.fused)

    options = TrainingOptions()
    train = open_suite(options.source).suite.load("train")
    stream = TaskStream(SplitData(train.features.to(device), train.labels.to(device), train.class_names),
                        options.distribution(warming_up=False))  # fmt: skip
    tasks = torch.arange(options.batch_size, device=device)
    print(f"task generation, a batch of {options.batch_size} sequences of {options.sequence_length} (ms):")
    print(f"  {'whole TaskStream.batch':26s} {milliseconds(lambda: stream.batch(5, options.batch_size), device):8.1f}")
    projections = lambda: stream.families.projections(tasks, train.dim)  # noqa: E731
    print(f"  {'  per-task projections':26s} {milliseconds(projections, device):8.1f}")


if __name__ == "__main__":
    main()
