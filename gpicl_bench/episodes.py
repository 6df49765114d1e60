"""Seeded, batched N-way K-shot Q-query episodes that are identical on every device, batch size and process count.

Every random choice is a counter-based hash of (seed, stream, episode, slot) computed with int64 tensor operations
that never overflow, so episode ``i`` is a pure function of the seed, the split's labels, the episode shape and ``i``
alone. Nothing depends on a stateful generator, on how episodes are grouped into batches, or on the host.

Drawing an episode:
1. ``way`` distinct classes by Floyd's algorithm (k of n in k steps), then put in a random order: class slot ``n`` of
   the episode gets label ``n``, so labels are a random permutation of the classes in every episode;
2. ``shot + query`` distinct images of each chosen class by Floyd's algorithm, randomly ordered; the first ``shot``
   are support, the rest query;
3. the support set in a random order (sequence learners see it in that order; set learners do not care).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gpicl_bench.episode_shape import EpisodeShape
from gpicl_bench.errors import UserError

_MASK32 = 0xFFFFFFFF

# Independent random streams, one per kind of choice.
STREAM_CLASSES = 1
STREAM_IMAGES = 2
STREAM_IMAGE_ORDER = 3
STREAM_SUPPORT_ORDER = 4
STREAM_PROJECTION = 5
STREAM_CLASS_ORDER = 6
STREAM_INPUT_MAP = 7  # the fixed input-size map of sequence learners
STREAM_TASK_POOL = 8  # meta-training: which pooled task each sequence uses
STREAM_TASK_CLASSES = 9  # meta-training: a task's classes and their labels
STREAM_TASK_PROJECTION = 10  # meta-training: a task's projection (never the evaluation stream)
STREAM_TASK_EXAMPLES = 11  # meta-training: the examples of each sequence
STREAM_QUERY_ORDER = 12  # the sequence view of an episode: order of its queries after the support
STREAM_VIEW = 13  # the fixed input rotations of sequence learners' test-time views
STREAM_TASK_SYNTHETIC = 14  # meta-training: synthetic task families (their noise bank; 15 their task parameters)


def _mul32(x: Tensor, constant: int) -> Tensor:
    """(x * constant) mod 2**32 for x in [0, 2**32), split in 16-bit halves so that int64 never overflows."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def hash32(x: Tensor) -> Tensor:
    """A bijective 32-bit integer mix (the 'lowbias32' finaliser) on int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def stream_key(seed: int, stream: int, device: torch.device | str = "cpu") -> Tensor:
    """A scalar key for one random stream of one seed; any Python int seed is folded into 32 bits by hashing."""
    key = torch.tensor(stream, dtype=torch.int64, device=device)
    for part in range(3):
        chunk = (seed >> (32 * part)) & _MASK32
        key = hash32(key ^ chunk)
    return key


def random_bits(key: Tensor, *counters: Tensor) -> Tensor:
    """32 random bits per element, a pure function of the key and the (broadcast) counters."""
    out = key
    for counter in counters:
        out = hash32(out ^ hash32(counter & _MASK32))
    return out


def random_order(bits: Tensor) -> Tensor:
    """A permutation along the last axis from random bits; positions break ties, so the order is unique."""
    positions = torch.arange(bits.shape[-1], device=bits.device)
    return torch.argsort((bits << 20) | positions, dim=-1)


def floyd_sample(key: Tensor, counters: tuple[Tensor, ...], population: Tensor, k: int) -> Tensor:
    """k distinct integers in [0, population[r]) for every row r, as a set (Floyd's algorithm, k steps).

    ``counters`` (each [R], values < 2**32) make each row's draw distinct; ``population`` [R] is its size (≥ k).
    The random bits of all k steps do not depend on earlier picks, so they are drawn at once.
    """
    rows = population.shape[0]
    steps = torch.arange(k, device=population.device)
    bits = random_bits(key, *(c[:, None] for c in counters), steps[None, :])  # [R, k]
    uppers = population[:, None] - k + steps[None, :]
    picks = bits % (uppers + 1)
    chosen = torch.empty((rows, k), dtype=torch.int64, device=population.device)
    for step in range(k):
        taken = (chosen[:, :step] == picks[:, step, None]).any(dim=1)
        chosen[:, step] = torch.where(taken, uppers[:, step], picks[:, step])
    return chosen


@dataclass(frozen=True)
class Episodes:
    """Index tensors for a batch of E episodes (rows of the split's feature matrix) and their episode labels."""

    ids: Tensor  # [E] episode numbers
    support_index: Tensor  # [E, way*shot]
    support_labels: Tensor  # [E, way*shot] in 0..way-1
    query_index: Tensor  # [E, way*query]
    query_labels: Tensor  # [E, way*query]


class ClassIndex:
    """The rows of each class of a split, laid out so that episodes can gather them with tensor indexing."""

    def __init__(self, labels: Tensor) -> None:
        labels = labels.to(torch.int64)
        classes, dense = torch.unique(labels, sorted=True, return_inverse=True)
        self.classes = classes
        self.rows_by_class = torch.argsort(dense, stable=True)
        self.counts = torch.bincount(dense, minlength=classes.numel())
        self.offsets = torch.cumsum(self.counts, 0) - self.counts

    @property
    def num_classes(self) -> int:
        return int(self.classes.numel())

    def to(self, device: torch.device | str) -> ClassIndex:
        for name in ("classes", "rows_by_class", "counts", "offsets"):
            setattr(self, name, getattr(self, name).to(device))
        return self


class EpisodeSampler:
    """Draws any batch of episodes of one shape from one split, as a pure function of (seed, episode number)."""

    def __init__(self, labels: Tensor, shape: EpisodeShape, seed: int, where: str = "this split") -> None:
        self.index = ClassIndex(labels)
        self.shape = shape
        self.seed = seed
        if shape.way > self.index.num_classes:
            raise UserError(
                f"{shape.way}-way episodes need {shape.way} classes but {where} has {self.index.num_classes}"
            )
        needed = shape.shot + shape.query
        smallest = int(self.index.counts.min())
        if needed > smallest:
            raise UserError(
                f"{shape.shot} shots + {shape.query} queries need {needed} images per class but the "
                f"smallest class of {where} has {smallest}"
            )

    def to(self, device: torch.device | str) -> EpisodeSampler:
        self.index.to(device)
        return self

    def sample(self, ids: Tensor) -> Episodes:
        """Episodes ``ids`` (int64 [E], on the sampler's device); same numbers → same episodes, always."""
        way, shot, query = self.shape.way, self.shape.shot, self.shape.query
        device = self.index.counts.device
        ids = ids.to(device=device, dtype=torch.int64)
        n_episodes = ids.shape[0]
        key = lambda stream: stream_key(self.seed, stream, device)  # noqa: E731

        class_set = floyd_sample(key(STREAM_CLASSES), (ids,), torch.full_like(ids, self.index.num_classes), way)
        slots = torch.arange(way, device=device)
        class_order = random_order(random_bits(key(STREAM_CLASS_ORDER), ids[:, None], slots[None, :]))
        classes = torch.gather(class_set, 1, class_order)  # [E, way]

        per_class = shot + query
        episode_of_row = ids.repeat_interleave(way)  # one row per (episode, class slot)
        slot_of_row = slots.repeat(n_episodes)
        picks = floyd_sample(
            key(STREAM_IMAGES), (episode_of_row, slot_of_row), self.index.counts[classes].reshape(-1), per_class
        )
        positions = torch.arange(per_class, device=device)
        order = random_order(
            random_bits(key(STREAM_IMAGE_ORDER), episode_of_row[:, None], slot_of_row[:, None], positions[None, :])
        )
        picks = torch.gather(picks, 1, order).reshape(n_episodes, way, per_class)
        rows = self.index.rows_by_class[self.index.offsets[classes][:, :, None] + picks]  # [E, way, shot+query]

        labels = slots.view(1, way, 1).expand(n_episodes, way, per_class)
        support_index = rows[:, :, :shot].reshape(n_episodes, way * shot)
        support_labels = labels[:, :, :shot].reshape(n_episodes, way * shot)
        support_slots = torch.arange(way * shot, device=device)
        shuffle = random_order(random_bits(key(STREAM_SUPPORT_ORDER), ids[:, None], support_slots[None, :]))
        return Episodes(
            ids=ids,
            support_index=torch.gather(support_index, 1, shuffle),
            support_labels=torch.gather(support_labels, 1, shuffle),
            query_index=rows[:, :, shot:].reshape(n_episodes, way * query),
            query_labels=labels[:, :, shot:].reshape(n_episodes, way * query),
        )


def query_order(episodes: Episodes, seed: int) -> Tensor:
    """A seeded random order of each episode's queries [E, Q]: the sequence view of an episode is its support, then
    its queries in this order — the view in which in-context learning curves (accuracy after t examples) are read."""
    positions = torch.arange(episodes.query_index.shape[1], device=episodes.ids.device)
    return random_order(
        random_bits(stream_key(seed, STREAM_QUERY_ORDER, episodes.ids.device), episodes.ids[:, None], positions)
    )


def uniform_open(bits: Tensor) -> Tensor:
    """Map 32 random bits to float64 uniforms in (0, 1)."""
    return (bits.to(torch.float64) + 0.5) / 4294967296.0


def random_projections(
    seed: int, ids: Tensor, dim: int, out_dim: int | None = None, stream: int = STREAM_PROJECTION
) -> Tensor:
    """One random linear map per id, [E, out_dim, dim] with entries N(0, 1/dim) (the GPICL task augmentation).

    Gaussians come from Box-Muller on hashed uniforms, computed in float64 and rounded to float32, so the
    projection of episode ``i`` is the same on every device up to (rare) last-bit rounding of log/cos.
    """
    device = ids.device
    out_dim = dim if out_dim is None else out_dim
    entry = torch.arange(out_dim * dim, device=device)
    key = stream_key(seed, stream, device)
    u1 = uniform_open(random_bits(key, ids[:, None], 2 * entry[None, :]))
    u2 = uniform_open(random_bits(key, ids[:, None], 2 * entry[None, :] + 1))
    normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return (normal / math.sqrt(dim)).to(torch.float32).reshape(ids.shape[0], out_dim, dim)


def project(features: Tensor, projections: Tensor) -> Tensor:
    """Apply each episode's projection to its rows: [E, M, d] x [E, d_out, d] → [E, M, d_out] (x ↦ A x)."""
    return torch.bmm(features, projections.transpose(1, 2))
