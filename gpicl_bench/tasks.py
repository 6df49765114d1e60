"""GPICL's meta-training task distribution, broadened, generated a whole batch at a time on the device.

A task is a choice of ``way`` classes in a random order (so a random label permutation) from one of several
*sources*, mixed in fixed shares of every batch: the source suite's split (with a random linear projection of the
inputs, entries N(0, 1/d), GPICL's augmentation) or a synthetic family of :mod:`gpicl_bench.synthetic` (Gaussian
mixtures, non-linear maps of clustered latents, smooth image-like fields). A sequence holds a context of ``length``
examples of its task's classes — or, with ``min_length``, a length drawn per step in [min_length, length], so the
model meets 1-shot supports and long contexts alike — labelled with each class's slot; ``queries`` appends query
slots that meta-training reads as evaluation reads a query (after the whole context, seeing no other query).

Tasks are either fresh at every step (``tasks = 0``: task ids are the sequence counter) or drawn from a finite pool
of ``tasks`` ids, the paper's knob for memorisation versus generalisation. A ``bias_fraction`` of every batch uses
one fixed task (the paper's biased-permutation curriculum against the loss plateau). A ``copy_fraction`` of every
batch are copy tasks: each class is one fixed example, repeated, so that matching a query to an earlier identical
input and reading its label — the mechanism in-context learning grows from — pays off at once. With ``min_way``,
each task has its own number of classes, uniform in [min_way, way]. A ``balanced`` share of sequences has (nearly)
equal class counts in a random order, as in a few-shot support set; the others draw each label uniformly, so their
classes are imbalanced.

Everything is a counter-based hash of (seed, step, sequence, position), like the episodes, so the stream is the same on
every device and for every split of a batch across processes; it shares no random stream with evaluation episodes,
so evaluated projections are never ones seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from gpicl_bench.episodes import (
    STREAM_TASK_CLASSES,
    STREAM_TASK_EXAMPLES,
    STREAM_TASK_POOL,
    STREAM_TASK_SYNTHETIC,
    ClassIndex,
    project,
    random_bits,
    random_order,
    stream_key,
    uniform_open,
)
from gpicl_bench.errors import UserError
from gpicl_bench.synthetic import Draw, SyntheticFamilies
from gpicl_bench.task_distribution import SOURCES, TaskDistribution

if TYPE_CHECKING:  # the task distribution is part of a learner's training options, which name no suite code
    from gpicl_bench.suites import SplitData


@dataclass(frozen=True)
class TaskBatch:
    """Meta-training sequences: inputs [B, L+Q, d] and labels [B, L+Q] (a context of ``context`` examples, then query
    slots), each task's class count [B], and which sequences are regular tasks (not the fixed biased task nor a copy
    task), the ones that measure in-context learning."""

    x: Tensor
    labels: Tensor
    ways: Tensor
    regular: Tensor
    context: int


class TaskStream:
    """Batches of meta-training sequences ``(x [B, L+Q, d], y [B, L+Q])`` from one split, as a pure function of step."""

    def __init__(self, data: SplitData, distribution: TaskDistribution) -> None:
        self.data = data
        self.distribution = distribution
        device = data.features.device
        self.index = ClassIndex(data.labels).to(device)
        uses_suite = distribution.mix[0] > 0
        if uses_suite and distribution.way > self.index.num_classes:
            raise UserError(
                f"{distribution.way}-way tasks need {distribution.way} classes; the source has {self.index.num_classes}"
            )
        self._keys = {
            stream: stream_key(distribution.seed, stream, device)
            for stream in (STREAM_TASK_POOL, STREAM_TASK_CLASSES, STREAM_TASK_EXAMPLES)
        }
        self.families = SyntheticFamilies(distribution.seed, STREAM_TASK_SYNTHETIC, device)

    def task_ids(self, step: int, sequences: Tensor) -> Tensor:
        """The task of each sequence: a fresh 32-bit id (fresh tasks) or an id of the finite pool 0..tasks−1."""
        ids = random_bits(self._keys[STREAM_TASK_POOL], torch.full_like(sequences, step), sequences)
        return ids % self.distribution.tasks if self.distribution.tasks else ids

    def context_length(self, step: int) -> int:
        """The context length of every sequence at ``step``: ``length``, or uniform in [min_length, length]."""
        d = self.distribution
        if not d.min_length:
            return d.length
        bits = random_bits(self._keys[STREAM_TASK_EXAMPLES], torch.tensor(step), torch.tensor(0xFFFFFFFF))
        return d.min_length + int(bits.cpu()) % (d.length - d.min_length + 1)

    def batch(self, step: int, size: int, first: int = 0, count: int | None = None) -> TaskBatch:
        """Sequences ``first .. first+count-1`` (default: all) of the batch of ``size`` sequences at ``step``.

        A process may take any slice of a batch and gets exactly those sequences of the whole batch.
        """
        d = self.distribution
        device = self.data.features.device
        sequences = torch.arange(first, first + (size - first if count is None else count), device=device)
        context = self.context_length(step)
        biased = sequences < round(d.bias_fraction * size)
        copying = sequences >= size - round(d.copy_fraction * size)
        task = torch.where(biased, 0, self.task_ids(step, sequences))  # biased sequences all use task 0
        ways = torch.full_like(task, d.way)
        if d.min_way:
            way_bits = random_bits(self._keys[STREAM_TASK_CLASSES], task, torch.full_like(task, 0xFFFFFFFF))
            ways = d.min_way + way_bits % (d.way - d.min_way + 1)
        ways = ways.clamp_max(max(2, context))

        positions = torch.arange(context + d.queries, device=device)[None, :]
        examples = self._keys[STREAM_TASK_EXAMPLES]
        step_counter = torch.full_like(sequences, step)[:, None]
        label_bits = random_bits(examples, step_counter, sequences[:, None], positions, torch.zeros_like(positions))
        if d.balanced:  # a balanced context: slot p takes the p-th entry of a random permutation of 0..L-1, modulo way
            share = uniform_open(random_bits(examples, step_counter[:, 0], sequences, torch.full_like(sequences, 2)))
            ordered = torch.cat([random_order(label_bits[:, :context]), label_bits[:, context:]], 1)
            label_bits = torch.where((share < d.balanced)[:, None], ordered, label_bits)
        labels = label_bits % ways[:, None]  # [B, L+Q]
        picks = random_bits(examples, step_counter, sequences[:, None], positions, torch.ones_like(positions))

        x = torch.empty(len(sequences), context + d.queries, self.data.dim, device=device)
        end = first + len(sequences)
        block_start = 0
        for name, block in zip(SOURCES, d.source_counts(size), strict=True):  # each source a contiguous block
            low, high = max(block_start, first) - first, min(block_start + block, end) - first
            block_start += block
            if low >= high:
                continue
            chosen = slice(low, high)
            if name == "suite":
                x[chosen] = self._suite_inputs(
                    task[chosen], labels[chosen], picks[chosen], copying[chosen], biased[chosen]
                )
            else:
                draw = Draw(task[chosen], labels[chosen], picks[chosen], copying[chosen], self.data.dim)
                x[chosen] = self.families.draw(name, draw)
        return TaskBatch(x, labels, ways, ~(biased | copying), context)

    def _suite_inputs(self, task: Tensor, labels: Tensor, picks: Tensor, copying: Tensor, biased: Tensor) -> Tensor:
        """Examples of the source split: each label slot's class, a random example of it (a fixed one when
        copying), through the task's projection."""
        d = self.distribution
        all_classes = torch.arange(self.index.num_classes, device=task.device)
        class_bits = random_bits(self._keys[STREAM_TASK_CLASSES], task[:, None], all_classes[None, :])
        classes = random_order(class_bits)[:, : d.way]  # a random ordered choice of classes
        classes = torch.where(biased[:, None], all_classes[None, : d.way], classes)
        chosen = torch.gather(classes, 1, labels)
        exemplar = random_bits(self._keys[STREAM_TASK_CLASSES], task[:, None], chosen, torch.full_like(chosen, 7))
        picks = torch.where(copying[:, None], exemplar, picks)
        rows = self.index.rows_by_class[self.index.offsets[chosen] + picks % self.index.counts[chosen]]
        x = self.data.features[rows]
        if d.project:
            x = project(x, self.families.projections(task, self.data.dim))
        return x
