"""The torch networks of DKT, SAKT, AKT and simpleKT over padded windows (see
``knowtrace.models.deep.sequences``).

Every network maps a ``TorchBatch`` to the logit of P(correct) of every cell, computed from the
answers at earlier positions of the same window only (and, for DKT, the window's start state).
A token is an item or a concept (its tokens are averaged when an answer has several).
"""

from __future__ import annotations

import torch
from torch import nn

from knowtrace.models.deep.layers import (
    MultiHead,
    distances,
    mean_embed,
    pair_tokens,
    peek_mask,
    sinusoid,
    strict_mask,
)
from knowtrace.models.deep.training import Net, TorchBatch

__all__ = ["AKTNet", "DKTNet", "SAKTNet", "SimpleKTNet"]


class DKTNet(Net):
    """DKT (Piech et al. 2015): an LSTM or GRU over embeddings of (token, outcome) pairs; the logit of
    an answer is ``<w_token, h> + b_token`` of the state ``h`` before it (tokens averaged), i.e. the
    output layer with one unit per token."""

    def __init__(self, n_tokens: int, hidden: int, cell: str, dropout: float) -> None:
        super().__init__()
        self.cell, self.n_parts = cell, 2 if cell == "lstm" else 1
        self.inputs = nn.Embedding(2 * n_tokens, hidden, padding_idx=0)
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(hidden, hidden, batch_first=True)
        self.start = nn.Parameter(torch.zeros(self.n_parts, hidden))
        self.out_w = nn.Embedding(n_tokens, hidden, padding_idx=0)
        self.out_b = nn.Embedding(n_tokens, 1, padding_idx=0)
        nn.init.normal_(self.out_w.weight, std=hidden ** -0.5)
        nn.init.zeros_(self.out_b.weight)
        with torch.no_grad():
            self.out_w.weight[0].zero_()
        self.dropout = nn.Dropout(dropout)

    def initial(self, b: int) -> torch.Tensor:
        """The learned start state for ``b`` windows, (n_parts, b, hidden)."""
        return self.start[:, None, :].expand(-1, b, -1)

    def _rnn_state(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        state = state.contiguous()
        return (state[0:1], state[1:2]) if self.cell == "lstm" else state[0:1]

    def _parts(self, state: tuple[torch.Tensor, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        return torch.cat(state, 0) if isinstance(state, tuple) else state

    def readout(self, h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits of answers with ``tokens`` (..., k) from states ``h`` (..., hidden)."""
        return (self.dropout(h) * mean_embed(self.out_w, tokens)).sum(-1) + mean_embed(self.out_b, tokens)[..., 0]

    def forward(self, batch: TorchBatch) -> torch.Tensor:
        b = batch.tokens.shape[0]
        init = batch.init if batch.init is not None else self.initial(b)
        x = mean_embed(self.inputs, pair_tokens(batch.tokens, batch.correct))
        out, _ = self.rnn(x, self._rnn_state(init))
        before = torch.cat([init[0][:, None, :], out[:, :-1]], dim=1)
        return self.readout(before, batch.tokens)

    def step(self, state: torch.Tensor, tokens: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
        """The states (n_parts, b, hidden) after one more answer (``tokens`` (b, k), ``correct`` (b,))."""
        x = mean_embed(self.inputs, pair_tokens(tokens, correct))[:, None, :]
        _, new = self.rnn(x, self._rnn_state(state))
        return self._parts(new)

    def run(self, tokens: torch.Tensor, correct: torch.Tensor, lengths: torch.Tensor,
            init: torch.Tensor) -> torch.Tensor:
        """The states (n_parts, b, hidden) after feeding each window its first ``lengths`` answers
        (at least one) from ``init``."""
        x = mean_embed(self.inputs, pair_tokens(tokens, correct))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed, self._rnn_state(init))
        return self._parts(state)


class SAKTNet(Net):
    """SAKT (Pandey & Karypis 2019): queries are the embeddings of the answers' tokens, keys and values
    the embeddings of the earlier (token, outcome) pairs of the window plus a position embedding,
    after a learned start key (so the first answer is predicted from it alone); ``blocks`` blocks of
    attention + feed-forward with residual connections and layer norm. ``query_position`` adds the
    position embedding to the queries too (not in the paper)."""

    def __init__(self, n_tokens: int, dim: int, heads: int, blocks: int, window: int, dropout: float,
                 query_position: bool = False) -> None:
        super().__init__()
        self.query_position = query_position
        self.query = nn.Embedding(n_tokens, dim, padding_idx=0)
        self.inter = nn.Embedding(2 * n_tokens, dim, padding_idx=0)
        self.position = nn.Embedding(window, dim)
        self.bos = nn.Parameter(torch.randn(dim))
        self.attention = nn.ModuleList(MultiHead(dim, heads, dropout) for _ in range(blocks))
        self.norm1 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(blocks))
        self.ffn = nn.ModuleList(nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim))
                                 for _ in range(blocks))
        self.norm2 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(blocks))
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(dim, 1)

    def forward(self, batch: TorchBatch) -> torch.Tensor:
        b = batch.tokens.shape[0]
        q = mean_embed(self.query, batch.tokens)
        if self.query_position:
            q = q + self.position(batch.pos)
        kv = mean_embed(self.inter, pair_tokens(batch.tokens, batch.correct)) + self.position(batch.pos)
        kv = torch.cat([self.bos.expand(b, 1, -1), kv], dim=1)
        kpos = torch.cat([torch.full_like(batch.pos[:, :1], -1), batch.pos], dim=1)
        kvalid = torch.cat([torch.ones_like(batch.valid[:, :1]), batch.valid], dim=1)
        mask = (kpos[:, None, :] < batch.pos[:, :, None]) & kvalid[:, None, :]
        x = q
        for attention, norm1, ffn, norm2 in zip(self.attention, self.norm1, self.ffn, self.norm2):
            x = norm1(x + attention(x, kv, kv, mask))
            x = norm2(x + self.dropout(ffn(x)))
        return self.out(x)[..., 0]


class _AttentionLayer(nn.Module):
    """AKT's and simpleKT's transformer layer: attention with queries projected as keys (monotonic
    for AKT), residual + layer norm, optional feed-forward."""

    def __init__(self, dim: int, heads: int, d_ff: int, dropout: float, feed_forward: bool, *,
                 monotonic: bool = True) -> None:
        super().__init__()
        self.attention = MultiHead(dim, heads, dropout, same_kq=True, monotonic=monotonic)
        self.norm1 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, dim)) \
            if feed_forward else None
        self.norm2 = nn.LayerNorm(dim) if feed_forward else None

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor,
                distance: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm1(query + self.attention(query, key, value, mask, distance))
        if self.ffn is not None and self.norm2 is not None:
            x = self.norm2(x + self.dropout(self.ffn(x)))
        return x


class AKTNet(Net):
    """AKT (Ghosh et al. 2020): a knowledge encoder over the (token, outcome) embeddings, a question
    encoder over the token embeddings (both see the current answer's own row), and a knowledge
    retriever whose queries and keys are the encoded questions and values the encoded knowledge of
    strictly earlier answers (the first answer of a window retrieves nothing); all with monotonic
    attention. The Rasch embedding (``rasch``): token embedding ``c + mu_item * d`` and pair embedding
    ``c + r + mu_item * (f_r + d)`` with one difficulty scalar ``mu`` per item (0 for an unknown
    item), penalised by ``l2 * sum(mu^2)`` over the batch's answers. The logit comes from an MLP
    over the retrieved knowledge and the token embedding."""

    def __init__(self, n_tokens: int, n_items: int, dim: int, heads: int, blocks: int, d_ff: int,
                 dropout: float, rasch: bool, l2: float) -> None:
        super().__init__()
        self.rasch, self.l2 = rasch, l2
        self.concept = nn.Embedding(n_tokens, dim, padding_idx=0)
        self.response = nn.Embedding(2, dim)
        if rasch:
            self.difficulty = nn.Embedding(n_items, 1, padding_idx=0)
            nn.init.zeros_(self.difficulty.weight)
            self.variation = nn.Embedding(n_tokens, dim, padding_idx=0)
            self.response_variation = nn.Embedding(2, dim)
        self.knowledge = nn.ModuleList(_AttentionLayer(dim, heads, d_ff, dropout, True) for _ in range(blocks))
        self.questions = nn.ModuleList(_AttentionLayer(dim, heads, d_ff, dropout, False) for _ in range(blocks))
        self.retriever = nn.ModuleList(_AttentionLayer(dim, heads, d_ff, dropout, True) for _ in range(blocks))
        self.out = _output_mlp(dim, d_ff, dropout)

    def embed(self, batch: TorchBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(question embeddings, interaction embeddings) of the cells."""
        c = mean_embed(self.concept, batch.tokens)
        x, y = c, c + self.response(batch.correct)
        if self.rasch:
            mu = self.difficulty(batch.item)
            d = mean_embed(self.variation, batch.tokens)
            x = x + mu * d
            y = y + mu * (self.response_variation(batch.correct) + d)
        return x, y

    def forward(self, batch: TorchBatch) -> torch.Tensor:
        x, y = self.embed(batch)
        peek, strict = peek_mask(batch.pos, batch.valid), strict_mask(batch.pos, batch.valid)
        distance = distances(batch.pos, x.dtype)
        for layer in self.knowledge:
            y = layer(y, y, y, peek, distance)
        h = x
        for questions, retriever in zip(self.questions, self.retriever):
            h = questions(h, h, h, peek, distance)
            h = retriever(h, h, y, strict, distance)
        return self.out(torch.cat([h, x], dim=-1))[..., 0]

    def penalty(self, batch: TorchBatch) -> torch.Tensor | float:
        return _difficulty_penalty(self.difficulty if self.rasch else None, self.l2, batch)


def _output_mlp(dim: int, d_ff: int, dropout: float) -> nn.Sequential:
    """AKT's and simpleKT's output MLP: [retrieved knowledge, question embedding] (2 * dim) -> logit."""
    return nn.Sequential(nn.Linear(2 * dim, d_ff), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(d_ff, d_ff // 2), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff // 2, 1))


def _difficulty_penalty(difficulty: nn.Embedding | None, l2: float, batch: TorchBatch) -> torch.Tensor | float:
    """``l2 * sum(mu^2)`` of the Rasch difficulties of the batch's answers (0 without them)."""
    if difficulty is None or not l2:
        return 0.0
    mu = difficulty(batch.item)[..., 0] * batch.valid
    return l2 * (mu * mu).sum()


class SimpleKTNet(Net):
    """simpleKT (Liu et al. 2023): question embeddings ``x = c + mu_item * d`` (the Rasch embedding,
    ``rasch``; else ``x = c``) and interaction embeddings ``y = x + r`` (``r`` per outcome), plus the
    sine/cosine encoding of the position in the window (``position``); ``blocks`` transformer layers
    of ordinary scaled dot-product attention (no decay) whose queries and keys are the question
    states and values the interaction embeddings of strictly earlier answers (the first answer of a
    window retrieves nothing), each with a feed-forward layer; then an MLP over the retrieved
    knowledge and the question embedding. The difficulties are penalised as in ``AKTNet``."""

    def __init__(self, n_tokens: int, n_items: int, dim: int, heads: int, blocks: int, d_ff: int,
                 dropout: float, rasch: bool, l2: float, position: bool) -> None:
        super().__init__()
        self.rasch, self.l2, self.position, self.dim = rasch, l2, position, dim
        self.concept = nn.Embedding(n_tokens, dim, padding_idx=0)
        self.response = nn.Embedding(2, dim)
        self.difficulty: nn.Embedding | None = None
        if rasch:
            self.difficulty = nn.Embedding(n_items, 1, padding_idx=0)
            nn.init.zeros_(self.difficulty.weight)
            self.variation = nn.Embedding(n_tokens, dim, padding_idx=0)
        self.layers = nn.ModuleList(_AttentionLayer(dim, heads, d_ff, dropout, True, monotonic=False)
                                    for _ in range(blocks))
        self.out = _output_mlp(dim, d_ff, dropout)

    def embed(self, batch: TorchBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(question embeddings, interaction embeddings) of the cells, without the positions."""
        x = mean_embed(self.concept, batch.tokens)
        if self.difficulty is not None:
            x = x + self.difficulty(batch.item) * mean_embed(self.variation, batch.tokens)
        return x, x + self.response(batch.correct)

    def forward(self, batch: TorchBatch) -> torch.Tensor:
        x, y = self.embed(batch)
        h = x
        if self.position:
            p = sinusoid(batch.pos, self.dim, x.dtype)
            h, y = h + p, y + p
        strict = strict_mask(batch.pos, batch.valid)
        for layer in self.layers:
            h = layer(h, h, y, strict)
        return self.out(torch.cat([h, x], dim=-1))[..., 0]

    def penalty(self, batch: TorchBatch) -> torch.Tensor | float:
        return _difficulty_penalty(self.difficulty, self.l2, batch)
