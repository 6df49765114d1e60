"""Where the time of the two hot paths the harness flags goes: one protonet batch at D=512, and one meta-training
task batch. Each part is timed on its own (median of 5 after a warm-up), on the CPU or CUDA.

protonet: sampling, gathering the episodes' feature rows, and the squared distances — split into the queries'
squared norms and the batched matmul — plus the norms by ``torch.linalg.vector_norm`` (faster, but it rounds
differently: the script counts the 1-shot results on the integer-valued raw digits it would change).
Task generation: the whole ``TaskStream.batch`` and its per-task random projections alone. Run from the repository
root::

    .venv/bin/python benchmarks/perf/bottlenecks.py [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from gpicl_bench.episodes import EpisodeSampler, EpisodeShape
from gpicl_bench.evaluation import evaluate_group
from gpicl_bench.learners import protonet
from gpicl_bench.learners.base import squared_distances
from gpicl_bench.learners.protonet import ProtoNet
from gpicl_bench.suites import SplitData, open_suite
from gpicl_bench.tasks import TaskStream
from gpicl_bench.training import TrainingOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark, from whatever directory this runs
from batched_vs_loop import clock

EPISODES, DIM, TIE_EPISODES = 1024, 512, 20_000


def milliseconds(work: Callable[[], object], device: torch.device) -> float:
    """Median wall time of ``work`` in ms over 5 runs after a warm-up."""
    work()
    return 1000 * statistics.median(clock(work, device)[0] for _ in range(5))


def vector_norm_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``squared_distances`` with the squared norms taken by ``vector_norm`` (no materialised square)."""
    norms = [torch.linalg.vector_norm(x, dim=-1).square() for x in (a, b)]
    return (norms[0][:, :, None] - 2 * torch.bmm(a, b.transpose(1, 2)) + norms[1][:, None, :]).clamp_min_(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    device = torch.device(parser.parse_args().device)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(6400, DIM, generator=generator).to(device)
    sampler = EpisodeSampler(torch.arange(64).repeat_interleave(100), EpisodeShape(5, 5, 15), 0).to(device)
    ids = torch.arange(EPISODES, device=device)
    batch = sampler.sample(ids)
    support, query = features[batch.support_index], features[batch.query_index]
    one_hot = torch.nn.functional.one_hot(batch.support_labels, 5).to(support.dtype)
    prototypes = one_hot.transpose(1, 2) @ support / one_hot.sum(1)[:, :, None]
    print(f"protonet, {EPISODES} episodes of 5-way 5-shot 15-query at D={DIM}, on {device} (ms):")
    parts = {
        "sampling": lambda: sampler.sample(ids),
        "gathering the rows": lambda: (features[batch.support_index], features[batch.query_index]),
        "whole predict": lambda: ProtoNet().predict(support, batch.support_labels, query, 5),
        "squared distances": lambda: squared_distances(query, prototypes),
        "  queries' squared norms": lambda: query.square().sum(-1),
        "  batched matmul": lambda: torch.bmm(query, prototypes.transpose(1, 2)),
        "  norms by vector_norm": lambda: torch.linalg.vector_norm(query, dim=-1).square(),
    }
    for name, work in parts.items():
        print(f"  {name:26s} {milliseconds(work, device):8.1f}")

    digits = open_suite("digits").suite.load("test")
    digits = SplitData(digits.features.to(device), digits.labels.to(device), digits.class_names)
    one_shot = EpisodeSampler(digits.labels.cpu(), EpisodeShape(5, 1, 15), 0).to(device)
    before = evaluate_group(ProtoNet(), digits, one_shot, range(TIE_EPISODES), 2000, False).correct
    protonet.squared_distances = vector_norm_distances  # the alternative, for this count only
    after = evaluate_group(ProtoNet(), digits, one_shot, range(TIE_EPISODES), 2000, False).correct
    protonet.squared_distances = squared_distances
    print(f"  vector_norm would change {(before != after).sum()} of {TIE_EPISODES:,} 1-shot raw-digits results")

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
