"""simpleKT (Liu, Liu, Chen, Huang, Tang, Luo & Weng, ICLR 2023): a simple but tough-to-beat baseline.

AKT's Rasch question embedding (concept embedding plus one learned difficulty scalar per item
times the concept's variation vector, with concept tokens) and an interaction embedding (the
question embedding plus an outcome embedding), then ``blocks`` layers of ordinary causal scaled
dot-product attention: queries and keys are the question states, values the interaction
embeddings of strictly earlier answers. Unlike AKT there are no encoders and no monotonic decay;
where an answer sits in the window is told by the sine/cosine position encoding (``position``).
An MLP over the retrieved knowledge and the question embedding gives the logit. Online, the model
caches the learner's last ``window`` answers; ``mastery`` queries each concept (with an average
item, ``mu = 0``) against them (see ``knowtrace.models.deep.model``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from knowtrace.exceptions import InputError
from knowtrace.models.deep.akt import AKT

if TYPE_CHECKING:
    from knowtrace.models.deep.sequences import Vocabulary
    from knowtrace.models.deep.training import Net

__all__ = ["SimpleKT"]


class SimpleKT(AKT):
    """simpleKT with the Rasch embedding (``rasch``, with concept tokens) and ``blocks`` attention layers.

    It keeps AKT's unit resolution, Rasch embedding switch, unknown-token tables and hyperparameter
    checks (hence the subclass) and replaces the network.

    Hyperparameters: ``unit`` ("auto": concepts when the answers have any, else items), ``dim``,
    ``heads``, ``blocks``, ``d_ff`` (feed-forward and output MLP width), ``rasch``, ``position``
    (add the sine/cosine encoding of the position in the window to the queries, keys and values),
    ``l2`` (penalty on the item difficulties), ``window``, ``dropout``, ``epochs``, ``lr``, ``lr_decay``,
    ``batch_size``, ``patience``, ``valid_share``, ``seed``, ``device``, ``verbose``, ``remember_learners``
    (as in ``DKT``).
    """

    name = "simplekt"
    description = "simpleKT: Rasch item embeddings and ordinary causal dot-product attention"

    def __init__(self, *, unit: str = "auto", dim: int = 64, heads: int = 4, blocks: int = 2, d_ff: int = 256,
                 rasch: bool = True, position: bool = True, l2: float = 1e-5, window: int = 100,
                 dropout: float = 0.1, epochs: int = 20, lr: float = 3e-3, lr_decay: float = 0.5, batch_size: int = 32,
                 patience: int = 3, valid_share: float = 0.1, seed: int = 0, device: str = "auto", verbose: bool = False,
                 remember_learners: bool = True) -> None:
        super().__init__(unit=unit, dim=dim, heads=heads, blocks=blocks, d_ff=d_ff, rasch=rasch, l2=l2,
                         window=window, dropout=dropout, epochs=epochs, lr=lr, lr_decay=lr_decay, batch_size=batch_size,
                         patience=patience, valid_share=valid_share, seed=seed, device=device, verbose=verbose,
                         remember_learners=remember_learners)
        self.position = position

    @classmethod
    def _test_params(cls) -> dict[str, Any]:
        return {"dim": 8, "heads": 2, "blocks": 1, "d_ff": 8, "epochs": 1, "window": 16, "batch_size": 16}

    def _check_model_params(self) -> None:
        super()._check_model_params()
        if not isinstance(self.position, bool):
            raise InputError(f"position must be true or false, got {self.position!r}", field="position")

    def _build_net(self, vocab: Vocabulary) -> Net:
        from knowtrace.models.deep.nets import SimpleKTNet

        return SimpleKTNet(vocab.n_tokens, vocab.n_items, int(self.dim), int(self.heads), int(self.blocks),
                           int(self.d_ff), float(self.dropout), self._uses_rasch(vocab), float(self.l2),
                           self.position)
