"""What the input rule's ``basis`` part costs: batched eigendecompositions of Gram matrices (float64, rank one short
of full, like a centred context's), median of 5 after a warm-up. On CUDA it also times the host's LAPACK, with and
without the copies, and the input rule's own choice between them (``input_rule._eigh``). ``--threads`` sets torch's
host threads; run it beside another job, or with ``OMP_WAIT_POLICY=PASSIVE``, to see OpenMP waiting for a core.
Run from the repository root::

    .venv/bin/python benchmarks/perf/eigh.py [--device cuda] [--sizes 512x60 128x60] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from gpicl_bench.learners import input_rule

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark, from whatever directory this runs
from bottlenecks import milliseconds

SIZES = ("512x60", "128x60", "512x30", "2000x25")  # a meta-training batch's contexts; evaluation's 5-way 5-shot


def gram_matrices(count: int, size: int) -> torch.Tensor:
    factors = torch.randn(count, size, size - 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return factors @ factors.mT


def timed_parts(on_host: torch.Tensor, device: torch.device) -> dict[str, float]:
    """Milliseconds of each way to decompose ``on_host``'s matrices for a caller on ``device``."""
    host, matrices = torch.device("cpu"), on_host.to(device)
    parts = {f"torch.linalg.eigh on {device.type}": (lambda: torch.linalg.eigh(matrices), device)}
    if device.type == "cuda":
        parts["host eigh"] = (lambda: torch.linalg.eigh(on_host), host)
        parts["host eigh, copies included"] = (
            lambda: [t.to(device) for t in torch.linalg.eigh(matrices.cpu())],
            device,
        )
        parts["the input rule's choice"] = (lambda: input_rule._eigh(matrices), device)
    return {name: milliseconds(work, clock_device) for name, (work, clock_device) in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sizes", nargs="+", default=SIZES, help="COUNTxSIZE: that many SIZE×SIZE matrices")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch's host threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"eigh of Gram matrices, float64, {args.threads} host threads (ms, median of 5):")
    for text in args.sizes:
        count, size = map(int, text.split("x"))
        for name, ms in timed_parts(gram_matrices(count, size), torch.device(args.device)).items():
            print(f"  {count} of {size}×{size}: {name:28s} {ms:9.1f}")


if __name__ == "__main__":
    main()
