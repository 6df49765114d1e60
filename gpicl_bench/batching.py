"""How many episodes go through a learner at once: a fixed number, or ``auto`` — the most that fit in memory.

Results never depend on the batch size (every episode is computed from its own number), so ``auto`` only trades
memory for speed. Its budget is a share of the device's free memory (CUDA), or of the memory the operating system
reports available (CPU), divided by the learner's own estimate of what one episode needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gpicl_bench.errors import UserError

if TYPE_CHECKING:
    import torch

    from gpicl_bench.episode_shape import EpisodeShape
    from gpicl_bench.learners.base import Learner

BatchSize = int | Literal["auto"]
AUTO = "auto"
DEFAULT_BATCH_SIZE = 500
CUDA_SHARE = 0.6  # of free GPU memory: the rest is for the allocator's fragmentation and the learner's workspace
CPU_SHARE = 0.25  # of available RAM: CPU kernels keep more temporaries alive than the estimates count
CPU_FALLBACK_BYTES = 2 << 30  # where /proc/meminfo is not there to say
MAX_AUTO_BATCH = 65_536  # beyond this, bigger batches gain nothing and progress reports would be rare


def parse_batch_size(text: str | int) -> BatchSize:
    """``auto`` or a positive number of episodes; anything else is a user error."""
    if str(text).strip().lower() == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"batch size must be a positive number or 'auto', got {text!r}") from None
    if value < 1:
        raise UserError(f"batch size must be positive, got {value}")
    return value


def memory_budget(device: torch.device) -> int:
    """Bytes a batch may use on ``device``."""
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_SHARE)
    return int(_available_ram() * CPU_SHARE)


def _available_ram() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return CPU_FALLBACK_BYTES


def episodes_per_batch(
    batch_size: BatchSize, learner: Learner, shape: EpisodeShape, dim: int, projected: bool, device: torch.device
) -> int:
    """The batch size to use: the fixed one, or the most episodes whose estimated memory fits the budget (at least
    one). A projected suite adds each episode's D×D projection and the projected inputs."""
    if batch_size != AUTO:
        return int(batch_size)
    support, query = shape.way * shape.shot, shape.way * shape.query
    per_episode = learner.bytes_per_episode(shape.way, support, query, dim)
    if projected:
        per_episode += 4 * (dim * dim + 2 * (support + query) * dim)
    return max(1, min(MAX_AUTO_BATCH, memory_budget(device) // per_episode))
