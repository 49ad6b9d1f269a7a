"""Append builds: a day's new answers added to silver and gold without rewriting the key-range parts.

When every new answer comes after its learner's earlier answers and carries an event id never seen
before (the usual daily load: new answers in time order), the new loads change no earlier row of silver
``interactions``: they only add rows. An append build then

1. reads, of the new loads' learners only, the few columns it needs of their earlier answers: the last
   answer of each (what orders and positions the new ones) and the items and concepts they answered;
2. runs the silver SQL over those last answers and the new bronze rows, and checks that each learner's
   last answer stays first (otherwise it gives up, and the caller builds another way); the new rows'
   positions continue from it;
3. writes the new rows as a delta file of ``interactions``, and the other keyed tables' SQL over the new
   rows as their delta files, which their merge rules combine with the earlier rows when read
   (``knowtrace.lake.overlay``);
4. adds one unit of partial rows for the aggregate tables (``append_partial`` of each rule, which
   knows the learners' earlier items and concepts) and combines the tables as an incremental build does.

The parts, the earlier deltas and the partial files are hard links of the previous build's. Appended
rows are folded back into the parts by the next full build, which runs when they pass
``MAX_DELTA_SHARE`` of the lake, when a load is not an append, or when asked (``knowtrace lake rebuild``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from knowtrace.lake.aggregates import merge_rule_for
from knowtrace.lake.event_index import EventIndex, IndexUpdate
from knowtrace.lake.files import link_or_copy, quote_path
from knowtrace.lake.learner_index import index_files, index_sql, update_learner_index
from knowtrace.lake.engine import register_source
from knowtrace.lake.overlay import Deltas, chunks_sql, delta_file, key_order, merge_rule
from knowtrace.lake.parts import Part
from knowtrace.lake.transforms import TransformStep

if TYPE_CHECKING:
    from knowtrace.lake.incremental import BronzeFiles, BuildResult, PartitionedBuilder, PreviousBuild

__all__ = ["MAX_DELTA_FILES", "MAX_DELTA_SHARE", "append_build"]

#: more delta files than this per keyed table are merged into one
MAX_DELTA_FILES = 8
#: appended rows beyond this share of the rows in parts: the next build is a full one (it folds them in)
MAX_DELTA_SHARE = 0.25
_WRITE = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"


def _files_sql(files: Sequence[Path]) -> str:
    return "[" + ", ".join(f"'{quote_path(f)}'" for f in files) + "]"


def append_build(builder: PartitionedBuilder, con: duckdb.DuckDBPyConnection, bronze: BronzeFiles,
                 loads: Sequence[str], new_loads: Sequence[str], out: Path, previous: PreviousBuild,
                 update: IndexUpdate, index: EventIndex, shared_rows: int,
                 on_step: Callable[[TransformStep, int], None] | None) -> BuildResult | str:
    """Build ``out`` from ``previous`` by appending the rows of ``new_loads``; a reason (str) when the new
    loads are not an append and nothing was written."""
    from knowtrace.lake.incremental import BuildResult

    layout = previous.info["layout"]
    parts = [Part.from_json(p) for p in layout["parts"]]
    deltas = Deltas.from_layout(layout)
    primary, *others = builder.keyed
    why = _why_not(builder, update, parts, deltas, primary, previous)
    if why is not None:
        return why
    added, known = 0, 0
    if update.new_learners:
        outcome = _recompute(con, bronze, new_loads, previous, update, deltas, primary)
        if isinstance(outcome, str):
            return outcome
        added, known = outcome

    # the new build: parts and earlier deltas as links, then this build's deltas
    for step in builder.keyed:
        for n in range(len(parts)):
            name = f"part-{n:05d}.parquet"
            link_or_copy(previous.folder / step.layer / step.table / name, out / step.layer / step.table / name)
        for name in deltas.files.get(step.table, []):
            link_or_copy(delta_file(previous.folder, step.table, name), delta_file(out, step.table, name))
    new_deltas = Deltas({t: list(f) for t, f in deltas.files.items()}, list(deltas.units), deltas.rows + added)
    partials: dict[str, list[dict[str, Any]]] = {table: [] for table in builder.rules}
    if update.new_learners:
        name = f"{out.name}.parquet"
        order = key_order(primary)
        _write(con, f"SELECT * FROM __kt_added ORDER BY {order}", delta_file(out, primary.table, name))
        new_deltas.files.setdefault(primary.table, []).append(name)
        con.execute(f"CREATE OR REPLACE VIEW {primary.table} AS SELECT * FROM __kt_added")
        for step in others:
            file = delta_file(out, step.table, name)
            _write(con, step.sql, file)
            new_deltas.files.setdefault(step.table, []).append(name)
            register_source(con, step.table, [file])
        for step in builder.keyed:
            _merge_deltas(con, out, step, new_deltas, primary=step is primary)
        new_deltas.units.append(f"{out.name}:append")
        partials = _append_partials(builder, con, out, new_deltas.units[-1])
        learner_index = update_learner_index(con, previous.folder, index_files(layout), out,
                                             "(SELECT * EXCLUDE (last) FROM __kt_learners)", "__kt_added")
    else:
        learner_index = update_learner_index(con, previous.folder, index_files(layout), out)
    alive = {p.uid for p in parts} | set(new_deltas.units)
    partials = builder._carry_partials(con, previous, layout["partials"], partials, alive, out)
    builder._register_bronze(con, bronze, loads, skip=("interactions",))
    builder._register_keyed_files(con, out, new_deltas)
    rows = previous.info.get("rows", {})
    counts = {primary.table: int(rows.get(primary.table, 0)) + added}
    for step in others:  # one row per learner (their merge rules group by learner)
        counts[step.table] = int(rows.get(step.table, 0)) + len(update.new_learners) - known
    if on_step is not None:
        for step in builder.keyed:
            on_step(step, counts[step.table])
    counts |= builder._write_others(con, out, on_step, partials=partials, deltas=new_deltas,
                                    appended=(previous.folder, "__kt_added") if update.new_learners else None)
    index.compact()
    learners = len(update.new_learners)
    return BuildResult(builder._ordered(counts), {
        "kind": "incremental",
        "incremental": {"mode": "append", "from_build": previous.info.get("build_id"), "new_loads": len(new_loads),
                        "learners": learners, "learners_known": known, "rows_appended": added,
                        "parts_touched": 0, "parts_rebuilt": 0, "parts_kept": len(parts)},
        "layout": builder._layout(parts, int(layout["part_rows"]), index.info(shared_rows), partials, new_deltas,
                                  learner_index)})


def _recompute(con: duckdb.DuckDBPyConnection, bronze: BronzeFiles, new_loads: Sequence[str],
               previous: PreviousBuild, update: IndexUpdate, deltas: Deltas,
               primary: TransformStep) -> tuple[int, int] | str:
    """The new rows of the first keyed table (``__kt_added``) and the items and concepts of their learners'
    earlier answers (``__kt_earlier_items``, ``__kt_earlier_concepts``): (rows added, learners with earlier
    answers), or why the loads are not an append."""
    new_files = [f for load in new_loads for f in bronze.get("interactions", {}).get(load, ())]
    con.register("__kt_touched_arrow", pa.table({"tenant": [k[0] for k in update.new_learners],
                                                 "learner_id": [k[1] for k in update.new_learners]}))
    index = index_sql(previous.folder, index_files(previous.info["layout"]), learners="__kt_touched_arrow")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __kt_learners AS {index}")
    con.execute("CREATE OR REPLACE TEMP VIEW __kt_last AS SELECT tenant, learner_id, position, unnest(last) "
                "FROM __kt_learners")
    con.execute("CREATE OR REPLACE TEMP VIEW __kt_earlier_items AS "
                "SELECT tenant, learner_id, unnest(items) AS item_id FROM __kt_learners")
    con.execute("CREATE OR REPLACE TEMP VIEW __kt_earlier_concepts AS "
                "SELECT tenant, learner_id, unnest(concepts) AS concept_id FROM __kt_learners")
    # each learner's last answer stands in for the earlier ones: whatever the SQL ranks after it, it ranks
    # after all of them (its other columns are not needed: it is not kept)
    con.execute(f"""CREATE OR REPLACE VIEW bronze_interactions AS
        SELECT * EXCLUDE (position), NULL::BIGINT AS source_line FROM __kt_last
        UNION ALL BY NAME
        SELECT * FROM read_parquet({_files_sql(new_files)}, union_by_name = true)""")
    con.execute(f"CREATE OR REPLACE TEMP TABLE __kt_rows AS {primary.sql}")
    displaced = int(con.execute("""
        SELECT count(*) FROM __kt_last AS l ANTI JOIN __kt_rows AS r
        ON r.tenant = l.tenant AND r.learner_id = l.learner_id AND r.event_id = l.event_id AND r.position = 0
        """).fetchall()[0][0])
    if displaced:
        return f"{displaced} learners have new answers that come before their last one"
    new_list = ", ".join(f"'{load}'" for load in new_loads)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __kt_added AS
        SELECT r.* REPLACE (r.position + coalesce(l.position, 0) AS position)
        FROM __kt_rows AS r LEFT JOIN __kt_last AS l ON l.tenant = r.tenant AND l.learner_id = r.learner_id
        WHERE r.load_id IN ({new_list})
        ORDER BY {key_order(primary)}""")
    added = int(con.execute("SELECT count(*) FROM __kt_added").fetchall()[0][0])
    known = int(con.execute("SELECT count(*) FROM __kt_learners").fetchall()[0][0])
    return added, known


def _why_not(builder: PartitionedBuilder, update: IndexUpdate, parts: Sequence[Part], deltas: Deltas,
             primary: TransformStep, previous: PreviousBuild) -> str | None:
    if not index_files(previous.info["layout"]):
        return "the previous build has no learner index"
    if update.old_hits:
        return f"{update.old_hits} new answers carry the event id of an earlier answer"
    missing = sorted(table for table, rule in builder.rules.items() if rule.append_partial is None)
    missing += [step.table for step in builder.keyed[1:] if merge_rule_for(step) is None]
    if missing:
        return f"no append rule for {', '.join(missing)}"
    in_parts = sum(p.rows.get(primary.table, 0) for p in parts)
    if deltas.rows + update.new_rows > MAX_DELTA_SHARE * max(in_parts, 1):
        return (f"appended rows would be over {MAX_DELTA_SHARE:.0%} of the rows in parts "
                "(a full build folds them in)")
    return None


def _write(con: duckdb.DuckDBPyConnection, sql: str, file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    con.execute(f"COPY ({sql}) TO '{quote_path(file)}' ({_WRITE})")


def _merge_deltas(con: duckdb.DuckDBPyConnection, out: Path, step: TransformStep, deltas: Deltas, *,
                  primary: bool) -> None:
    """Merge a table's delta files into one when there are too many (the newest row of a learner wins)."""
    names = deltas.files.get(step.table, [])
    if len(names) <= MAX_DELTA_FILES:
        return
    merged = f"{out.name}-merged.parquet"
    files = [delta_file(out, step.table, name) for name in names]
    if primary:  # appended rows: all of them
        source = f"SELECT * FROM read_parquet({_files_sql(files)}, union_by_name = true) ORDER BY {key_order(step)}"
    else:  # slices of the same learners: one row each, by the merge rule
        source = (f"WITH __chunks AS ({chunks_sql(step, files, first=1)}) SELECT * FROM ({merge_rule(step).merge}) "
                  f"AS merged ORDER BY {key_order(step)}")
    _write(con, source, delta_file(out, step.table, merged))
    for name in names:
        delta_file(out, step.table, name).unlink()
    deltas.files[step.table] = [merged]


def _append_partials(builder: PartitionedBuilder, con: duckdb.DuckDBPyConnection, out: Path,
                     uid: str) -> dict[str, list[dict[str, Any]]]:
    """The partial rows of the appended answers, as one unit ``uid``."""
    from knowtrace.lake.incremental import PARTIALS_DIR

    con.execute(f"CREATE OR REPLACE VIEW interactions AS SELECT *, '{uid}' AS __part FROM __kt_added")
    con.execute("CREATE OR REPLACE VIEW earlier_items AS SELECT * FROM __kt_earlier_items")
    con.execute("CREATE OR REPLACE VIEW earlier_concepts AS SELECT * FROM __kt_earlier_concepts")
    written: dict[str, list[dict[str, Any]]] = {}
    for table, rule in builder.rules.items():
        file = out / PARTIALS_DIR / table / f"{out.name}-append.parquet"
        file.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY ({rule.append_partial}) TO '{quote_path(file)}' (FORMAT parquet, COMPRESSION zstd)")
        written[table] = [{"file": file.name, "parts": [uid]}]
    return written
