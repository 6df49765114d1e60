"""An LSTM in-context learner with the GPICL token interface, to compare state size with the Transformer's.

Its whole memory of the context is the recurrent state (2 × layers × d_model numbers), whereas the Transformer's
grows with the context; GPICL found that accessible state, not parameter count, limits in-context learning.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gpicl_bench.learners.sequence import SequenceConfig, SequenceModel


class LSTMLearner(SequenceModel):
    """Stacked LSTM over tokens; each query continues from the state after the support set."""

    def __init__(self, config: SequenceConfig) -> None:
        super().__init__(config)
        self.embed = nn.Linear(self.token_dim, config.d_model)
        self.lstm = nn.LSTM(config.d_model, config.d_model, num_layers=config.layers, batch_first=True)
        self.head = nn.Linear(config.d_model, config.max_classes)

    def sequence_logits(self, tokens: Tensor) -> Tensor:
        output, _ = self.lstm(self.embed(tokens))
        return self.head(output)

    def read_episode(self, support_tokens: Tensor, query_tokens: Tensor) -> Tensor:
        episodes, queries = query_tokens.shape[:2]
        support_output, (hidden, cell) = self.lstm(self.embed(support_tokens))
        state = (hidden.repeat_interleave(queries, dim=1), cell.repeat_interleave(queries, dim=1))
        output, _ = self.lstm(self.embed(query_tokens.reshape(episodes * queries, 1, -1)), state)
        return self.head(torch.cat([support_output, output.reshape(episodes, queries, -1)], 1))
