"""Where a meta-training step's time goes, on the CPU or CUDA: task generation (``TaskStream.batch``), the input
rule alone, the forward and backward pass (which includes it) and the optimiser step, for a training spec (default:
the shipped GPICL recipe) at the given batch sizes, every sequence at full length; each part is the median of 5
after a warm-up. With ``--profile``, the operators that take the most host time in one whole step: on a GPU, a step
made of many small launches shows here. Run from the repository root::

    .venv/bin/python benchmarks/perf/training_step.py [--device cuda] [--batch-size 128 512] [--profile]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from gpicl_bench.learners.models import build_model
from gpicl_bench.learners.sequence import prepare_inputs
from gpicl_bench.spec import read_toml
from gpicl_bench.tasks import TaskStream
from gpicl_bench.training import (
    TrainingOptions,
    optimisation_step,
    position_losses,
    source_data,
    source_settings,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark, from whatever directory this runs
from bottlenecks import milliseconds

RECIPE = Path(__file__).resolve().parents[1] / "gpicl-mixed-train.toml"


def step_parts(options: TrainingOptions, device: torch.device, profile: bool) -> None:
    data = source_data(options, "train", source_settings(options, device, None))
    stream = TaskStream(data, options.distribution(warming_up=False))
    model = build_model(options.model_config(data.dim)).to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=options.lr, eps=options.adam_eps)
    batch = stream.batch(5, options.batch_size)

    def forward_backward() -> None:
        position_losses(model, batch, options).mean().backward()

    def optimiser_step() -> None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), options.clip)
        optimiser.step()

    def whole_step(step: int = 5) -> None:  # as training.train takes it
        optimisation_step(model, stream.batch(step, options.batch_size), options, optimiser)

    parts = {
        "task generation": lambda: stream.batch(5, options.batch_size),
        "input rule": lambda: prepare_inputs(model.config, batch.x, batch.context),
        "forward + backward": forward_backward,
        "clip + Adam": optimiser_step,
        "whole step": whole_step,
    }
    print(f"batch {options.batch_size} × {options.sequence_length} examples, d_model {options.d_model}, "
          f"{options.layers} layers, on {device} (ms):")  # fmt: skip
    for name, work in parts.items():
        print(f"  {name:20s} {milliseconds(work, device):8.1f}")
    if profile:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as profiler:
            whole_step(6)
            if device.type == "cuda":
                torch.cuda.synchronize()
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("spec", nargs="?", type=Path, default=RECIPE, help="training spec (TOML)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[128])
    parser.add_argument("--profile", action="store_true", help="also list the operators of one whole step")
    args = parser.parse_args()
    values = read_toml(args.spec)
    values.pop("out", None)  # where `train` would write the checkpoint: nothing is written here
    recipe = TrainingOptions.from_values(values, str(args.spec))
    for size in args.batch_size:
        # every sequence at full length: the slowest step of the recipe
        options = dataclasses.replace(recipe, batch_size=size, min_length=recipe.sequence_length)
        step_parts(options, torch.device(args.device), args.profile and size == args.batch_size[-1])


if __name__ == "__main__":
    main()
