"""MAML (Finn et al. 2017) through learn2learn's ``l2l.algorithms.MAML`` — optional extra ``gpicl-bench[l2l]``.

A linear classifier on the features (``way`` outputs; N-way episodes use the first N) whose initialisation is
meta-trained on ``way``-way ``shot``-shot episodes of a source suite's ``train`` split (projected by the meta-training
projection stream when the source is, so evaluation tasks stay unseen). The learner declares that meta-training
(:class:`~gpicl_bench.learners.meta_training.EpisodicTraining`, with MAML's loss) and :mod:`gpicl_bench.fitting`
runs it when the run reaches the learner, reading the source as the run reads its suites: through its encoder, data
root and feature cache. At test time each episode adapts a clone by ``adapt_steps`` gradient steps on its support
set. learn2learn's API is per
task, so this learner loops over episodes in Python: it is the slow reference point the batched learners are not.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpicl_bench.encoders.external import optional_import
from gpicl_bench.episodes import EpisodeShape
from gpicl_bench.errors import UserError
from gpicl_bench.learners import option_checks
from gpicl_bench.learners.base import Learner
from gpicl_bench.learners.meta_training import EpisodicTraining

META_QUERIES = 5  # query images per class in meta-training episodes


class MAML(Learner):
    """learn2learn's MAML over a linear classifier, meta-trained on the spot (by :mod:`gpicl_bench.fitting`)."""

    relabelling_equivariant = False  # output c of the meta-learned initialisation belongs to class c

    def __init__(
        self,
        *,
        source: str = "digits",
        way: int = 5,
        shot: int = 5,
        meta_steps: int = 300,
        tasks_per_step: int = 8,
        adapt_steps: int = 5,
        adapt_lr: float = 0.5,
        meta_lr: float = 0.003,
        first_order: bool = False,
        seed: int = 0,
    ) -> None:
        option_checks.maml(
            way=way,
            shot=shot,
            meta_steps=meta_steps,
            tasks_per_step=tasks_per_step,
            adapt_steps=adapt_steps,
            adapt_lr=adapt_lr,
            meta_lr=meta_lr,
        )
        self.source, self.shape, self.seed = source, EpisodeShape(way, shot, META_QUERIES), seed
        self.meta_steps, self.tasks_per_step, self.meta_lr = meta_steps, tasks_per_step, meta_lr
        self.adapt_steps, self.adapt_lr, self.first_order = adapt_steps, adapt_lr, first_order
        self.maml: nn.Module | None = None
        self.meta_training_details: dict[str, Any] = {}

    def details(self) -> dict[str, Any]:
        return {"source": self.source, "meta_steps": self.meta_steps, **self.meta_training_details}

    def meta_training(self) -> EpisodicTraining | None:
        if self.maml is not None:
            return None
        return EpisodicTraining(
            source=self.source,
            shape=self.shape,
            steps=self.meta_steps,
            tasks_per_step=self.tasks_per_step,
            lr=self.meta_lr,
            seed=self.seed,
            initial=self._initial,
            loss=self._loss,
        )

    def fitted(self, module: nn.Module, details: dict[str, Any]) -> None:
        self.maml, self.meta_training_details = module, details

    def to(self, device: torch.device | str) -> MAML:
        if self.maml is not None:
            self.maml.to(device)
        return self

    def _initial(self, dim: int) -> nn.Module:
        """The MAML wrapper around a linear classifier of ``dim`` features, as meta-training starts from it."""
        l2l = optional_import("learn2learn", "l2l")
        return l2l.algorithms.MAML(nn.Linear(dim, self.shape.way), lr=self.adapt_lr, first_order=self.first_order)

    def _loss(self, maml: nn.Module, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor) -> Tensor:
        """The mean query loss of clones adapted to each episode's support set (learn2learn's API is per task)."""
        total = sum(
            F.cross_entropy(self._adapted(maml, support_x[e], support_y[e])(query_x[e]), query_y[e])
            for e in range(len(support_x))
        )
        return total / len(support_x)

    def _adapted(self, maml: nn.Module, support_x: Tensor, support_y: Tensor, way: int | None = None) -> nn.Module:
        """A clone of the meta-learned classifier after ``adapt_steps`` steps on one episode's support set."""
        learner = maml.clone()
        for _ in range(self.adapt_steps):
            learner.adapt(F.cross_entropy(learner(support_x)[:, :way], support_y))
        return learner

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        if self.maml is None:
            raise RuntimeError("maml is not meta-trained yet: gpicl_bench.fitting.fit does it")
        if way > self.shape.way:
            raise UserError(f"maml was meta-trained for {self.shape.way}-way episodes, not {way}-way")
        expected = self.maml.module.in_features
        if support_x.shape[-1] != expected:
            raise UserError(f"maml was meta-trained on {expected}-d features, not {support_x.shape[-1]}-d")
        logits = []
        with torch.inference_mode(False), torch.enable_grad():  # adaptation differentiates, even in evaluation
            for e in range(support_x.shape[0]):
                learner = self._adapted(self.maml, support_x[e].clone(), support_y[e].clone(), way)
                logits.append(learner(query_x[e].clone())[:, :way].detach())
        return torch.stack(logits)
