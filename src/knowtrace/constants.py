"""Names and choices shared by the packages and the command line.

This module imports nothing, so that ``knowtrace --help`` can show them without importing numpy,
scipy, duckdb or torch (the command line reads them when it starts; the packages that use them
import them from here).
"""

__all__ = ["ABILITY_METHODS", "ENGINE_NAMES", "IRT_MODELS", "LAKE_ENV", "PIPELINE_MODELS"]

#: the environment variable naming the lake directory
LAKE_ENV = "KNOWTRACE_LAKE"

#: the IRT models: rasch (a = 1), 1pl (one a common to all items), 2pl, 3pl (+ c), 4pl (+ c and d)
IRT_MODELS: tuple[str, ...] = ("rasch", "1pl", "2pl", "3pl", "4pl")

#: the IRT ability estimators
ABILITY_METHODS = ("eap", "map", "mle")

#: the models the batch pipeline trains unless told otherwise
PIPELINE_MODELS = ("elo", "bkt", "irt")

#: the engines of the batch pipeline's silver/gold rebuild
ENGINE_NAMES = ("duckdb", "spark")
