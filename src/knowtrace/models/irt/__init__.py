"""Item response theory: calibration (MML by Bock–Aitkin EM, a joint variational estimator in
PyTorch), ability estimation (EAP, MAP, MLE), item fit, and the ``irt`` learner model."""

from knowtrace.models.irt.ability import METHODS, AbilityEstimates, eap, estimate_abilities, map_, mle
from knowtrace.models.irt.fit_stats import ItemFit, item_fit
from knowtrace.models.irt.jml import JMLEstimator
from knowtrace.models.irt.mml import Calibration, ExcludedItem, MMLEstimator
from knowtrace.models.irt.model import IRT
from knowtrace.models.irt.params import (
    MODELS,
    BetaPrior,
    ItemParameters,
    LogNormalPrior,
    NormalPrior,
    Quadrature,
    quadrature,
)
from knowtrace.models.irt.response_matrix import ResponseMatrix

__all__ = [
    "IRT",
    "METHODS",
    "MODELS",
    "AbilityEstimates",
    "BetaPrior",
    "Calibration",
    "ExcludedItem",
    "ItemFit",
    "ItemParameters",
    "JMLEstimator",
    "LogNormalPrior",
    "MMLEstimator",
    "NormalPrior",
    "Quadrature",
    "ResponseMatrix",
    "eap",
    "estimate_abilities",
    "item_fit",
    "map_",
    "mle",
    "quadrature",
]
