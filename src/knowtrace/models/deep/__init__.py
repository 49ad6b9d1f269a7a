"""Deep knowledge tracing: DKT, SAKT, AKT and simpleKT over windows of each learner's answer sequence.

Importing this package registers the models ``dkt``, ``sakt``, ``akt`` and ``simplekt``; torch is imported
only when a model is fit or used.
"""

from knowtrace.models.deep.akt import AKT
from knowtrace.models.deep.dkt import DKT
from knowtrace.models.deep.model import AUTO_ITEM_LIMIT, SequenceModel
from knowtrace.models.deep.sakt import SAKT
from knowtrace.models.deep.simplekt import SimpleKT

__all__ = ["AKT", "AUTO_ITEM_LIMIT", "DKT", "SAKT", "SequenceModel", "SimpleKT"]
