"""The model registry: versioned model artifacts per tenant in the lake, and the promoted version of each.

``ModelRegistry(lake_root)``: ``register`` a fitted model with its metrics and data window,
``promote`` a version (refused when worse on AUC than the promoted one, unless forced),
``promoted`` (what a server polls), ``versions``, ``load``. See docs/batch.md.
"""

from knowtrace.registry.registry import (
    PROMOTION_METRIC,
    REGISTRY_FORMAT,
    ModelRegistry,
    ModelVersion,
    Promotion,
    PromotionRefused,
)

__all__ = ["PROMOTION_METRIC", "REGISTRY_FORMAT", "ModelRegistry", "ModelVersion", "Promotion", "PromotionRefused"]
