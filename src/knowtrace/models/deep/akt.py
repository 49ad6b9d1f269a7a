"""Context-aware Attentive Knowledge Tracing (Ghosh, Heffernan & Lan, KDD 2020).

A knowledge encoder over the (concept, outcome) embeddings, a question encoder over the concept
embeddings and a knowledge retriever (queries and keys: encoded questions; values: encoded
knowledge of strictly earlier answers), all with monotonic attention (exponential decay with a
context-aware distance), then an MLP over the retrieved knowledge and the question embedding.
With concepts, the Rasch embedding adds ``mu_item * variation`` to them (one learned difficulty
scalar per item), so items of a concept differ at the cost of one number each. Online, the model
caches the learner's last ``window`` answers; ``mastery`` queries each concept (with an average
item, ``mu = 0``) against them (see ``knowtrace.models.deep.model``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from knowtrace.exceptions import InputError
from knowtrace.models.data import Interactions
from knowtrace.models.deep.model import SequenceModel
from knowtrace.models.deep.sakt import check_attention_params
from knowtrace.models.deep.sequences import Vocabulary

if TYPE_CHECKING:
    from knowtrace.models.deep.training import Net

__all__ = ["AKT"]


class AKT(SequenceModel):
    """AKT with the Rasch embedding (``rasch``, with concept tokens) and ``blocks`` encoder blocks.

    Hyperparameters: ``unit`` ("auto": concepts when the answers have any, else items), ``dim``,
    ``heads``, ``blocks``, ``d_ff`` (feed-forward and output MLP width), ``rasch``, ``l2`` (penalty
    on the item difficulties), ``window``, ``dropout``, ``epochs``, ``lr``, ``lr_decay``, ``batch_size``,
    ``patience``, ``valid_share``, ``seed``, ``device``, ``verbose``, ``remember_learners`` (as in ``DKT``).
    """

    name = "akt"
    description = "Attentive Knowledge Tracing: monotonic attention with Rasch item embeddings"

    def __init__(self, *, unit: str = "auto", dim: int = 64, heads: int = 4, blocks: int = 1, d_ff: int = 256,
                 rasch: bool = True, l2: float = 1e-5, window: int = 100, dropout: float = 0.1, epochs: int = 20,
                 lr: float = 3e-3, lr_decay: float = 0.5, batch_size: int = 32, patience: int = 3,
                 valid_share: float = 0.1, seed: int = 0, device: str = "auto", verbose: bool = False,
                 remember_learners: bool = True) -> None:
        self.unit = unit
        self.dim = dim
        self.heads = heads
        self.blocks = blocks
        self.d_ff = d_ff
        self.rasch = rasch
        self.l2 = l2
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
        return {"dim": 8, "heads": 2, "d_ff": 8, "epochs": 1, "window": 16, "batch_size": 16}

    def _check_model_params(self) -> None:
        check_attention_params(self)
        if not isinstance(self.d_ff, int) or isinstance(self.d_ff, bool) or self.d_ff < 2:
            raise InputError(f"d_ff must be an integer >= 2, got {self.d_ff!r}", field="d_ff")
        if not isinstance(self.rasch, bool):
            raise InputError(f"rasch must be true or false, got {self.rasch!r}", field="rasch")
        if not (isinstance(self.l2, (int, float)) and not isinstance(self.l2, bool) and math.isfinite(self.l2)
                and self.l2 >= 0):
            raise InputError(f"l2 must be a finite number >= 0, got {self.l2!r}", field="l2")

    def _resolve_unit(self, data: Interactions) -> str:
        if self.unit == "auto":
            return "concept" if len(data.concept_ids) else "item"
        return super()._resolve_unit(data)

    def _uses_rasch(self, vocab: Vocabulary) -> bool:
        return bool(self.rasch) and vocab.unit == "concept"

    def _build_net(self, vocab: Vocabulary) -> Net:
        from knowtrace.models.deep.nets import AKTNet

        return AKTNet(vocab.n_tokens, vocab.n_items, int(self.dim), int(self.heads), int(self.blocks),
                      int(self.d_ff), float(self.dropout), self._uses_rasch(vocab), float(self.l2))

    def _unk_tables(self) -> dict[str, str]:
        tables = {"concept.weight": "token"}
        if self._uses_rasch(self.vocab_):
            tables["variation.weight"] = "token"
        return tables
