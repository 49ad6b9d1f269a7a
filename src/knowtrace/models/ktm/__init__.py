"""Knowledge Tracing Machines: sparse features of the learner's history and a factorization machine."""

from knowtrace.models.ktm.features import LETTERS, FeatureSpace, design_matrix
from knowtrace.models.ktm.model import KTM

__all__ = ["KTM", "LETTERS", "FeatureSpace", "design_matrix"]
