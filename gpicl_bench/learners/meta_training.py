"""What a learner declares when it must be meta-trained before it predicts.

Learners only predict. One that needs meta-training says what and how — the recipe its ``meta_training()`` returns —
and :mod:`gpicl_bench.fitting` fits it with the data the run opens (its encoder, data root, feature cache, device and
processes), then hands the fitted module back through ``fitted()``. A learner never opens data nor runs a training
loop itself, so every learner reads its sources exactly as the run's suites are read. Two recipes:

- :class:`~gpicl_bench.learners.training_options.TrainingOptions`: a sequence model meta-trained by
  :mod:`gpicl_bench.training` on its task distribution, as ``gpicl-bench train`` does;
- :class:`EpisodicTraining`: a module meta-trained on few-shot episodes of one source suite's ``train`` split, with a
  loss the learner gives (MAML's loss of adapted clones, for instance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from gpicl_bench.episodes import EpisodeShape
from gpicl_bench.learners.training_options import TrainingOptions

# (module, support_x [T, S, D], support_y [T, S], query_x [T, Q, D], query_y [T, Q]) → the mean loss of T episodes
EpisodeLoss = Callable[[nn.Module, Tensor, Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class EpisodicTraining:
    """Meta-train the module ``initial(dim)`` builds (under ``seed``) by ``steps`` Adam steps of ``lr``, each on the
    mean ``loss`` of ``tasks_per_step`` episodes of shape ``shape`` from ``source``'s ``train`` split — episodes
    0, 1, 2, … of the sampler seeded by ``seed``, each through its own random projection of the meta-training stream
    when the source is projected (so evaluation's projections stay unseen)."""

    source: str
    shape: EpisodeShape
    steps: int
    tasks_per_step: int
    lr: float
    seed: int
    initial: Callable[[int], nn.Module]
    loss: EpisodeLoss


Recipe = TrainingOptions | EpisodicTraining


@runtime_checkable
class NeedsMetaTraining(Protocol):
    """A learner that must be meta-trained before it predicts."""

    def meta_training(self) -> Recipe | None:
        """What is still to be meta-trained, or None once the learner is ready (fitted, or loaded from a file)."""
        ...

    def fitted(self, module: nn.Module, details: dict[str, Any]) -> None:
        """Take the meta-trained module, and what results should record about its meta-training."""
        ...
