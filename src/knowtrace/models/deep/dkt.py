"""Deep Knowledge Tracing (Piech et al., NeurIPS 2015): a recurrent network over the answer sequence.

The input of each step is the embedding of the (token, outcome) pair of the answer (a token is
the item, or the concept: see ``unit``; an answer with several concepts averages their
embeddings); the P(correct) of an answer is read from the state before it by an output layer
with one unit per token (averaged over the answer's tokens), one prediction per answer. Online,
the model keeps per learner the recurrent state ``(h, c)`` (LSTM) or ``h`` (GRU) of the current
window and of the next one; ``mastery`` reads the output layer at the current state for every
concept (see ``knowtrace.models.deep.model`` for training, windows and unknown ids).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from knowtrace.exceptions import InputError
from knowtrace.models.deep.model import SequenceModel
from knowtrace.models.deep.sequences import Vocabulary

if TYPE_CHECKING:
    from knowtrace.models.deep.training import Net

__all__ = ["DKT"]


class DKT(SequenceModel):
    """DKT: an LSTM (or GRU, ``cell="gru"``) of size ``hidden`` over (token, outcome) embeddings.

    Hyperparameters: ``unit`` ("item", "concept", or "auto": items up to ``AUTO_ITEM_LIMIT`` items,
    concepts beyond), ``cell``, ``hidden``, ``window`` (answers per training/prediction window, even),
    ``dropout`` (on the state before the output layer), ``epochs``, ``lr`` (Adam), ``lr_decay`` (the
    learning rate is multiplied by it after every epoch without validation AUC gain; 1 keeps it),
    ``batch_size`` (windows per batch), ``patience`` (epochs without validation AUC gain before stopping),
    ``valid_share`` (training learners held out to stop early when ``fit`` gets no ``valid``; 0
    trains all epochs), ``seed``, ``device`` ("auto": CUDA when present), ``verbose`` (a progress
    bar with the loss and validation AUC per epoch) and ``remember_learners`` (keep the state of
    every learner seen in ``fit``; False keeps none, for callers that store learner states elsewhere).
    """

    name = "dkt"
    description = "Deep Knowledge Tracing: LSTM/GRU over the answer sequence"
    recurrent: ClassVar[bool] = True

    def __init__(self, *, unit: str = "auto", cell: str = "lstm", hidden: int = 100, window: int = 200,
                 dropout: float = 0.2, epochs: int = 20, lr: float = 2e-3, lr_decay: float = 0.5, batch_size: int = 64,
                 patience: int = 3,
                 valid_share: float = 0.1, seed: int = 0, device: str = "auto", verbose: bool = False,
                 remember_learners: bool = True) -> None:
        self.unit = unit
        self.cell = cell
        self.hidden = hidden
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
        return {"hidden": 8, "epochs": 1, "window": 16, "batch_size": 16}

    def _check_model_params(self) -> None:
        if self.cell not in ("lstm", "gru"):
            raise InputError(f"cell must be 'lstm' or 'gru', got {self.cell!r}", field="cell")
        if not isinstance(self.hidden, int) or isinstance(self.hidden, bool) or self.hidden < 1:
            raise InputError(f"hidden must be an integer >= 1, got {self.hidden!r}", field="hidden")

    def _build_net(self, vocab: Vocabulary) -> Net:
        from knowtrace.models.deep.nets import DKTNet

        return DKTNet(vocab.n_tokens, int(self.hidden), self.cell, float(self.dropout))

    def _unk_tables(self) -> dict[str, str]:
        return {"inputs.weight": "pair", "out_w.weight": "token", "out_b.weight": "token"}
