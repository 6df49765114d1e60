"""Synthetic classification task families for meta-training: a broad prior over what few-shot data looks like.

GPICL and prior-fitted networks (TabPFN) both find that the breadth of the meta-training task distribution is what
makes an in-context learner general. Each family turns a task id into a class-conditional distribution and draws a
sequence's examples from it, for every sequence of a batch at once:

- ``gaussian``: class means on a random subspace of random rank (1–16) with a random separation, shared noise with a
  power-law spectrum of random decay plus isotropic noise, and a random per-class noise scale;
- ``nonlinear``: clustered latents (2–8 dimensions) pushed through a random one-hidden-layer tanh network of random
  gain, plus a little noise — curved, non-Gaussian classes;
- ``fields``: smooth random image-like fields (low-frequency cosines on the input grid — 2-D when the input size is a
  square, else 1-D — with decaying amplitudes), one prototype per class, examples deformed by another smooth field and
  pixel noise, and for half the tasks squashed by a random sigmoid into stroke-like images.

Task parameters are a pure function of (seed, task id), so a finite pool of tasks repeats exactly; examples a pure
function of (seed, step, sequence, position). The Gaussians — these families', and the random projections of the
suite's tasks — come from a :class:`NoiseBank`, so a batch costs gathers, not hashes per number, and is the same on
every device and for every split of a batch across processes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gpicl_bench.episodes import random_bits, stream_key, uniform_open

BANK_SIZE = 1 << 22  # 4M Gaussians (16 MB): windows at hashed offsets serve as independent Gaussian vectors
MEAN_RANK = 16  # the most dimensions of a gaussian task's class-mean subspace
NOISE_RANK = 16  # dimensions of a gaussian task's structured noise
LATENT = 8  # the most latent dimensions of a nonlinear task
HIDDEN = 32  # hidden units of a nonlinear task's random network
FREQUENCIES = 16  # cosine components of a field

# Counters that keep each random quantity of a task apart (the first counter after the task id).
_RANK, _SEPARATION, _DECAY, _ISOTROPIC, _MEANS, _MIXING, _NOISE_MAP, _CLASS_SCALE, _GAIN, _BIAS, _W1, _W2 = range(12)
_DEFORM, _SQUASH, _THRESHOLD, _PROTOTYPE, _PIXEL_NOISE, _PROJECTION = range(12, 18)


class NoiseBank:
    """A fixed table of device-independent standard Gaussians; a window of it at a hashed offset is a Gaussian
    vector. Box-Muller on hashed uniforms in float64, rounded to float32, as the episode projections."""

    def __init__(self, seed: int, stream: int, device: torch.device | str, size: int = BANK_SIZE) -> None:
        self.values = _bank(seed, stream, str(torch.device(device)), size)

    def take(self, bits: Tensor, length: int) -> Tensor:
        """Gaussian vectors [*bits.shape, length], one per entry of ``bits`` (32 random bits each)."""
        offsets = bits % (self.values.numel() - length)
        return self.values[offsets[..., None] + torch.arange(length, device=bits.device)]


@functools.lru_cache(maxsize=4)
def _bank(seed: int, stream: int, device: str, size: int) -> Tensor:
    """The table's values, computed once per process: hashing millions of numbers takes seconds, and a training run
    opens several task streams of one seed (warm-up, main, held-out), as a run of fresh learners does. Read only."""
    key = stream_key(seed, stream, device)
    entry = torch.arange(size, device=device)
    u1, u2 = uniform_open(random_bits(key, 2 * entry)), uniform_open(random_bits(key, 2 * entry + 1))
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).to(torch.float32)


@dataclass(frozen=True)
class Draw:
    """What a family needs to draw sequences: task ids [n], labels [n, T] (slots 0..way−1), example bits [n, T]
    (distinct per example), whether a sequence copies (one fixed example per class) [n], and the input size."""

    task: Tensor
    labels: Tensor
    example_bits: Tensor
    copying: Tensor
    dim: int


class SyntheticFamilies:
    """Draws examples of the synthetic families for given tasks, labels and example keys."""

    def __init__(self, seed: int, stream: int, device: torch.device | str) -> None:
        self.bank = NoiseBank(seed, stream, device)
        self.key = stream_key(seed, stream + 1, device)
        self._grids: dict[tuple[int, str], Tensor] = {}

    def projections(self, task: Tensor, dim: int) -> Tensor:
        """Each task's random linear map [n, dim, dim], entries N(0, 1/dim): GPICL's augmentation of suite tasks."""
        return self._task_matrix(task, _PROJECTION, dim, dim)

    def draw(self, family: str, draw: Draw) -> Tensor:
        """Inputs [n, T, dim] of the given family."""
        return {"gaussian": self._gaussian, "nonlinear": self._nonlinear, "fields": self._fields}[family](draw)

    def _task_bits(self, task: Tensor, what: int, *more: Tensor) -> Tensor:
        return random_bits(self.key, task, torch.full_like(task, what), *more)

    def _task_uniform(self, task: Tensor, what: int, low: float, high: float) -> Tensor:
        return (low + (high - low) * uniform_open(self._task_bits(task, what))).to(torch.float32)

    def _class_vectors(self, draw: Draw, what: int, length: int) -> Tensor:
        """A Gaussian vector per (task, label slot) of each position: [n, T, length]."""
        bits = random_bits(self.key, draw.task[:, None], torch.full_like(draw.labels, what), draw.labels)
        return self.bank.take(bits, length)

    def _example_vectors(self, draw: Draw, what: int, length: int) -> Tensor:
        """A Gaussian vector per example (zero for copy sequences): [n, T, length]."""
        noise = self.bank.take(random_bits(draw.example_bits, torch.full_like(draw.labels, what)), length)
        return noise * (~draw.copying)[:, None, None]

    def _task_matrix(self, task: Tensor, what: int, rows: int, columns: int) -> Tensor:
        """A Gaussian matrix [n, rows, columns] per task, entries N(0, 1/columns)."""
        return self.bank.take(self._task_bits(task, what), rows * columns).view(-1, rows, columns) / math.sqrt(columns)

    def _gaussian(self, d: Draw) -> Tensor:
        rank = 1 + self._task_bits(d.task, _RANK) % MEAN_RANK
        kept = (torch.arange(MEAN_RANK, device=d.task.device)[None, :] < rank[:, None]).float()
        separation = torch.exp(self._task_uniform(d.task, _SEPARATION, math.log(0.5), math.log(4.0)))
        latent = self._class_vectors(d, _MEANS, MEAN_RANK) * (kept / kept.sum(1, keepdim=True).sqrt())[:, None, :]
        means = latent @ self._task_matrix(d.task, _MIXING, d.dim, MEAN_RANK).transpose(1, 2) * math.sqrt(MEAN_RANK)
        decay = self._task_uniform(d.task, _DECAY, 0.0, 2.0)
        spectrum = torch.arange(1, NOISE_RANK + 1, device=d.task.device)[None, :] ** (-decay[:, None] / 2)
        spectrum = spectrum / spectrum.square().sum(1, keepdim=True).sqrt()
        structured = (self._example_vectors(d, _NOISE_MAP, NOISE_RANK) * spectrum[:, None, :]) @ self._task_matrix(
            d.task, _NOISE_MAP, d.dim, NOISE_RANK
        ).transpose(1, 2)
        isotropic = self._task_uniform(d.task, _ISOTROPIC, 0.05, 0.5)[:, None, None]
        noise = structured * math.sqrt(NOISE_RANK) + isotropic * self._example_vectors(d, _PIXEL_NOISE, d.dim)
        class_scale = torch.exp(0.3 * self._class_vectors(d, _CLASS_SCALE, 1))
        return separation[:, None, None] * means + class_scale * noise

    def _nonlinear(self, d: Draw) -> Tensor:
        rank = 2 + self._task_bits(d.task, _RANK) % (LATENT - 1)
        kept = (torch.arange(LATENT, device=d.task.device)[None, :] < rank[:, None]).float()[:, None, :]
        separation = torch.exp(self._task_uniform(d.task, _SEPARATION, math.log(0.7), math.log(3.0)))[:, None, None]
        latent = separation * self._class_vectors(d, _MEANS, LATENT) + self._example_vectors(d, _NOISE_MAP, LATENT)
        gain = torch.exp(self._task_uniform(d.task, _GAIN, math.log(0.5), math.log(3.0)))[:, None, None]
        first = self._task_matrix(d.task, _W1, HIDDEN, LATENT)
        bias = self.bank.take(self._task_bits(d.task, _BIAS), HIDDEN)[:, None, :]
        hidden = torch.tanh(gain * ((latent * kept) @ first.transpose(1, 2)) + bias)
        x = hidden @ self._task_matrix(d.task, _W2, d.dim, HIDDEN).transpose(1, 2) * math.sqrt(HIDDEN / d.dim)
        return x + 0.05 * self._example_vectors(d, _PIXEL_NOISE, d.dim)

    def _fields(self, d: Draw) -> Tensor:
        grid = self._grid(d.dim, str(d.task.device))  # [FREQUENCIES, dim], amplitudes included
        prototype = self._class_vectors(d, _PROTOTYPE, FREQUENCIES)
        deform = self._task_uniform(d.task, _DEFORM, 0.2, 0.8)[:, None, None]
        coefficients = prototype + deform * self._example_vectors(d, _NOISE_MAP, FREQUENCIES)
        field = coefficients @ grid + 0.1 * self._example_vectors(d, _PIXEL_NOISE, d.dim)
        squash = (self._task_bits(d.task, _SQUASH) % 2 == 1)[:, None, None]
        gain = torch.exp(self._task_uniform(d.task, _GAIN, math.log(1.0), math.log(6.0)))[:, None, None]
        threshold = self._task_uniform(d.task, _THRESHOLD, -0.5, 1.0)[:, None, None]
        return torch.where(squash, torch.sigmoid(gain * (field - threshold)), field)

    def _grid(self, dim: int, device: str) -> Tensor:
        """Low-frequency cosines on the input grid [FREQUENCIES, dim], scaled so a field has about unit variance and
        amplitudes fall with frequency."""
        if (dim, device) not in self._grids:
            side = math.isqrt(dim)
            if side * side == dim:
                u = torch.arange(4).repeat_interleave(4)
                v = torch.arange(4).repeat(4)
                ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
                phase_y = (ys.reshape(-1)[None, :] + 0.5) * u[:, None] * math.pi / side
                phase_x = (xs.reshape(-1)[None, :] + 0.5) * v[:, None] * math.pi / side
                basis = torch.cos(phase_y) * torch.cos(phase_x)
                frequency = (u.square() + v.square()).float()
            else:
                k = torch.arange(FREQUENCIES)
                basis = torch.cos((torch.arange(dim)[None, :] + 0.5) * k[:, None] * math.pi / dim)
                frequency = k.float().square() / 4
            amplitude = 1.0 / (1.0 + frequency)
            basis = basis * amplitude[:, None]
            basis = basis / basis.square().sum(0).mean().sqrt()
            self._grids[(dim, device)] = basis.to(device=device, dtype=torch.float32)
        return self._grids[(dim, device)]
