"""CAML's in-context learner (Fifty et al., ICLR 2024): a non-causal Transformer encoder over an episode's examples.

Each support example is one token, its input beside the embedding of its own label; each query is one token, its
input beside a learnable "unknown label" embedding. The label embeddings are an ELMES — a fixed set of equal-length,
maximally equiangular vectors (the simplex equiangular tight frame of ``max_classes`` vectors), so no class starts
closer to another — scaled by one learnable scalar. Support tokens attend to the whole support, and each query to
the support and itself only, so queries never inform each other and a query's logits do not depend on how many
others there are; a linear head reads the class at the query token.

Unlike GPICL the model sees a context example and its label in one token, and needs no order: there are no positions,
so it is invariant to the order of the support. It has no causal sequence view, so meta-training
(:mod:`gpicl_bench.training`) scores its query slots only. The paper feeds ``[x ; label]`` to the encoder as is (at
the encoder's width); here a linear map takes it to ``d_model``, so any input size and width combine.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from gpicl_bench.learners.gpicl import Block
from gpicl_bench.learners.sequence import SequenceConfig, SequenceModel, make_tokens


def elmes(classes: int) -> Tensor:
    """``classes`` unit vectors in R^classes with pairwise cosine −1/(classes − 1), the least any equal-length set
    can have (CAML's ELMES): the simplex's vertices, e_k − mean, scaled to unit length."""
    return (torch.eye(classes) - 1.0 / classes) * math.sqrt(classes / (classes - 1))


def support_mask(support: int, queries: int, device: torch.device) -> Tensor:
    """Attention mask [S+Q, S+Q] (True = may attend): every token sees the support; a query also sees itself."""
    total = support + queries
    row = torch.arange(total, device=device)[:, None]
    column = torch.arange(total, device=device)[None, :]
    return (column < support) | (column == row)


class CAML(SequenceModel):
    """Non-causal Transformer encoder in-context learner; ``read_episode`` reads all queries of all episodes in one
    pass and returns their logits only."""

    autocast_bf16 = True  # precision auto: matmuls in bf16 on CUDA (see SequenceLearner)
    attends = True
    causal = False

    def __init__(self, config: SequenceConfig) -> None:
        super().__init__(config)
        classes = config.max_classes
        self.register_buffer("label_vectors", elmes(classes), persistent=False)  # fixed: not a weight
        self.label_scale = nn.Parameter(torch.ones(()))
        self.unknown_label = nn.Parameter(torch.randn(classes) / math.sqrt(classes))  # about the ELMES' length
        self.embed = nn.Linear(config.input_dim + classes, config.d_model)
        self.blocks = nn.ModuleList(Block(config.d_model, config.heads) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, classes)

    def episode_tokens(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor]:
        """Support tokens beside their own labels, query tokens beside "no label" (the one-hot's index 0)."""
        unknown = torch.full(query_x.shape[:2], -1, dtype=support_y.dtype, device=support_y.device)
        classes = self.config.max_classes
        return make_tokens(support_x, support_y, classes), make_tokens(query_x, unknown, classes)

    def _embed(self, tokens: Tensor) -> Tensor:
        """``[x ; label embedding]`` of tokens ``[x ; one-hot(label + 1)]`` (index 0: unknown), mapped to d_model."""
        x, label = tokens[..., : self.config.input_dim], tokens[..., self.config.input_dim :]
        known = label[..., 1:] @ (self.label_scale * self.label_vectors).to(label.dtype)
        return self.embed(torch.cat([x, known + label[..., :1] * self.unknown_label.to(label.dtype)], -1))

    def sequence_logits(self, tokens: Tensor) -> Tensor:
        raise TypeError("CAML is not causal: it reads episodes (support, then queries), never a causal sequence")

    def read_episode(self, support_tokens: Tensor, query_tokens: Tensor) -> Tensor:
        """Query logits [E, Q, max_classes]: each query sees the support and itself."""
        support, queries = support_tokens.shape[1], query_tokens.shape[1]
        x = self._embed(torch.cat([support_tokens, query_tokens], 1))
        mask = support_mask(support, queries, x.device)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.norm(x[:, support:]))
