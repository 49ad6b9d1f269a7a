"""Learner models: one contract (``KnowledgeModel``), a registry, and the built-in models."""

from knowtrace.models.base import (
    FORMAT_VERSION,
    ArtifactError,
    ArtifactVersionError,
    KnowledgeModel,
    ModelError,
    NotFittedError,
    OnlineModel,
)
from knowtrace.models.baselines import GlobalRate, ItemRate
from knowtrace.models.data import Interactions, as_table
from knowtrace.models.bkt import BKT
from knowtrace.models.deep import AKT, DKT, SAKT, SimpleKT
from knowtrace.models.elo import Elo
from knowtrace.models.irt import IRT
from knowtrace.models.ktm import KTM
from knowtrace.models.pfa import AFM, PFA
from knowtrace.models.registry import MODELS, available_models, get_model, get_model_class

__all__ = [
    "AFM",
    "AKT",
    "BKT",
    "DKT",
    "FORMAT_VERSION",
    "MODELS",
    "PFA",
    "SAKT",
    "SimpleKT",
    "ArtifactError",
    "ArtifactVersionError",
    "Elo",
    "GlobalRate",
    "IRT",
    "Interactions",
    "KTM",
    "ItemRate",
    "KnowledgeModel",
    "ModelError",
    "NotFittedError",
    "OnlineModel",
    "as_table",
    "available_models",
    "get_model",
    "get_model_class",
]
