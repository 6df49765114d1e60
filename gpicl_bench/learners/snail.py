"""SNAIL (Mishra et al., ICLR 2018): temporal convolutions interleaved with causal attention, over GPICL's tokens.

The paper's few-shot model: an attention block, then ``layers`` times a temporal-convolution (TC) block followed by
an attention block, then a linear head. A TC block is a stack of dense blocks with dilations 1, 2, 4, …: each is a
causal convolution of kernel 2 (position t reads t and t − dilation) with a gated activation tanh(·) ⊙ σ(·), whose
``d_model`` outputs are appended to its input. An attention block is causal soft attention (keys, queries and values
of size ``d_model``; ``heads`` heads) whose read is likewise appended. Features only grow, so every block sees every
earlier block's output. Tokens are GPICL's, ``[x_t ; one-hot(y_{t−1})]``: the dilation-1 convolution binds an input
to its label in the next token.

The paper sizes a TC block to the sequence (⌈log₂ T⌉ dense blocks; 5 for its 5-way 5-shot episodes); here a model
runs on sequences of any length, so each TC block has the five dilations 1–16 and attention reaches further back.
On an episode every query is read at the position right after the support, seeing the support and itself only: its
convolutions read the support's features ``dilation`` positions before that position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gpicl_bench.learners.gpicl import query_mask
from gpicl_bench.learners.sequence import SequenceConfig, SequenceModel

DILATIONS = (1, 2, 4, 8, 16)


def delayed(x: Tensor, delay: int, context: int) -> Tensor:
    """Rows [B, T, C] ``delay`` positions back (zeros before the start): x_{t−delay} for the first ``context`` rows,
    and for each later row — a query, read at position ``context`` — x_{context−delay}."""
    past = F.pad(x[:, :context], (0, 0, delay, 0))  # past[:, t] = x_{t−delay}
    queries = x.shape[1] - context
    return torch.cat([past[:, :context], past[:, context : context + 1].expand(-1, queries, -1)], 1)


class _DenseBlock(nn.Module):
    """A gated causal convolution of kernel 2, its outputs appended to its inputs."""

    def __init__(self, channels: int, filters: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.current = nn.Linear(channels, 2 * filters)
        self.earlier = nn.Linear(channels, 2 * filters, bias=False)

    def forward(self, x: Tensor, context: int) -> Tensor:
        value, gate = (self.current(x) + self.earlier(delayed(x, self.dilation, context))).chunk(2, -1)
        return torch.cat([x, torch.tanh(value) * torch.sigmoid(gate)], -1)


class _TCBlock(nn.Module):
    """Dense blocks of dilations 1, 2, 4, …: a temporal-convolution block."""

    def __init__(self, channels: int, filters: int) -> None:
        super().__init__()
        self.dense = nn.ModuleList(
            _DenseBlock(channels + i * filters, filters, dilation) for i, dilation in enumerate(DILATIONS)
        )

    def forward(self, x: Tensor, context: int) -> Tensor:
        for block in self.dense:
            x = block(x, context)
        return x


class _AttentionBlock(nn.Module):
    """Soft attention under a mask, its read appended to its inputs."""

    def __init__(self, channels: int, size: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * size)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        read = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return torch.cat([x, read.transpose(1, 2).reshape(batch, length, -1)], -1)


class SNAIL(SequenceModel):
    """SNAIL's causal sequence model; ``read_episode`` reads all queries of all episodes in one pass."""

    autocast_bf16 = True  # precision auto: matmuls in bf16 on CUDA (see SequenceLearner)
    attends = True

    def __init__(self, config: SequenceConfig) -> None:
        super().__init__(config)
        width = config.d_model
        self.embed = nn.Linear(self.token_dim, width)
        self.first_attention = _AttentionBlock(width, width, config.heads)
        self.convolutions, self.attentions = nn.ModuleList(), nn.ModuleList()
        channels = 2 * width
        for _ in range(config.layers):
            self.convolutions.append(_TCBlock(channels, width))
            channels += len(DILATIONS) * width
            self.attentions.append(_AttentionBlock(channels, width, config.heads))
            channels += width
        self.channels = channels
        self.head = nn.Linear(channels, config.max_classes)

    def activations_per_token(self) -> int:
        """The features before and after the last append, and a dense block's gates."""
        return 2 * self.channels + 4 * self.config.d_model

    def _run(self, tokens: Tensor, context: int) -> Tensor:
        """Logits at every position of ``tokens`` [B, T, token_dim]: causal over the first ``context``, and each
        later token read at position ``context``, seeing those and itself."""
        mask = query_mask(context, tokens.shape[1] - context, tokens.device)
        x = self.first_attention(self.embed(tokens), mask)
        for convolution, attention in zip(self.convolutions, self.attentions, strict=True):
            x = attention(convolution(x, context), mask)
        return self.head(x)

    def sequence_logits(self, tokens: Tensor) -> Tensor:
        return self._run(tokens, tokens.shape[1])

    def read_episode(self, support_tokens: Tensor, query_tokens: Tensor) -> Tensor:
        return self._run(torch.cat([support_tokens, query_tokens], 1), support_tokens.shape[1])
