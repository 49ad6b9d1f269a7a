"""The item bank: calibrated IRT parameters and test-assembly metadata of every item, as numpy arrays."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy.special import expit, log_expit

from knowtrace.cat.errors import ItemBankError
from knowtrace.cat.logistic import fisher_information, grid_derivatives, log_prob_correct, prob_correct
from knowtrace.exceptions import UnreadableFileError

if TYPE_CHECKING:
    from knowtrace.lake import Lake

__all__ = ["BANK_CSV_COLUMNS", "GridTables", "ItemBank"]

#: the columns of a bank CSV; ``item_id``, ``a`` and ``b`` are required, the others optional
BANK_CSV_COLUMNS = ("item_id", "a", "b", "c", "d", "concepts", "content_area", "enemies", "exposure_limit")
_ALIASES = {
    "id": "item_id", "item": "item_id", "itemid": "item_id",
    "content area": "content_area", "contentarea": "content_area", "area": "content_area",
    "enemy items": "enemies", "enemy_items": "enemies", "enemy": "enemies",
    "exposure limit": "exposure_limit", "exposure": "exposure_limit", "max_exposure": "exposure_limit",
    "concept": "concepts", "concept_ids": "concepts",
}
_LIST_SEP = ";"


def _split_list(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    out: list[str] = []
    for part in str(value).split(_LIST_SEP):
        part = part.strip()
        if part and part not in out:
            out.append(part)
    return tuple(out)


@dataclass(frozen=True, eq=False)
class GridTables:
    """Per item (rows) and ability node (columns): log P and log Q; optionally the θ-derivatives of
    log P and log Q, their second derivatives and the item information."""

    log_p: np.ndarray
    log_q: np.ndarray
    score_p: np.ndarray | None = None
    score_q: np.ndarray | None = None
    curvature_p: np.ndarray | None = None
    curvature_q: np.ndarray | None = None
    information: np.ndarray | None = None


class ItemBank:
    """Items with 4PL parameters ``a, b, c, d`` (numpy arrays in item order) and metadata.

    Metadata per item: ``concepts`` (tuple of concept ids), ``content_areas`` (one label or None),
    ``enemies`` (items that must not appear in the same test; made symmetric) and
    ``exposure_limits`` (the highest share of examinees that may see the item, 1 = none).

    Invalid input raises :class:`~knowtrace.cat.errors.ItemBankError` naming the item and field.

    >>> bank = ItemBank(["q1", "q2"], a=[1.2, 0.8], b=[-0.5, 0.7])
    >>> len(bank), bank.model
    (2, '2pl')
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        a: Sequence[float] | np.ndarray,
        b: Sequence[float] | np.ndarray,
        c: Sequence[float] | np.ndarray | None = None,
        d: Sequence[float] | np.ndarray | None = None,
        *,
        concepts: Sequence[Iterable[str]] | None = None,
        content_areas: Sequence[str | None] | None = None,
        enemies: Sequence[Iterable[str]] | None = None,
        exposure_limits: Sequence[float] | np.ndarray | None = None,
        name: str | None = None,
        _lines: Sequence[int] | None = None,
        _file: str | None = None,
    ) -> None:
        n = len(item_ids)
        self.name = name
        where = {"file": _file}

        def line(i: int) -> int | None:
            return _lines[i] if _lines is not None else None

        def column(values: Any, field: str, default: float) -> np.ndarray:
            if values is None:
                return np.full(n, default, dtype=np.float64)
            try:
                array = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ItemBankError(f"not numbers: {exc}", field=field, **where) from None
            if array.shape != (n,):
                raise ItemBankError(f"expected {n} values (one per item), got shape {array.shape}", field=field,
                                    **where)
            return array

        ids = [str(i).strip() for i in item_ids]
        seen: dict[str, int] = {}
        for i, item_id in enumerate(ids):
            if not item_id:
                raise ItemBankError(f"item number {i + 1} has an empty item_id", field="item_id", line=line(i),
                                    **where)
            if item_id in seen:
                first = seen[item_id]
                at = f"line {line(first)}" if line(first) is not None else f"item number {first + 1}"
                raise ItemBankError(f"duplicate item_id {item_id!r} (first at {at})", field="item_id",
                                    line=line(i), **where)
            seen[item_id] = i
        if n == 0:
            raise ItemBankError("the item bank has no items", field="item_id", **where)
        self.item_ids: tuple[str, ...] = tuple(ids)
        self._index = seen

        arrays = {"a": column(a, "a", 1.0), "b": column(b, "b", 0.0), "c": column(c, "c", 0.0),
                  "d": column(d, "d", 1.0), "exposure_limit": column(exposure_limits, "exposure_limit", 1.0)}
        for field, values in arrays.items():
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                i = int(bad[0])
                raise ItemBankError(f"item {ids[i]!r}: {field} is {values[i]} (must be a finite number)", field=field,
                                    line=line(i), **where)
        checks = (
            ("a", arrays["a"] <= 0, "discrimination a must be > 0"),
            ("c", (arrays["c"] < 0) | (arrays["c"] >= 1), "guessing c must be in [0, 1)"),
            ("d", (arrays["d"] <= arrays["c"]) | (arrays["d"] > 1), "upper asymptote d must be in (c, 1]"),
            ("exposure_limit", (arrays["exposure_limit"] <= 0) | (arrays["exposure_limit"] > 1),
             "exposure_limit must be in (0, 1]"),
        )
        for field, bad_mask, rule in checks:
            bad = np.flatnonzero(bad_mask)
            if bad.size:
                i = int(bad[0])
                raise ItemBankError(f"item {ids[i]!r}: {rule}, got {arrays[field][i]:g}", field=field,
                                    line=line(i), **where)
        self.a, self.b, self.c, self.d = (arrays[k] for k in "abcd")
        self.exposure_limits = arrays["exposure_limit"]
        for array in (self.a, self.b, self.c, self.d, self.exposure_limits):
            array.setflags(write=False)

        def per_item(values: Sequence[Any] | None, field: str) -> list[Any]:
            if values is None:
                return [None] * n
            values = list(values)
            if len(values) != n:
                raise ItemBankError(f"expected {n} entries (one per item), got {len(values)}", field=field, **where)
            return values

        self.concepts: tuple[tuple[str, ...], ...] = tuple(
            _split_list(v) if isinstance(v, str) or v is None else _split_list(_LIST_SEP.join(map(str, v)))
            for v in per_item(concepts, "concepts"))
        self.content_areas: tuple[str | None, ...] = tuple(
            (str(v).strip() or None) if v is not None else None for v in per_item(content_areas, "content_area"))
        raw_enemies = [
            _split_list(v) if isinstance(v, str) or v is None else _split_list(_LIST_SEP.join(map(str, v)))
            for v in per_item(enemies, "enemies")]
        linked: list[set[int]] = [set() for _ in range(n)]
        for i, names in enumerate(raw_enemies):
            for enemy in names:
                j = seen.get(enemy)
                if j is None:
                    raise ItemBankError(f"item {ids[i]!r}: enemy item {enemy!r} is not in the bank", field="enemies",
                                        line=line(i), **where)
                if j == i:
                    raise ItemBankError(f"item {ids[i]!r} lists itself as an enemy", field="enemies", line=line(i),
                                        **where)
                linked[i].add(j)
                linked[j].add(i)
        self.enemy_index: tuple[np.ndarray, ...] = tuple(np.array(sorted(s), dtype=np.intp) for s in linked)
        self.enemies: tuple[tuple[str, ...], ...] = tuple(tuple(ids[j] for j in s) for s in self.enemy_index)
        self._derive()

    # -- derived arrays --------------------------------------------------------------------

    def _derive(self) -> None:
        n = len(self.item_ids)
        c, d = self.c, self.d
        with np.errstate(divide="ignore"):
            self._log_c = np.log(c)
            self._log_1md = np.log1p(-d)
            self._log_dmc = np.log(d - c)
            self._log_1md_c3 = np.log1p(-c)
        self.model: Literal["1pl", "2pl", "3pl", "4pl"]
        if np.any(d < 1):
            self.model = "4pl"
        elif np.any(c > 0):
            self.model = "3pl"
        elif np.all(self.a == self.a[0]):
            self.model = "1pl"
        else:
            self.model = "2pl"
        self._a2 = self.a * self.a
        self._1mc = 1.0 - c
        self._a2_1mc = self._a2 * self._1mc
        self._simple = (c == 0) & (d == 1)
        concept_ids = sorted({k for ks in self.concepts for k in ks})
        self.concept_ids: tuple[str, ...] = tuple(concept_ids)
        where = {k: i for i, k in enumerate(concept_ids)}
        matrix = np.zeros((len(concept_ids), n), dtype=bool)
        for i, ks in enumerate(self.concepts):
            for k in ks:
                matrix[where[k], i] = True
        self.concept_matrix = matrix
        area_ids = sorted({k for k in self.content_areas if k is not None})
        self.area_ids: tuple[str, ...] = tuple(area_ids)
        area_where = {k: i for i, k in enumerate(area_ids)}
        area_matrix = np.zeros((len(area_ids), n), dtype=bool)
        for i, k in enumerate(self.content_areas):
            if k is not None:
                area_matrix[area_where[k], i] = True
        self.area_matrix = area_matrix
        self._fingerprint: str | None = None
        self._grid_cache: dict[tuple[float, float, int], tuple[np.ndarray, np.ndarray]] = {}
        self._derivative_cache: dict[tuple[float, float, int], tuple[np.ndarray, ...]] = {}

    def __len__(self) -> int:
        return len(self.item_ids)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"ItemBank{label}({len(self)} items, {self.model})"

    def index(self, item_id: str) -> int:
        """Position of ``item_id`` in the bank (``KeyError`` when it is not there)."""
        return self._index[item_id]

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the parameters and metadata: two banks with the same fingerprint give the same tests."""
        if self._fingerprint is None:
            payload = {
                "ids": list(self.item_ids),
                "params": [[float(x).hex() for x in arr] for arr in (self.a, self.b, self.c, self.d,
                                                                     self.exposure_limits)],
                "concepts": [list(k) for k in self.concepts],
                "areas": list(self.content_areas),
                "enemies": [list(e) for e in self.enemies],
            }
            self._fingerprint = hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()
        return self._fingerprint

    # -- response model, vectorised over the bank -----------------------------------------------

    def probability(self, theta: float, items: np.ndarray | slice | None = None) -> np.ndarray:
        """P(correct) at ``theta`` for every item (or the items at positions ``items``)."""
        sel = slice(None) if items is None else items
        return prob_correct(theta, self.a[sel], self.b[sel], self.c[sel], self.d[sel])

    def information(self, theta: float) -> np.ndarray:
        """Fisher information of every item at ``theta``."""
        s = expit(self.a * (theta - self.b))
        if self.model in ("1pl", "2pl"):
            return self._a2 * s * (1.0 - s)
        if self.model == "3pl":  # P'^2 / (P Q) with Q = (1 - c)(1 - s) simplifies to this
            return self._a2_1mc * s * s * (1.0 - s) / (self.c + self._1mc * s)
        return fisher_information(theta, self.a, self.b, self.c, self.d)

    def log_probability(self, theta: float) -> tuple[np.ndarray, np.ndarray]:
        """``(log P, log Q)`` of every item at ``theta``."""
        return log_prob_correct(theta, self.a, self.b, self._log_c, self._log_1md, self._log_dmc)

    def item_log_prob(self, item: int, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(log P, log Q)`` of one item at each ability node."""
        return log_prob_correct(nodes, self.a[item], self.b[item], self._log_c[item], self._log_1md[item],
                                self._log_dmc[item])

    def item_log_likelihood(self, item: int, correct: int, nodes: np.ndarray) -> np.ndarray:
        """Log-likelihood of one answer (1 = correct) to one item at each ability node."""
        z = self.a[item] * (nodes - self.b[item])
        if self._simple[item]:
            return log_expit(z) if correct else log_expit(-z)
        if self.d[item] == 1.0:  # 3PL: P >= c > 0, and Q = (1 - c)(1 - s)
            if correct:
                return np.log(self.c[item] + self._1mc[item] * expit(z))
            return self._log_1md_c3[item] + log_expit(-z)
        log_p, log_q = self.item_log_prob(item, nodes)
        return log_p if correct else log_q

    def grid_tables(self, nodes: np.ndarray, *, derivatives: bool = False) -> GridTables:
        """Every item's log-likelihood terms at every node, items × nodes (cached per grid); with
        ``derivatives`` also their first and second θ-derivatives and the item information."""
        log_p, log_q = self.log_prob_grid(nodes)
        if not derivatives:
            return GridTables(log_p, log_q)
        key = (float(nodes[0]), float(nodes[-1]), len(nodes))
        cached = self._derivative_cache.get(key)
        if cached is None:
            col = (slice(None), None)
            cached = grid_derivatives(nodes[None, :], self.a[col], self.b[col], self.c[col], self.d[col])
            self._derivative_cache[key] = cached
        return GridTables(log_p, log_q, *cached)

    def item_grid_derivatives(self, item: int, correct: int, nodes: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(score, curvature, information)`` of one answer to one item at each node."""
        dp, dq, d2p, d2q, info = grid_derivatives(nodes, self.a[item], self.b[item], self.c[item], self.d[item])
        return (dp, d2p, info) if correct else (dq, d2q, info)

    def log_prob_grid(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(log P, log Q)`` of every item at every node, items × nodes (cached per grid)."""
        key = (float(nodes[0]), float(nodes[-1]), len(nodes))
        cached = self._grid_cache.get(key)
        if cached is None:
            col = (slice(None), None)
            cached = log_prob_correct(nodes[None, :], self.a[col], self.b[col], self._log_c[col],
                                      self._log_1md[col], self._log_dmc[col])
            self._grid_cache[key] = cached
        return cached

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def from_csv(cls, path: str | Path, *, name: str | None = None) -> ItemBank:
        """Read a bank CSV with the columns of :data:`BANK_CSV_COLUMNS` (header required; lists ``;``-separated)."""
        path = Path(path)
        try:
            handle = path.open(newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise UnreadableFileError(f"cannot open the item bank: {exc.strerror or exc}", file=path) from None
        with handle:
            try:
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is None:
                    raise UnreadableFileError("the item bank file is empty", file=path)
                columns = [_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
                for required in ("item_id", "a", "b"):
                    if required not in columns:
                        raise ItemBankError(f"missing column {required!r} (have: {', '.join(columns)})",
                                            field=required, file=path, line=1)
                unknown = [h for h in columns if h not in BANK_CSV_COLUMNS]
                if unknown:
                    raise ItemBankError(f"unknown column(s) {', '.join(map(repr, unknown))}; known: "
                                        f"{', '.join(BANK_CSV_COLUMNS)}", field=unknown[0], file=path, line=1)
                position = {h: columns.index(h) for h in columns}
                values: dict[str, list[Any]] = {h: [] for h in columns}
                lines: list[int] = []
                for line_no, row in enumerate(reader, start=2):
                    if not any(cell.strip() for cell in row):
                        continue
                    if len(row) != len(columns):
                        raise ItemBankError(f"expected {len(columns)} fields, got {len(row)}", file=path,
                                            line=line_no)
                    item_id = row[position["item_id"]].strip()
                    for h, j in position.items():
                        cell = row[j].strip()
                        if h in ("a", "b", "c", "d", "exposure_limit"):
                            values[h].append(_number(cell, h, item_id, path, line_no))
                        else:
                            values[h].append(cell or None)
                    lines.append(line_no)
            except UnicodeDecodeError:
                raise UnreadableFileError("the item bank is not UTF-8 text", file=path) from None
        if not lines:
            raise ItemBankError("the item bank has no items", file=path, field="item_id")
        return cls(values["item_id"], values["a"], values["b"], values.get("c"), values.get("d"),
                   concepts=values.get("concepts"), content_areas=values.get("content_area"),
                   enemies=values.get("enemies"), exposure_limits=values.get("exposure_limit"),
                   name=name or path.stem, _lines=lines, _file=str(path))

    def to_csv(self, path: str | Path) -> Path:
        """Write the bank as a CSV that :meth:`from_csv` reads back to the same fingerprint."""
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(BANK_CSV_COLUMNS)
            for i, item_id in enumerate(self.item_ids):
                writer.writerow([item_id, repr(float(self.a[i])), repr(float(self.b[i])), repr(float(self.c[i])),
                                 repr(float(self.d[i])), _LIST_SEP.join(self.concepts[i]),
                                 self.content_areas[i] or "", _LIST_SEP.join(self.enemies[i]),
                                 repr(float(self.exposure_limits[i]))])
        return path

    @classmethod
    def generate(
        cls,
        n: int,
        *,
        model: Literal["1pl", "2pl", "3pl"] = "2pl",
        a_dist: Literal["lognormal", "uniform"] = "lognormal",
        seed: int = 0,
        concepts: int = 0,
        content_areas: int = 0,
    ) -> ItemBank:
        """A simulated bank: ``b ~ N(0, 1)``; ``a ~ lognormal(0, 0.25)`` or ``U(0.5, 2)`` (1PL: ``a = 1``);
        3PL ``c ~ U(0.1, 0.25)``; optionally each item tagged with one of ``concepts`` concepts and one of
        ``content_areas`` areas drawn uniformly. Same arguments, same bank."""
        if n < 1:
            raise ItemBankError(f"a bank needs at least one item, got {n}", field="bank_size")
        if model not in ("1pl", "2pl", "3pl"):
            raise ItemBankError(f"unknown model {model!r}; use 1pl, 2pl or 3pl", field="model")
        if a_dist not in ("lognormal", "uniform"):
            raise ItemBankError(f"unknown a distribution {a_dist!r}; use lognormal or uniform", field="a_dist")
        rng = np.random.default_rng(seed)
        b = rng.normal(0.0, 1.0, n)
        if model == "1pl":
            a = np.ones(n)
        elif a_dist == "lognormal":
            a = rng.lognormal(0.0, 0.25, n)
        else:
            a = rng.uniform(0.5, 2.0, n)
        c = rng.uniform(0.1, 0.25, n) if model == "3pl" else np.zeros(n)
        width = len(str(n))
        ids = [f"i{k:0{width}d}" for k in range(1, n + 1)]
        tags = ([(f"concept-{k + 1}",) for k in rng.integers(0, concepts, n)] if concepts > 0 else None)
        areas = ([f"area-{k + 1}" for k in rng.integers(0, content_areas, n)] if content_areas > 0 else None)
        return cls(ids, a, b, c, concepts=tags, content_areas=areas,
                   name=f"simulated-{model}-{a_dist}-{n}-seed{seed}")

    @classmethod
    def from_lake(cls, lake: Lake, model: str = "2pl", *, tenant: str | None = None, **irt_params: Any) -> ItemBank:
        """Calibrate the items of the lake's interactions (of one ``tenant``, or all) with knowtrace's
        ``irt`` model (``model`` = rasch/1pl/2pl/3pl/4pl; ``irt_params`` go to ``IRT``, e.g.
        ``estimator="mml"``, ``prior_b_sd=3``). Items keep the concepts the lake tags them with;
        items calibration leaves out (all answers right or all wrong) are not in the bank."""
        from knowtrace.models.irt import IRT  # lazy: calibration pulls in the learner-model stack

        data: Any = lake
        if tenant is not None:
            data = lake.query("SELECT * FROM interactions WHERE tenant = ? ORDER BY learner_id, position", [tenant])
            if data.num_rows == 0:
                raise ItemBankError(f"the lake has no answers for tenant {tenant!r}", field="tenant")
        irt = IRT(model=model, **irt_params).fit(data)
        return cls.from_irt(irt, name=f"lake-{tenant or 'all'}-{model}")

    @classmethod
    def from_irt(cls, irt: Any, *, name: str | None = None) -> ItemBank:
        """The bank of a fitted ``knowtrace.models.irt.IRT`` model (its items, parameters and concepts)."""
        params = irt.item_parameters()
        ids = [str(i) for i in params.item_ids.tolist()]
        item_concepts: Mapping[str, tuple[str, ...]] = getattr(irt, "item_concepts_", {}) or {}
        return cls(ids, params.a, params.b, params.c, params.d, concepts=[item_concepts.get(i, ()) for i in ids],
                   name=name or f"irt-{getattr(irt, 'model', '')}")


def _number(cell: str, field: str, item_id: str, path: Path, line: int) -> float:
    if cell == "":
        if field in ("a", "b"):
            raise ItemBankError(f"item {item_id!r}: {field} is empty", field=field, file=path, line=line)
        return {"c": 0.0, "d": 1.0, "exposure_limit": 1.0}[field]
    try:
        value = float(cell)
    except ValueError:
        raise ItemBankError(f"item {item_id!r}: {field} is not a number: {cell!r}", field=field, file=path,
                            line=line) from None
    if math.isnan(value):
        raise ItemBankError(f"item {item_id!r}: {field} is NaN", field=field, file=path, line=line)
    return value
