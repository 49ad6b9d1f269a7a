"""Self-Attentive Knowledge Tracing (Pandey & Karypis, EDM 2019).

The query of each answer is the embedding of its token (item or concept, see ``unit``; several
concepts are averaged); keys and values are the embeddings of the earlier (token, outcome) pairs
of its window plus a position embedding, after a learned start key so that a learner's first
answer is predicted from it alone. ``blocks`` attention blocks (one by default) with a
feed-forward layer, residual connections and layer norm, then a linear output. Online, the model
caches the learner's last ``window`` answers and attends over the part of them in the current
window; ``mastery`` queries each concept's typical item against them (see
``knowtrace.models.deep.model``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from knowtrace.exceptions import InputError
from knowtrace.models.deep.model import SequenceModel
from knowtrace.models.deep.sequences import Vocabulary

if TYPE_CHECKING:
    from knowtrace.models.deep.training import Net

__all__ = ["SAKT"]


def check_attention_params(model: Any) -> None:
    """``dim``, ``heads`` and ``blocks`` are positive integers and ``heads`` divides ``dim``."""
    for name in ("dim", "heads", "blocks"):
        value = getattr(model, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}", field=name)
    if model.dim % model.heads:
        raise InputError(f"dim ({model.dim}) must be a multiple of heads ({model.heads})", field="heads")


class SAKT(SequenceModel):
    """SAKT: self-attention of the current item over past interactions, causal, ``blocks`` blocks.

    Hyperparameters: ``unit``, ``dim`` (embedding size), ``heads``, ``blocks``, ``query_position``
    (add the position embedding to the queries as well, which the paper does not: without it a
    query cannot tell which earlier answers are recent), ``window`` (answers per window, even; also
    the number of position embeddings), ``dropout``, ``epochs``, ``lr``, ``lr_decay``, ``batch_size``,
    ``patience``, ``valid_share``, ``seed``, ``device``, ``verbose``, ``remember_learners`` (as in
    ``DKT``).
    """

    name = "sakt"
    description = "Self-Attentive Knowledge Tracing: attention of the current item over past answers"

    def __init__(self, *, unit: str = "auto", dim: int = 64, heads: int = 4, blocks: int = 1,
                 query_position: bool = False, window: int = 100,
                 dropout: float = 0.1, epochs: int = 20, lr: float = 3e-3, lr_decay: float = 0.5, batch_size: int = 32,
                 patience: int = 3,
                 valid_share: float = 0.1, seed: int = 0, device: str = "auto", verbose: bool = False,
                 remember_learners: bool = True) -> None:
        self.unit = unit
        self.dim = dim
        self.heads = heads
        self.blocks = blocks
        self.query_position = query_position
        self.window = window
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.lr_decay = lr_decay
        self.batch_size = batch_size
        self.patience = patience
        self.valid_share = valid_share
        self.seed = seed
        self.device = device
        self.verbose = verbose
        self.remember_learners = remember_learners

    @classmethod
    def _test_params(cls) -> dict[str, Any]:
        return {"dim": 8, "heads": 2, "epochs": 1, "window": 16, "batch_size": 16}

    def _check_model_params(self) -> None:
        check_attention_params(self)
        if not isinstance(self.query_position, bool):
            raise InputError(f"query_position must be true or false, got {self.query_position!r}",
                             field="query_position")

    def _build_net(self, vocab: Vocabulary) -> Net:
        from knowtrace.models.deep.nets import SAKTNet

        return SAKTNet(vocab.n_tokens, int(self.dim), int(self.heads), int(self.blocks), int(self.window),
                       float(self.dropout), self.query_position)

    def _unk_tables(self) -> dict[str, str]:
        return {"query.weight": "token", "inter.weight": "pair"}
