"""What GPICL-style sequence learners share: tokens, the input-size rule, and the episode view of a sequence model.

A causal sequence model reads tokens ``[x_t ; one-hot(y_{t-1})]`` (a "no label" symbol at t = 0) and predicts ``y_t``
at every position; meta-training (``gpicl_bench.training``) uses that sequence view. On a few-shot episode the support
set, in the sampler's seeded random order, is the context, and each query is read at the position right after it,
seeing the support and itself only, never another query. A non-causal model (CAML's) reads each support example
beside its own label and each query beside "no label", and predicts the queries only.

Inputs reach the model through the input rule its config names (:mod:`gpicl_bench.learners.input_rule`), computed
from the episode's support (a sequence's context) and shared by meta-training and every evaluation path, so one
checkpoint runs on any suite or encoder, whatever its dimension, offset or scale.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpicl_bench.episodes import STREAM_VIEW, random_projections
from gpicl_bench.errors import UserError
from gpicl_bench.learners import input_rule, input_rule_grammar, option_checks
from gpicl_bench.learners.base import Learner

FIXED_SEED = 0  # seeds the fixed view rotations


@dataclass(frozen=True)
class SequenceConfig:
    """Architecture of a sequence learner; ``kind`` names its model class (:mod:`gpicl_bench.learners.models`)."""

    kind: str = "transformer"
    input_dim: int = 64
    max_classes: int = 10
    d_model: int = 128
    layers: int = 4
    heads: int = 1
    rotary_fraction: float = 1.0  # share of each head's dimensions that rotary positions rotate (transformer)
    input_rule: str = input_rule_grammar.LEGACY  # configs written before input rules existed used this one

    def __post_init__(self) -> None:
        if self.max_classes < 2 or min(self.input_dim, self.d_model, self.layers, self.heads) < 1:
            raise UserError(f"invalid model size: {self}")
        if not 0.0 <= self.rotary_fraction <= 1.0:
            raise UserError(f"rotary_fraction must be between 0 and 1, got {self.rotary_fraction}")
        input_rule_grammar.check(self.input_rule)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SequenceConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise UserError(f"unknown model settings {sorted(unknown)}")
        return cls(**values)


def prepare_inputs(config: SequenceConfig, x: Tensor, context: int) -> Tensor:
    """The model's inputs for raw inputs ``x`` [B, T, D] whose first ``context`` rows are the support (context)."""
    return input_rule.apply(config.input_rule, x, context, config.input_dim)


@functools.cache
def view_rotation(dim: int, view: int, device: str) -> Tensor:
    """A Haar-random rotation, from device-independent Gaussians factored on the CPU (signs fixed by R's diagonal,
    which makes the factor unique), so view ``view`` is the same map on every device."""
    gaussian = random_projections(FIXED_SEED, torch.tensor([view]), dim, stream=STREAM_VIEW)[0].double()
    q, r = torch.linalg.qr(gaussian)
    return (q * torch.sign(torch.diagonal(r))).float().to(device)


def view_inputs(x: Tensor, view: int) -> Tensor:
    """View 0 is the inputs as prepared; view v > 0 rotates them by its fixed rotation and standardises again."""
    if view == 0:
        return x
    return input_rule.standardise_each(x @ view_rotation(x.shape[-1], view, str(x.device)).T)


def make_tokens(x: Tensor, previous_labels: Tensor, max_classes: int) -> Tensor:
    """Tokens [..., input_dim + max_classes + 1]: inputs beside the one-hot previous label (index 0 = no label)."""
    return torch.cat([x, F.one_hot(previous_labels + 1, max_classes + 1).to(x.dtype)], dim=-1)


def shift_labels(labels: Tensor) -> Tensor:
    """Previous-label sequence: -1 (no label) at t = 0, then y_0 … y_{T-2}."""
    return F.pad(labels[..., :-1], (1, 0), value=-1)


def episode_tokens(support_x: Tensor, support_y: Tensor, query_x: Tensor, max_classes: int) -> tuple[Tensor, Tensor]:
    """Support tokens in their given order, and query tokens that carry the last support label as their previous
    label, as if each query came right after the support."""
    support = make_tokens(support_x, shift_labels(support_y), max_classes)
    query = make_tokens(query_x, support_y[:, -1:].expand(-1, query_x.shape[1]), max_classes)
    return support, query


class SequenceModel(nn.Module, abc.ABC):
    """A trainable sequence model with both views; subclasses define the two forward passes."""

    # Whether precision ``auto`` runs the model's matmuls in bf16 under autocast on CUDA.
    autocast_bf16: ClassVar[bool] = False
    # Whether position t sees tokens 0..t only, so that the model predicts every context example from those before
    # it: meta-training scores the context too, and the model has the sequence view behind in-context learning
    # curves. A non-causal model sees the context's labels, and is scored on query slots only.
    causal: ClassVar[bool] = True
    # Whether the model splits d_model into config.heads attention heads (then it must divide evenly).
    attends: ClassVar[bool] = False

    def __init__(self, config: SequenceConfig) -> None:
        if self.attends and config.d_model % config.heads:
            raise UserError(f"d_model ({config.d_model}) must be a multiple of heads ({config.heads})")
        super().__init__()
        self.config = config

    @property
    def token_dim(self) -> int:
        return self.config.input_dim + self.config.max_classes + 1

    def forward(self, tokens: Tensor, query_tokens: Tensor | None = None) -> Tensor:
        """The sequence view of ``tokens``, or with ``query_tokens`` the episode view (support, then queries); one
        entry point so that wrappers such as DistributedDataParallel see every training pass."""
        return self.sequence_logits(tokens) if query_tokens is None else self.read_episode(tokens, query_tokens)

    def episode_tokens(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor]:
        """The tokens of an episode's support and queries (GPICL's: each beside the previous example's label)."""
        return episode_tokens(support_x, support_y, query_x, self.config.max_classes)

    def activations_per_token(self) -> int:
        """Numbers per token that one block holds at its peak in inference (for the memory estimate)."""
        return 12 * self.config.d_model

    @abc.abstractmethod
    def sequence_logits(self, tokens: Tensor) -> Tensor:
        """Causal logits [B, T, max_classes]: position t sees tokens 0..t."""

    @abc.abstractmethod
    def read_episode(self, support_tokens: Tensor, query_tokens: Tensor) -> Tensor:
        """Logits [E, S+Q, max_classes] of a causal model: causal over the support, then each query read right after
        the support, seeing the support and itself only (meta-training uses all of them, evaluation the queries');
        a non-causal model's are the queries' only, [E, Q, max_classes]."""


class SequenceLearner(Learner):
    """The few-shot learner view of a sequence model (queries never see each other).

    A sequence model's answer depends on the order of its context. With ``orders`` > 1 the support is read in that
    many orders — the sampler's random order rotated by multiples of S/orders, so each example is most recent in
    one of them — and the log-probabilities are averaged (a permutation ensemble; costs ``orders`` forward passes).

    With ``views`` > 1 the episode is also read with its inputs turned by ``views`` − 1 fixed random rotations, and
    the log-probabilities are averaged (costs ``views`` times as many passes). Meta-training tasks are Gaussian
    random projections A x, and a rotation Q leaves their distribution unchanged (QA is distributed as A), so each
    view is (up to the per-vector standardisation) an equally likely version of the same task, and the average
    marginalises the projection the model happened to see. Measured with the digits checkpoint (input rule
    ``standardise``) on 2,000 5-way 5-shot test episodes: +0.62 points for 4 views, +0.70 for 8, +0.75 for 16. Views
    suit rules without the ``basis`` part: with it, every rotation of the raw inputs already gives the same model
    inputs, and a rotated canonical form is one the model never met in training.

    ``precision``: ``auto`` runs Transformers' matmuls in bf16 under autocast on CUDA (fp32 on the CPU), ``fp32``
    never does; bf16 can flip near-tie predictions, so it is part of the learner's name in results when not
    ``auto``. ``compile`` runs the model through ``torch.compile`` (same numbers up to kernel rounding).
    """

    relabelling_equivariant = False  # labels enter through the tokens' one-hot, read by learned weights

    def __init__(
        self, model: SequenceModel, orders: int = 1, views: int = 1, precision: str = "auto", compile: bool = False
    ) -> None:
        option_checks.inference(orders=orders, views=views, precision=precision)
        if views < 1:
            raise UserError(f"a SequenceLearner reads at least 1 view, got {views} (0, automatic, is the registry's)")
        self.model = model.eval()
        self.orders = orders
        self.views = views
        self.precision = precision
        self.network = torch.compile(self.model) if compile else self.model

    def _autocast(self, device: torch.device) -> torch.autocast:
        bf16 = self.precision == "auto" and device.type == "cuda" and self.model.autocast_bf16
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def to(self, device: torch.device | str) -> SequenceLearner:
        self.model.to(device)
        return self

    def bytes_per_episode(self, way: int, support: int, query: int, dim: int) -> int:
        """Inputs, plus one block's activations over the support and query tokens (inference frees the rest) and its
        attention scores, whichever attention kernel runs."""
        config = self.model.config
        tokens = support + query
        activations = tokens * self.model.activations_per_token() + config.heads * tokens * tokens * 2
        return super().bytes_per_episode(way, support, query, dim) + 4 * activations

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor, way: int) -> Tensor:
        config = self.model.config
        if way > config.max_classes:
            raise UserError(f"this model handles at most {config.max_classes}-way episodes, not {way}-way")
        size, passes = support_x.shape[1], self.orders * self.views
        prepared = prepare_inputs(config, torch.cat([support_x, query_x], 1), size)
        support_x, query_x = prepared[:, :size], prepared[:, size:]
        total = None
        for view in range(self.views):
            viewed_support, viewed_query = view_inputs(support_x, view), view_inputs(query_x, view)
            for order in range(self.orders):
                shift = order * size // self.orders
                x, y = viewed_support.roll(shift, dims=1), support_y.roll(shift, dims=1)
                support, query = self.model.episode_tokens(x, y, viewed_query)
                with torch.no_grad(), self._autocast(support.device):
                    logits = self.network(support, query)[:, -query.shape[1] :, :way].float()
                scores = logits if passes == 1 else torch.log_softmax(logits, -1)
                total = scores if total is None else total + scores
        return total / passes

    def sequence_predictions(self, x: Tensor, y: Tensor, way: int, support: int) -> Tensor:
        if not self.model.causal:
            raise TypeError(f"a {self.model.config.kind} model is not causal: it has no sequence view")
        config = self.model.config
        tokens = make_tokens(prepare_inputs(config, x, support), shift_labels(y), config.max_classes)
        with torch.no_grad(), self._autocast(tokens.device):
            return self.network(tokens)[..., :way].argmax(-1)
