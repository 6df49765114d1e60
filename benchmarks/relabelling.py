"""How often a learner's predictions follow a renaming of the classes, on the learner contract's episodes.

A learner equivariant by construction follows every renaming exactly; meta-trained ones (gpicl, caml) see labels
through learned weights, so tests/test_learner_contract.py holds them to a share measured here: per seed, the
contract's clustered Gaussian episodes (5-way, 3-shot, 4 queries a class, 64 features), predicted with the support's
labels as given and renamed c → c + 2 mod 5.

    .venv/bin/python benchmarks/relabelling.py gpicl          # 4 seeds of 528 episodes
    .venv/bin/python benchmarks/relabelling.py caml --seeds 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_learner_contract import EPISODES, QUERIES, WAY, episodes  # the contract's own episodes

from gpicl_bench import fitting
from gpicl_bench.learners.registry import LEARNERS
from gpicl_bench.registry import Ref

BATCHES_PER_SEED = 11  # 11 × 48 = 528 episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("learner", help="learner reference, e.g. gpicl or caml:checkpoint=PATH")
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    learner = fitting.fit(LEARNERS.build(Ref.parse(args.learner)), "cpu", name=args.learner)
    renaming = torch.tensor([2, 3, 4, 0, 1])
    query_y = torch.arange(WAY).repeat_interleave(QUERIES).expand(EPISODES, -1)
    for seed in range(args.seeds):
        agreeing = correct = total = 0
        for batch in range(BATCHES_PER_SEED):
            support_x, support_y, query_x = episodes(1000 * seed + batch)
            predicted = learner.predict(support_x, support_y, query_x, WAY).argmax(-1)
            renamed = learner.predict(support_x, renaming[support_y], query_x, WAY).argmax(-1)
            agreeing += int((renaming[predicted] == renamed).sum())
            correct += int((predicted == query_y).sum())
            total += predicted.numel()
        shares = f"agreement {agreeing / total:.2%}, accuracy {correct / total:.2%}"
        print(f"seed {seed}: {shares} over {BATCHES_PER_SEED * EPISODES} episodes")


if __name__ == "__main__":
    main()
