"""Incremental rules of the aggregate tables: partial rows per part, and how they combine into the table.

A full build computes every aggregate table with its SQL file, and also the partial rows of each part
(the learners of a part, see ``knowtrace.lake.parts``). An incremental build recomputes the partial
rows of the parts it rebuilds only, and combines them with the kept parts' partial rows into the
table. A rule holds for one SQL text: it names the SHA-256 of the SQL file it reproduces, and a table
whose SQL file changed is computed by its SQL file again (correct, not incremental) until the rule is
updated; ``tests/lake/test_incremental_build.py`` checks rule against SQL file on every build it makes.

What makes the rules exact: parts hold disjoint learners, so per-part counts of distinct learners add
up; counts and integer sums add up; sets (concepts of an item, items of a concept) unite; averages of
integers are their summed sum over their summed count, as DuckDB computes them (``double(sum) /
double(count)``); medians are taken over the same values. One exception: an average of floating
point numbers (``mean_score``) sums in another order, so it may differ in the last bits -- as two
multi-threaded runs of the SQL file may.

Append builds (``knowtrace.lake.appender``) add the new answers of learners as one more unit: its partial
rows come from ``append_partial``, run over the new answers (``interactions``) and what the same learners
answered before (``earlier_items``: tenant, learner_id, item_id; ``earlier_concepts``: tenant,
learner_id, concept_id; distinct rows), so that a learner already counted for an item or a concept by
another unit is not counted twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeVar

from knowtrace.lake.medians import MedianRule
from knowtrace.lake.transforms import TransformStep

__all__ = ["MEDIAN_RULES", "MERGE_RULES", "PARTIAL_RULES", "MergeRule", "PartialRule", "merge_rule_for", "rule_for"]


@dataclass(frozen=True)
class PartialRule:
    """How to maintain one aggregate table from per-part partial rows.

    ``partial``: SQL over ``interactions`` (with a ``__part`` column naming each row's part) giving
    the partial rows, grouped by ``__part`` first. ``combine``: SQL over ``__partials`` (the partial
    rows of every part, and ``__medians`` for a table with a ``MEDIAN_RULES`` entry) giving the table; or, when ``reduced_input`` is set, the step's own SQL file
    run with ``interactions`` replaced by that view over ``__partials`` (for a table whose SQL
    reads answers only as sets).
    """

    table: str
    sql_sha256: str
    partial: str
    combine: str | None = None
    reduced_input: str | None = None
    append_partial: str | None = None


_Rule = TypeVar("_Rule", "PartialRule", "MergeRule")


def _by_table(*rules: _Rule) -> dict[str, _Rule]:
    return {rule.table: rule for rule in rules}


PARTIAL_RULES: dict[str, PartialRule] = _by_table(
        PartialRule(
            table="items",
            sql_sha256="601a1451ab8254c8dce81b2a3d148763f17abc1bde401dd3b1d998300c904e28",
            partial="""
                SELECT __part, tenant, item_id, list_sort(list_distinct(flatten(list(concept_ids)))) AS concept_ids
                FROM (SELECT DISTINCT __part, tenant, item_id, concept_ids FROM interactions) AS distinct_lists
                GROUP BY __part, tenant, item_id""",
            # the item catalog reads answers only for the set of concepts of each item
            reduced_input="SELECT tenant, item_id, concept_ids FROM __partials",
            # sets only: the new answers' sets unite with the others
            append_partial="""
                SELECT __part, tenant, item_id, list_sort(list_distinct(flatten(list(concept_ids)))) AS concept_ids
                FROM (SELECT DISTINCT __part, tenant, item_id, concept_ids FROM interactions) AS distinct_lists
                GROUP BY __part, tenant, item_id""",
        ),
        PartialRule(
            table="item_stats",
            sql_sha256="192610c85da912f7ca474f81a42c24ea3ba11ae0934aadcceef813581d6c5a80",
            partial="""
                SELECT __part, tenant, item_id,
                    count(*) AS n_answers,
                    count(DISTINCT learner_id) AS n_learners,
                    sum(correct) AS sum_correct, count(correct) AS n_correct,
                    sum(score) AS sum_score, count(score) AS n_score,
                    sum(correct) FILTER (WHERE coalesce(attempt, 1) = 1) AS first_sum_correct,
                    count(correct) FILTER (WHERE coalesce(attempt, 1) = 1) AS first_n_correct,
                    list(elapsed_ms) FILTER (WHERE elapsed_ms IS NOT NULL) AS elapsed_ms
                FROM interactions GROUP BY __part, tenant, item_id""",
            # the medians come from the windows of MEDIAN_RULES (knowtrace.lake.medians)
            combine="""
                SELECT
                    tenant, item_id,
                    sum(n_answers)::BIGINT AS n_answers,
                    sum(n_learners)::BIGINT AS n_learners,
                    CASE WHEN sum(n_correct) > 0 THEN sum(sum_correct)::DOUBLE / sum(n_correct)::DOUBLE END
                        AS correct_rate,
                    CASE WHEN sum(n_score) > 0 THEN sum(sum_score) / sum(n_score)::DOUBLE END AS mean_score,
                    CASE WHEN sum(first_n_correct) > 0
                        THEN sum(first_sum_correct)::DOUBLE / sum(first_n_correct)::DOUBLE END
                        AS first_attempt_correct_rate,
                    any_value(m.median) AS median_elapsed_ms
                FROM __partials LEFT JOIN __medians AS m USING (tenant, item_id)
                GROUP BY tenant, item_id
                ORDER BY tenant, item_id""",
            append_partial="""
                SELECT __part, tenant, item_id,
                    count(*) AS n_answers,
                    count(DISTINCT learner_id) FILTER (WHERE NOT __seen) AS n_learners,
                    sum(correct) AS sum_correct, count(correct) AS n_correct,
                    sum(score) AS sum_score, count(score) AS n_score,
                    sum(correct) FILTER (WHERE coalesce(attempt, 1) = 1) AS first_sum_correct,
                    count(correct) FILTER (WHERE coalesce(attempt, 1) = 1) AS first_n_correct,
                    list(elapsed_ms) FILTER (WHERE elapsed_ms IS NOT NULL) AS elapsed_ms
                FROM (SELECT answers.*, seen.item_id IS NOT NULL AS __seen
                      FROM interactions AS answers
                      LEFT JOIN earlier_items AS seen
                      ON seen.tenant = answers.tenant AND seen.learner_id = answers.learner_id
                         AND seen.item_id = answers.item_id) AS marked
                GROUP BY __part, tenant, item_id""",
        ),
        PartialRule(
            table="concept_stats",
            sql_sha256="b59377d7d7a707f099b5026b0e4b3e09e8ac7df7b5dacd5135db5078f36fc667",
            partial="""
                SELECT __part, tenant, concept_id,
                    count(*) AS n_answers,
                    count(DISTINCT learner_id) AS n_learners,
                    list(DISTINCT item_id) AS item_ids,
                    sum(correct) AS sum_correct, count(correct) AS n_correct
                FROM (SELECT __part, tenant, learner_id, item_id, correct, unnest(concept_ids) AS concept_id
                      FROM interactions) AS tagged
                GROUP BY __part, tenant, concept_id""",
            combine="""
                SELECT
                    tenant, concept_id,
                    sum(n_answers)::BIGINT AS n_answers,
                    sum(n_learners)::BIGINT AS n_learners,
                    len(list_distinct(flatten(list(item_ids))))::BIGINT AS n_items,
                    CASE WHEN sum(n_correct) > 0 THEN sum(sum_correct)::DOUBLE / sum(n_correct)::DOUBLE END
                        AS correct_rate
                FROM __partials
                GROUP BY tenant, concept_id
                ORDER BY tenant, concept_id""",
            append_partial="""
                SELECT __part, tenant, concept_id,
                    count(*) AS n_answers,
                    count(DISTINCT learner_id) FILTER (WHERE NOT __seen) AS n_learners,
                    list(DISTINCT item_id) AS item_ids,
                    sum(correct) AS sum_correct, count(correct) AS n_correct
                FROM (SELECT tagged.*, seen.concept_id IS NOT NULL AS __seen
                      FROM (SELECT __part, tenant, learner_id, item_id, correct, unnest(concept_ids) AS concept_id
                            FROM interactions) AS tagged
                      LEFT JOIN earlier_concepts AS seen
                      ON seen.tenant = tagged.tenant AND seen.learner_id = tagged.learner_id
                         AND seen.concept_id = tagged.concept_id) AS marked
                GROUP BY __part, tenant, concept_id""",
        ),
)


#: medians of the aggregate tables kept as windows (``knowtrace.lake.medians``), by table
MEDIAN_RULES: dict[str, MedianRule] = {"item_stats": MedianRule("item_stats", ("tenant", "item_id"), "elapsed_ms")}


@dataclass(frozen=True)
class MergeRule:
    """How rows of a keyed table computed from successive slices of its learners' answers combine into the
    row a full build gives (``knowtrace.lake.overlay``): ``merge`` is SQL over ``__chunks`` (the rows, each
    with ``__chunk``, the order of its slice) giving one row per learner, columns in the table's order."""

    table: str
    sql_sha256: str
    merge: str


MERGE_RULES: dict[str, MergeRule] = _by_table(
        MergeRule(
            table="learner_sequences",
            sql_sha256="f4c2792c4f6b71f9f4095578a792bf66351b3e89c102e49498c50a5c4248cc57",
            # counts and sums add up (sum of a slice without a known outcome is NULL, as over all answers);
            # lists ordered by position are the slices' lists one after the other
            merge="""
                SELECT tenant, learner_id,
                    sum(n_answers)::BIGINT AS n_answers,
                    sum(n_correct) AS n_correct,
                    flatten(list(item_ids ORDER BY __chunk)) AS item_ids,
                    flatten(list(corrects ORDER BY __chunk)) AS corrects,
                    flatten(list(concept_ids ORDER BY __chunk)) AS concept_ids,
                    min(first_timestamp) AS first_timestamp,
                    max(last_timestamp) AS last_timestamp
                FROM __chunks
                GROUP BY tenant, learner_id""",
        ),
)


def merge_rule_for(step: TransformStep) -> MergeRule | None:
    """The merge rule of ``step``'s table, if it reproduces ``step``'s current SQL."""
    return _current(MERGE_RULES, step)


def sql_sha256(step: TransformStep) -> str:
    return hashlib.sha256(step.sql.encode("utf-8")).hexdigest()


def rule_for(step: TransformStep) -> PartialRule | None:
    """The rule of ``step``'s table, if it reproduces ``step``'s current SQL."""
    return _current(PARTIAL_RULES, step)


def _current(rules: dict[str, _Rule], step: TransformStep) -> _Rule | None:
    rule = rules.get(step.table)
    return rule if rule is not None and rule.sql_sha256 == sql_sha256(step) else None
