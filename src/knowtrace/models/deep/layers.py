"""Building blocks of the sequence networks: token embeddings and masked multi-head attention.

Masks are built from positions, so one code path serves training windows (a causal mask) and
online queries (several candidate next answers at the same position, each seeing the context
and itself only): ``strict[i, j]`` is true when key ``j`` is a real answer earlier than query
``i``; ``peek`` also lets a row see itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

__all__ = ["MultiHead", "distances", "mean_embed", "pair_tokens", "peek_mask", "sinusoid", "strict_mask"]

#: the score given to masked keys before the softmax
MASKED = -1e32


def mean_embed(table: nn.Embedding, tokens: torch.Tensor) -> torch.Tensor:
    """The mean embedding of the non-padding tokens of the last axis (zeros when all pad)."""
    count = (tokens != 0).sum(-1, keepdim=True).clamp(min=1).to(table.weight.dtype)
    return table(tokens).sum(-2) / count


def pair_tokens(tokens: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Tokens of (token, outcome) pairs: ``2 * token + correct``, padding kept at 0."""
    return torch.where(tokens > 0, 2 * tokens + correct.unsqueeze(-1), torch.zeros_like(tokens))


def strict_mask(pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(b, l, l): key ``j`` is a real answer at an earlier position than row ``i``."""
    return (pos[:, None, :] < pos[:, :, None]) & valid[:, None, :]


def peek_mask(pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(b, l, l): ``strict_mask`` or the row itself."""
    eye = torch.eye(pos.shape[1], dtype=torch.bool, device=pos.device)
    return strict_mask(pos, valid) | (eye[None] & valid[:, None, :])


def distances(pos: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(b, 1, l, l): |pos_i - pos_j|."""
    return (pos[:, None, :, None] - pos[:, None, None, :]).abs().to(dtype)


def sinusoid(pos: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """(b, l, dim): the fixed sine/cosine encoding of positions ``pos`` (b, l) of Vaswani et al. (2017):
    ``sin(p * w_i)`` at even and ``cos(p * w_i)`` at odd features, ``w_i = 10000^(-2i/dim)``."""
    rate = torch.exp(torch.arange(0, dim, 2, device=pos.device, dtype=dtype) * (-math.log(10000.0) / dim))
    angle = pos.to(dtype)[..., None] * rate
    out = torch.empty(*pos.shape, dim, device=pos.device, dtype=dtype)
    out[..., 0::2] = torch.sin(angle)
    out[..., 1::2] = torch.cos(angle[..., : dim // 2])
    return out


class MultiHead(nn.Module):
    """Multi-head attention with a boolean mask (b, lq, lk); rows without any visible key give 0.
    Dropout applies to the output (not to the attention weights: on CPU that cost more than the
    rest of the attention).

    ``same_kq`` projects queries with the key projection (AKT). ``monotonic`` applies AKT's
    exponential decay with context-aware distance (Ghosh et al. 2020, eq. 5-6): scores are
    multiplied by ``exp(-softplus(theta_h) * d(i, j))`` where ``d(i, j) = sqrt(|p_i - p_j| *
    sum of the attention on the visible keys after j)``, computed without gradient.
    """

    def __init__(self, dim: int, heads: int, dropout: float, *, same_kq: bool = False,
                 monotonic: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.heads, self.d_k, self.same_kq, self.monotonic = heads, dim // heads, same_kq, monotonic
        self.k_proj = nn.Linear(dim, dim)
        self.q_proj = None if same_kq else nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        if monotonic:
            self.gammas = nn.Parameter(torch.zeros(heads, 1, 1))
            nn.init.xavier_uniform_(self.gammas)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.d_k).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor,
                distance: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of ``query`` (b, lq, dim) over ``key``/``value`` (b, lk, dim) where ``mask``
        (b, lq, lk) allows; ``distance`` (b, 1, lq, lk): |position of query - position of key|
        (needed when ``monotonic``)."""
        q = self._split((self.k_proj if self.q_proj is None else self.q_proj)(query)) / math.sqrt(self.d_k)
        k, v = self._split(self.k_proj(key)), self._split(self.v_proj(value))
        scores = q @ k.transpose(-2, -1)
        hidden = ~mask[:, None]
        seen = mask.any(-1)[:, None, :, None].to(scores.dtype)
        if self.monotonic:
            assert distance is not None
            with torch.no_grad():
                p = torch.softmax(scores.masked_fill(hidden, MASKED), dim=-1)
                after = seen - torch.cumsum(p, dim=-1)  # attention on the keys after each key
                d = (after * distance).clamp_(min=0.0).sqrt_()
            gamma = -F.softplus(self.gammas)[None]
            scores = scores * torch.exp(d * gamma).clamp(min=1e-5, max=1e5)
        out = (torch.softmax(scores.masked_fill(hidden, MASKED), dim=-1) @ v) * seen
        b, _, n, _ = out.shape
        return self.dropout(self.out(out.transpose(1, 2).reshape(b, n, self.heads * self.d_k)))
