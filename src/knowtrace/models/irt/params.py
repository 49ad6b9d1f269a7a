"""Item parameters of logistic IRT models, their priors, and quadrature grids for the ability scale.

The item response function (logistic metric, no 1.7 scaling) is
``P(correct | theta) = c + (d - c) * sigmoid(a * (theta - b))`` with discrimination ``a``,
difficulty ``b``, lower asymptote (guessing) ``c`` and upper asymptote ``d``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import expit

from knowtrace.constants import IRT_MODELS
from knowtrace.exceptions import InputError

__all__ = [
    "MODELS",
    "BetaPrior",
    "ItemParameters",
    "LogNormalPrior",
    "ModelName",
    "NormalPrior",
    "Quadrature",
    "check_model",
    "quadrature",
]

ModelName = Literal["rasch", "1pl", "2pl", "3pl", "4pl"]
#: the models: rasch (a = 1), 1pl (one a common to all items), 2pl, 3pl (+ c), 4pl (+ c and d)
MODELS: tuple[str, ...] = IRT_MODELS


def check_model(model: str) -> str:
    """``model`` lower-cased, or ``InputError`` when it is not one of ``MODELS``."""
    name = str(model).lower()
    if name not in MODELS:
        raise InputError(f"unknown IRT model {model!r}; use one of {', '.join(MODELS)}", field="model")
    return name


@dataclass(frozen=True)
class NormalPrior:
    """A normal prior N(mean, sd^2)."""

    mean: float = 0.0
    sd: float = 1.0

    def __post_init__(self) -> None:
        if not self.sd > 0:
            raise InputError(f"a normal prior needs sd > 0, got {self.sd}")


@dataclass(frozen=True)
class LogNormalPrior:
    """A lognormal prior: log(a) ~ N(meanlog, sdlog^2)."""

    meanlog: float = 0.0
    sdlog: float = 0.5

    def __post_init__(self) -> None:
        if not self.sdlog > 0:
            raise InputError(f"a lognormal prior needs sdlog > 0, got {self.sdlog}")


@dataclass(frozen=True)
class BetaPrior:
    """A Beta(alpha, beta) prior."""

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not (self.alpha >= 1 and self.beta >= 1):
            raise InputError(f"a beta prior needs alpha, beta >= 1, got ({self.alpha}, {self.beta})")


@dataclass(frozen=True, eq=False)
class ItemParameters:
    """Parameters of ``item_ids`` (arrays aligned with them)."""

    item_ids: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray

    @classmethod
    def of(cls, item_ids: object, a: object = 1.0, b: object = 0.0, c: object = 0.0,
           d: object = 1.0) -> ItemParameters:
        """Parameters from ids and per-item values or scalars (broadcast)."""
        ids = np.asarray(item_ids, dtype=str).reshape(-1)
        n = len(ids)
        arrays = [np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy() for v in (a, b, c, d)]
        return cls(ids, *arrays)

    def __len__(self) -> int:
        return len(self.item_ids)

    def prob(self, theta: np.ndarray) -> np.ndarray:
        """P(correct) of every item (rows) at every ability in ``theta`` (columns)."""
        theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        s = expit(self.a[:, None] * (theta[None, :] - self.b[:, None]))
        return self.c[:, None] + (self.d - self.c)[:, None] * s

    def information(self, theta: np.ndarray) -> np.ndarray:
        """Fisher information of every item (rows) at every ability in ``theta`` (columns)."""
        theta = np.asarray(theta, dtype=np.float64).reshape(-1)
        s = expit(self.a[:, None] * (theta[None, :] - self.b[:, None]))
        p = self.c[:, None] + (self.d - self.c)[:, None] * s
        dp = (self.d - self.c)[:, None] * self.a[:, None] * s * (1.0 - s)
        return dp * dp / np.clip(p * (1.0 - p), 1e-300, None)

    def take(self, index: np.ndarray) -> ItemParameters:
        """The parameters of the items at ``index``."""
        return ItemParameters(self.item_ids[index], self.a[index], self.b[index], self.c[index], self.d[index])


@dataclass(frozen=True, eq=False)
class Quadrature:
    """Ability nodes and the prior weights (summing to 1) of a N(mean, sd^2) ability distribution."""

    nodes: np.ndarray
    weights: np.ndarray
    kind: str

    @property
    def log_weights(self) -> np.ndarray:
        """Natural logarithm of ``weights``."""
        return np.log(self.weights)

    def describe(self) -> str:
        """A short text such as ``"61-point uniform on [-6, 6]"``."""
        lo, hi = float(self.nodes[0]), float(self.nodes[-1])
        return f"{len(self.nodes)}-point {self.kind} on [{lo:.3g}, {hi:.3g}]"


def quadrature(n: int = 61, kind: str = "uniform", *, mean: float = 0.0, sd: float = 1.0,
               bound: float = 6.0) -> Quadrature:
    """Nodes and weights for integrating over a N(mean, sd^2) ability.

    ``kind="uniform"``: ``n`` equally spaced nodes on ``mean ± bound * sd`` weighted by the normal
    density; ``kind="gauss-hermite"``: the ``n``-point Gauss–Hermite rule.
    """
    if not (isinstance(n, (int, np.integer)) and n >= 5):
        raise InputError(f"quadrature needs at least 5 points, got {n!r}", field="n_quadrature")
    if not sd > 0:
        raise InputError(f"the ability prior needs sd > 0, got {sd}", field="prior_sd")
    if kind == "uniform":
        if not bound > 0:
            raise InputError(f"the quadrature bound must be > 0, got {bound}", field="bound")
        z = np.linspace(-bound, bound, int(n))
        w = np.exp(-0.5 * z * z)
    elif kind in ("gauss-hermite", "gh"):
        x, w = np.polynomial.hermite.hermgauss(int(n))
        z = x * math.sqrt(2.0)
        kind = "gauss-hermite"
    else:
        raise InputError(f"unknown quadrature {kind!r}; use 'uniform' or 'gauss-hermite'", field="quadrature")
    w = w / w.sum()
    return Quadrature(mean + sd * z, w, kind)
