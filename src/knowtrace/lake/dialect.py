"""The lake's DuckDB SQL as Spark SQL: sqlglot's transpiler, plus rewrites where a construct maps to a
Spark function that means something else (so that both engines compute the same tables)."""

from __future__ import annotations

from collections.abc import Callable

import sqlglot
from sqlglot import exp

from knowtrace.exceptions import LakeError

__all__ = ["REWRITES", "DialectError", "duckdb_to_spark"]


class DialectError(LakeError):
    """A DuckDB construct the Spark translation does not support."""


def duckdb_to_spark(sql: str) -> str:
    """``sql`` (one DuckDB statement) as Spark SQL with the same meaning."""
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise DialectError(f"cannot parse the DuckDB SQL: {exc}") from exc
    for rewrite in REWRITES:
        tree = rewrite(tree)
    try:
        return tree.sql(dialect="spark", pretty=True, unsupported_level=sqlglot.ErrorLevel.RAISE)
    except sqlglot.errors.UnsupportedError as exc:
        raise DialectError(f"no Spark translation: {exc}") from exc


def _template(spark_sql: str, **parts: exp.Expression) -> exp.Expression:
    """The Spark expression ``spark_sql`` with each column named like a key of ``parts`` replaced by its value."""
    tree = sqlglot.parse_one(spark_sql, read="spark")

    def fill(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name in parts:
            return parts[node.name].copy()
        return node

    return tree.transform(fill)


def list_aggregate(tree: exp.Expression) -> exp.Expression:
    """DuckDB ``list(x [ORDER BY k, ...])`` keeps NULL elements and follows its ORDER BY; Spark's
    ``collect_list`` drops NULLs and has no order. Collect structs instead (never NULL), sort them by
    the keys where there are any, and keep the values:
    ``transform(array_sort(collect_list(struct(k IS NULL, k, ..., x))), e -> e.value)``."""
    for node in list(tree.find_all(exp.ArrayAgg)):
        value = node.this
        keys: list[exp.Ordered] = []
        if isinstance(value, exp.Order):
            keys = [k if isinstance(k, exp.Ordered) else exp.Ordered(this=k) for k in value.expressions]
            value = value.this
        if isinstance(value, exp.Distinct):
            raise DialectError(f"no Spark translation for list(DISTINCT ...): {node.sql('duckdb')}")
        fields: list[str] = []
        parts: dict[str, exp.Expression] = {"__value": value}
        for n, key in enumerate(keys):
            if key.args.get("desc"):
                raise DialectError(f"no Spark translation for list(... ORDER BY ... DESC): {node.sql('duckdb')}")
            # ascending struct order puts false before true: NULL keys last unless NULLS FIRST
            null_test = "IS NOT NULL" if key.args.get("nulls_first") else "IS NULL"
            fields += [f"__k{n} {null_test} AS __n{n}", f"__k{n} AS __k{n}"]
            parts[f"__k{n}"] = key.this
        collected = _template(f"COLLECT_LIST(STRUCT({', '.join([*fields, '__value AS __value'])}))", **parts)
        outer: exp.Expression = node
        if isinstance(node.parent, (exp.Filter, exp.Window)) and node.arg_key == "this":
            # a FILTER (WHERE ...) or OVER (...) applies to the inner collect_list
            outer = node.parent
            wrapper = outer.copy()
            wrapper.set("this", collected)
            collected = wrapper
        if keys:
            collected = exp.ArraySort(this=collected)
        outer.replace(_template("TRANSFORM(__collected, __entry -> __entry.__value)", __collected=collected))
    return tree


def list_distinct(tree: exp.Expression) -> exp.Expression:
    """DuckDB ``list_distinct`` drops NULLs; Spark's ``array_distinct`` keeps one: compact it."""
    for node in list(tree.find_all(exp.ArrayDistinct)):
        node.replace(exp.ArrayCompact(this=node.copy()))
    return tree


def flatten(tree: exp.Expression) -> exp.Expression:
    """DuckDB ``flatten`` skips NULL inner lists; Spark's returns NULL for the whole: filter them out."""
    for node in list(tree.find_all(exp.Flatten)):
        node.set("this", _template("FILTER(__lists, __list -> __list IS NOT NULL)", __lists=node.this))
    return tree


#: applied in order to the parsed DuckDB statement before it is written as Spark SQL
REWRITES: tuple[Callable[[exp.Expression], exp.Expression], ...] = (list_aggregate, list_distinct, flatten)
