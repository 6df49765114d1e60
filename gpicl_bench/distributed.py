"""Running one command over several processes with ``torchrun``: which process this is, and how results meet.

``torchrun --nproc-per-node N -m gpicl_bench run …`` starts N copies; each reads its rank from the environment
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and joins a process group — gloo on the CPU, NCCL on GPUs,
one GPU per local rank. Because every episode and every meta-training sequence is a pure function of its counter,
a process can compute any share of the work on its own; only the results are brought together, on rank 0, which
alone writes files and prints.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from gpicl_bench.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world_size`` processes (a single process is rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, count: int) -> range:
        """This rank's contiguous share of ``count`` items (episodes), in rank order; shares differ by at most one."""
        base, extra = divmod(count, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (self.rank < extra))


def from_environment(device: torch.device) -> tuple[Ranks, torch.device]:
    """The ranks torchrun describes, with the process group joined, and this process's device (``cuda:LOCAL_RANK``
    when computing on CUDA); a plain process is ``Ranks()`` on ``device``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Ranks(), device
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise UserError("WORLD_SIZE is set but RANK is missing or not a number: start with torchrun") from None
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return Ranks(rank, world_size), device


def gather(ranks: Ranks, value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    if not ranks.distributed:
        return [value]
    values: list[Any] = [None] * ranks.world_size
    dist.all_gather_object(values, value)
    return values


def broadcast(ranks: Ranks, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not ranks.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(ranks: Ranks, action: Callable[[], T]) -> T | None:
    """Run ``action`` on rank 0 only; a user error it raises is raised on every rank, so no rank waits forever
    for one that stopped. Returns the action's result on rank 0, ``None`` elsewhere."""
    result, error = None, None
    if ranks.is_main:
        try:
            result = action()
        except UserError as caught:
            error = str(caught)
    error = broadcast(ranks, error)
    if error is not None:
        raise UserError(error)
    return result


def all_sum(ranks: Ranks, values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``values`` over ranks (in place, and returned)."""
    if ranks.distributed:
        dist.all_reduce(values)
    return values


@contextlib.contextmanager
def processes(device: torch.device) -> Iterator[tuple[Ranks, torch.device]]:
    """A command's process group: this process's ranks and device (:func:`from_environment`), and the group left
    at the end, however the command ends."""
    ranks, device = from_environment(device)
    try:
        yield ranks, device
    finally:
        if ranks.distributed and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
