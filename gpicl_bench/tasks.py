"""GPICL's meta-training task distribution, generated a whole batch at a time on the device.

A task is a choice of ``way`` classes of the source split in a random order (so a random label permutation) and a
random linear projection of the inputs (entries N(0, 1/d)). A sequence draws ``length`` examples of its task's classes
uniformly, and labels each with its class's slot. Tasks are either fresh at every step (``tasks = 0``: task ids are
the sequence counter) or drawn from a finite pool of ``tasks`` ids, the paper's knob for memorisation versus
generalisation. A ``bias_fraction`` of every batch uses one fixed task (classes 0..way−1 in order, the projection of
task 0): the paper's biased-permutation curriculum against the loss plateau. A ``copy_fraction`` of every batch are
copy tasks: each class is one fixed image, repeated, so that matching a query to an earlier identical input and
reading its label — the mechanism in-context learning grows from — pays off at once. With ``min_way``, each task
has its own number of classes, uniform in [min_way, way], so small tasks are in every batch as well. With
``balanced``, the context labels are a random arrangement of (nearly) equal class counts, as in a few-shot support set.
``queries`` appends that many query slots after the context of ``length`` examples: meta-training reads each one
as evaluation reads a query (after the whole context, seeing no other query), so the loss also trains the exact
few-shot read-out.

Everything is a counter-based hash of (seed, step, sequence, position), like the episodes, so the stream is the same on
every device and for every split of a batch across processes; it shares no random stream with evaluation episodes,
so evaluated projections are never ones seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gpicl_bench.episodes import (
    STREAM_TASK_CLASSES,
    STREAM_TASK_EXAMPLES,
    STREAM_TASK_POOL,
    STREAM_TASK_PROJECTION,
    ClassIndex,
    project,
    random_bits,
    random_order,
    random_projections,
    stream_key,
)
from gpicl_bench.errors import UserError
from gpicl_bench.suites import SplitData


@dataclass(frozen=True)
class TaskDistribution:
    """Which tasks and sequences meta-training sees."""

    way: int = 5
    min_way: int = 0  # 0: every task has ``way`` classes; else each task's count is uniform in [min_way, way]
    length: int = 30
    queries: int = 0  # query slots after the context, each read like an episode's query
    balanced: bool = False  # context labels: equal class counts in a random order (else each label uniform)
    tasks: int = 0
    bias_fraction: float = 0.0
    copy_fraction: float = 0.0  # share of each batch whose tasks use one fixed image per class (exact repeats)
    project: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        bad_min_way = self.min_way and not 2 <= self.min_way <= self.way
        bad_counts = self.way < 2 or self.length < 2 or self.queries < 0 or self.tasks < 0
        if bad_counts or bad_min_way or not 0.0 <= self.bias_fraction <= 1.0:
            raise UserError(f"invalid task distribution: {self}")


@dataclass(frozen=True)
class TaskBatch:
    """Meta-training sequences: inputs [B, L+Q, d] and labels [B, L+Q] (context, then query slots), each task's
    class count [B], and which sequences are regular tasks (not the fixed biased task nor a copy task), the ones that
    measure in-context learning."""

    x: Tensor
    labels: Tensor
    ways: Tensor
    regular: Tensor


class TaskStream:
    """Batches of meta-training sequences ``(x [B, L+Q, d], y [B, L+Q])`` from one split, as a pure function of step."""

    def __init__(self, data: SplitData, distribution: TaskDistribution) -> None:
        self.data = data
        self.distribution = distribution
        self.index = ClassIndex(data.labels).to(data.features.device)
        if distribution.way > self.index.num_classes:
            raise UserError(
                f"{distribution.way}-way tasks need {distribution.way} classes; the source has {self.index.num_classes}"
            )
        self._keys = {
            stream: stream_key(distribution.seed, stream, data.features.device)
            for stream in (STREAM_TASK_POOL, STREAM_TASK_CLASSES, STREAM_TASK_PROJECTION, STREAM_TASK_EXAMPLES)
        }

    def task_ids(self, step: int, sequences: Tensor) -> Tensor:
        """The task of each sequence: a fresh 32-bit id (fresh tasks) or an id of the finite pool 0..tasks−1."""
        ids = random_bits(self._keys[STREAM_TASK_POOL], torch.full_like(sequences, step), sequences)
        return ids % self.distribution.tasks if self.distribution.tasks else ids

    def batch(self, step: int, size: int, first: int = 0, count: int | None = None) -> TaskBatch:
        """Sequences ``first .. first+count-1`` (default: all) of the batch of ``size`` sequences at ``step``.

        A process may take any slice of a batch and gets exactly those sequences of the whole batch.
        """
        d = self.distribution
        device = self.data.features.device
        sequences = torch.arange(first, first + (size - first if count is None else count), device=device)
        biased = sequences < round(d.bias_fraction * size)
        copying = sequences >= size - round(d.copy_fraction * size)
        task = torch.where(biased, 0, self.task_ids(step, sequences))  # biased sequences all use task 0
        all_classes = torch.arange(self.index.num_classes, device=device)
        class_bits = random_bits(self._keys[STREAM_TASK_CLASSES], task[:, None], all_classes[None, :])
        classes = random_order(class_bits)[:, : d.way]  # a random ordered choice of classes
        classes = torch.where(biased[:, None], all_classes[None, : d.way], classes)
        ways = torch.full_like(task, d.way)
        if d.min_way:
            way_bits = random_bits(self._keys[STREAM_TASK_CLASSES], task, torch.full_like(task, 0xFFFFFFFF))
            ways = d.min_way + way_bits % (d.way - d.min_way + 1)

        positions = torch.arange(d.length + d.queries, device=device)[None, :]
        examples = self._keys[STREAM_TASK_EXAMPLES]
        step_counter = torch.full_like(sequences, step)[:, None]
        label_bits = random_bits(examples, step_counter, sequences[:, None], positions, torch.zeros_like(positions))
        if d.balanced:  # slot p of the context takes the p-th entry of a random permutation of 0..L-1, modulo way
            label_bits[:, : d.length] = random_order(label_bits[:, : d.length])
        labels = label_bits % ways[:, None]  # [B, L+Q]
        chosen = torch.gather(classes, 1, labels)
        picks = random_bits(examples, step_counter, sequences[:, None], positions, torch.ones_like(positions))
        exemplar = random_bits(self._keys[STREAM_TASK_CLASSES], task[:, None], chosen, torch.full_like(chosen, 7))
        picks = torch.where(copying[:, None], exemplar, picks)
        rows = self.index.rows_by_class[self.index.offsets[chosen] + picks % self.index.counts[chosen]]
        x = self.data.features[rows]
        if d.project:
            x = project(x, random_projections(d.seed, task, self.data.dim, stream=STREAM_TASK_PROJECTION))
        return TaskBatch(x, labels, ways, ~(biased | copying))
