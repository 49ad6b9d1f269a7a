"""Item selection criteria, each a score for every item of the bank in one numpy expression.

Higher is better; items that may not be given (answered, enemies of answered items, outside the
content category due, rejected by exposure control) are masked by the caller with ``-inf``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from knowtrace.cat.bank import ItemBank
from knowtrace.exceptions import InputError

__all__ = [
    "SELECTORS",
    "AStratified",
    "ContentBalance",
    "ContentBalancer",
    "KLPosterior",
    "MaxInformation",
    "PosteriorWeightedInformation",
    "SelectionContext",
    "Selector",
    "SelectorConfig",
    "make_selector",
    "selector_name",
]

SelectorName = Literal["maxinfo", "kl", "mpwi", "astrat"]
#: accepted names and aliases of the selection criteria
SELECTORS: dict[str, str] = {
    "maxinfo": "maxinfo", "mfi": "maxinfo", "max-info": "maxinfo", "fisher": "maxinfo",
    "kl": "kl", "kl-eap": "kl", "klp": "kl",
    "mpwi": "mpwi", "pwi": "mpwi",
    "astrat": "astrat", "a-strat": "astrat", "a-stratified": "astrat",
}


class SelectorConfig(BaseModel):
    """The selection criterion; ``strata`` for a-stratification."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: SelectorName = "maxinfo"
    strata: int = Field(default=4, ge=1)


@dataclass
class SelectionContext:
    """What a criterion may use: the estimate, the posterior on the grid, the position in the test."""

    theta: float
    weights: np.ndarray | None
    step: int
    test_length: int
    available: np.ndarray


class Selector:
    """Base class: ``scores(ctx)`` gives one score per bank item; ``needs_posterior`` asks for weights."""

    name = ""
    needs_posterior = False

    def __init__(self, bank: ItemBank, nodes: np.ndarray) -> None:
        self.bank = bank
        self.nodes = nodes

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        """The criterion of every item."""
        raise NotImplementedError


class MaxInformation(Selector):
    """Maximum Fisher information at the current estimate."""

    name = "maxinfo"

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        return self.bank.information(ctx.theta)


class KLPosterior(Selector):
    """Posterior-weighted Kullback–Leibler information (KL-EAP; Chang & Ying 1996, Chen et al. 2000):
    ``Σ_q w_q KL_j(θ̂ ‖ θ_q)`` over the grid, ``w`` the current posterior."""

    name = "kl"
    needs_posterior = True

    def __init__(self, bank: ItemBank, nodes: np.ndarray) -> None:
        super().__init__(bank, nodes)
        self.log_p, self.log_q = bank.log_prob_grid(nodes)

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        assert ctx.weights is not None
        w = ctx.weights
        keep = w > 1e-12 * w.max()            # the posterior's support, to halve the work late in a test
        if not keep.all():
            w = w[keep] / w[keep].sum()
            log_p, log_q = self.log_p[:, keep], self.log_q[:, keep]
        else:
            log_p, log_q = self.log_p, self.log_q
        log_p_hat, log_q_hat = self.bank.log_probability(ctx.theta)
        return np.exp(log_p_hat) * (log_p_hat - log_p @ w) + np.exp(log_q_hat) * (log_q_hat - log_q @ w)


class PosteriorWeightedInformation(Selector):
    """Maximum posterior-weighted Fisher information (MPWI; van der Linden 1998)."""

    name = "mpwi"
    needs_posterior = True

    def __init__(self, bank: ItemBank, nodes: np.ndarray) -> None:
        super().__init__(bank, nodes)
        self.info = np.stack([bank.information(float(t)) for t in nodes], axis=1)  # items × nodes

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        assert ctx.weights is not None
        return self.info @ ctx.weights


class AStratified(Selector):
    """a-stratification (Chang & Ying 1999): items in ``strata`` groups of rising discrimination;
    the test moves through them in equal parts and, within the current one, picks the difficulty
    closest to the estimate. An exhausted stratum hands over to the next (then the previous)."""

    name = "astrat"

    def __init__(self, bank: ItemBank, nodes: np.ndarray, strata: int = 4) -> None:
        super().__init__(bank, nodes)
        k = max(1, min(int(strata), len(bank)))
        order = np.argsort(bank.a, kind="stable")
        self.stratum = np.empty(len(bank), dtype=np.intp)
        for s, part in enumerate(np.array_split(order, k)):
            self.stratum[part] = s
        self.strata = k

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        length = max(ctx.test_length, 1)
        due = min(self.strata - 1, ctx.step * self.strata // length)
        score = -np.abs(self.bank.b - ctx.theta)
        counts = np.bincount(self.stratum[ctx.available], minlength=self.strata)
        order = list(range(due, self.strata)) + list(range(due - 1, -1, -1))
        chosen = next((s for s in order if counts[s] > 0), due)
        return np.where(self.stratum == chosen, score, -np.inf)


def make_selector(config: SelectorConfig, bank: ItemBank, nodes: np.ndarray) -> Selector:
    """The selector the config names, precomputed for ``bank``."""
    if config.name == "maxinfo":
        return MaxInformation(bank, nodes)
    if config.name == "kl":
        return KLPosterior(bank, nodes)
    if config.name == "mpwi":
        return PosteriorWeightedInformation(bank, nodes)
    if config.name == "astrat":
        return AStratified(bank, nodes, config.strata)
    raise InputError(f"unknown selector {config.name!r}; use one of {', '.join(sorted(set(SELECTORS.values())))}",
                     field="selector")


def selector_name(text: str) -> SelectorName:
    """The canonical name of a selector given by name or alias (``InputError`` otherwise)."""
    name = SELECTORS.get(text.strip().lower())
    if name is None:
        raise InputError(f"unknown selector {text!r}; use one of {', '.join(SELECTORS)}", field="selector")
    return name  # type: ignore[return-value]


class ContentBalance(BaseModel):
    """Target proportions of concepts or content areas in each test (Kingsbury & Zara's CCAT): at each
    step the category furthest below its target share is due, and only its items may be chosen."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: Literal["content_area", "concept"] = "content_area"
    targets: dict[str, float] = Field(min_length=1)

    @field_validator("targets")
    @classmethod
    def _proportions(cls, targets: dict[str, float]) -> dict[str, float]:
        for name, share in targets.items():
            if not (share >= 0 and np.isfinite(share)):
                raise ValueError(f"target of {name!r} must be a proportion >= 0, got {share}")
        total = sum(targets.values())
        if not total > 0:
            raise ValueError("content targets must not all be 0")
        return {name: share / total for name, share in targets.items()}


class ContentBalancer:
    """The item mask of the category due, from the categories of the items given so far."""

    def __init__(self, config: ContentBalance, bank: ItemBank) -> None:
        ids, matrix = ((bank.area_ids, bank.area_matrix) if config.by == "content_area"
                       else (bank.concept_ids, bank.concept_matrix))
        where = {k: i for i, k in enumerate(ids)}
        missing = [k for k in config.targets if k not in where]
        if missing:
            raise InputError(f"content target(s) {', '.join(map(repr, missing))} match no {config.by} of the bank "
                             f"(it has: {', '.join(ids) or 'none'})", field="content")
        self.names = list(config.targets)
        self.shares = np.array([config.targets[k] for k in self.names])
        self.matrix = matrix[[where[k] for k in self.names]]          # categories × items

    def counts(self, items: list[int]) -> np.ndarray:
        """Items given so far in each category."""
        if not items:
            return np.zeros(len(self.names))
        return self.matrix[:, items].sum(axis=1).astype(np.float64)

    def mask(self, counts: np.ndarray, n_given: int, available: np.ndarray) -> np.ndarray | None:
        """Items of the category furthest below its share that still has an available item (None: none has)."""
        deficit = self.shares * (n_given + 1) - counts
        for k in np.argsort(-deficit, kind="stable"):
            if self.shares[k] <= 0:
                continue
            allowed = self.matrix[k] & available
            if allowed.any():
                return allowed
        return None
