"""Partitioned DuckDB builds of silver and gold, full or incremental.

The learner-keyed tables (``KEYED_TABLES``: silver ``interactions``, gold ``learner_sequences``) are
written as part files, each holding the learners of one key range (``knowtrace.lake.parts``) in the
order the SQL gives them: reading a table's parts in name order reads exactly the rows, in exactly
the order, that one file of an unpartitioned build holds. ``build.json`` records the parts.

After new loads, a build recomputes only the parts that hold a learner of the new loads (or a
learner tied to one by a shared event id, see ``knowtrace.lake.event_index``): it runs the same SQL
files over every bronze row of those parts' key ranges, and hard-links the other parts from the
previous build. The other tables aggregate over all learners: those with a rule in
``knowtrace.lake.aggregates`` are combined from per-part partial rows (only the rebuilt parts' are
computed), the others recomputed by their SQL over the new parts. A full build runs when there is no usable previous build (none, another engine or layout, other
transforms, another DuckDB, loads removed) or when the new loads touch too much of the lake.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from knowtrace.exceptions import LakeError
from knowtrace.lake.aggregates import MEDIAN_RULES, PartialRule, rule_for
from knowtrace.lake.appender import append_build
from knowtrace.lake.engine import DuckDBEngine, register_source
from knowtrace.lake.event_index import EventIndex
from knowtrace.lake.files import link_or_copy, quote_path
from knowtrace.lake.learner_index import write_learner_index
from knowtrace.lake.medians import write_medians
from knowtrace.lake.overlay import Deltas, keyed_source
from knowtrace.lake.part_writer import NotOrderedByLearner, Piece, write_cut, write_per_part
from knowtrace.lake.parts import Key, Part, interval_filters, part_of, runs_of, target_part_rows
from knowtrace.lake.transforms import SILVER_AND_GOLD, TransformStep

__all__ = ["KEYED_TABLES", "LAYOUT_VERSION", "BuildResult", "PartitionedBuilder", "PreviousBuild", "layout_signature"]

#: Tables written in key-range parts, in build order. What makes a partial build exact: each row belongs to
#: one learner (``tenant``, ``learner_id``), the table is ordered by that key first, and a learner's rows
#: depend only on that learner's bronze rows -- plus, for ``interactions``, the bronze rows that share one of
#: its event ids -- and on earlier keyed tables. A transform that breaks this must leave this list.
KEYED_TABLES = ("interactions", "learner_sequences")
LAYOUT_VERSION = 1
#: an incremental build that would recompute more than this share of the rows rebuilds everything instead
MAX_INCREMENTAL_SHARE = 0.5
#: more partial-row files than this per aggregate table are merged into one (a build adds one)
MAX_PARTIAL_FILES = 16
PARTIALS_DIR = "_partials"
#: rebuilt parts are first written in this folder of the build, then renamed into their place
_FRESH = "_fresh"
_WRITE = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880"
#: bronze Parquet files: table -> load id -> files
BronzeFiles = Mapping[str, Mapping[str, Sequence[Path]]]


@dataclass(frozen=True)
class PreviousBuild:
    """The build a new one may start from: its folder and its ``build.json``."""

    folder: Path
    info: dict[str, Any]


@dataclass
class BuildResult:
    """Rows per table, and what to add to ``build.json`` (kind, layout, what was reused)."""

    counts: dict[str, int]
    info: dict[str, Any]


class _Unpartitionable(Exception):
    """A keyed table's SQL output is not ordered by learner: it cannot be cut into key-range parts."""


def layout_signature(steps: Sequence[TransformStep]) -> str:
    """A hash of the transforms: parts built by other SQL are not reused."""
    digest = hashlib.sha256()
    for step in steps:
        digest.update(f"{step.layer}.{step.table}\n{step.sql}\n".encode())
    return digest.hexdigest()


def _files_sql(files: Sequence[Path]) -> str:
    return "[" + ", ".join(f"'{quote_path(f)}'" for f in files) + "]"


def _part_file(folder: Path, step: TransformStep, index: int) -> Path:
    return folder / step.layer / step.table / f"part-{index:05d}.parquet"


class PartitionedBuilder:
    """Builds silver and gold into a build folder with ``engine``'s DuckDB settings."""

    def __init__(self, engine: DuckDBEngine, steps: Sequence[TransformStep] = SILVER_AND_GOLD,
                 empty_bronze: Mapping[str, pa.Schema] | None = None) -> None:
        self.engine = engine
        self.steps = tuple(steps)
        self.keyed = [s for s in self.steps if s.table in KEYED_TABLES]
        self.other = [s for s in self.steps if s.table not in KEYED_TABLES]
        self.rules: dict[str, PartialRule] = {s.table: r for s in self.other if (r := rule_for(s)) is not None}
        self.empty_bronze = dict(empty_bronze or {})
        self.signature = layout_signature(self.steps)

    # -- entry point ------------------------------------------------------------------------------

    def build(self, bronze: BronzeFiles, loads: Sequence[str], out: Path, *, previous: PreviousBuild | None = None,
              full: bool = False, on_step: Callable[[TransformStep, int], None] | None = None) -> BuildResult:
        """Build silver and gold of ``loads`` into ``out``: incrementally from ``previous`` when it can
        be, else in full. ``bronze``: table -> load id -> Parquet files."""
        started = time.perf_counter()
        reason = "full rebuild requested" if full else self._why_not_incremental(previous, loads)
        result: BuildResult | None = None
        if reason is None:
            assert previous is not None
            try:
                attempt: BuildResult | str = self._incremental(bronze, loads, out, previous, on_step)
            except _Unpartitionable as exc:
                attempt = f"unpartitionable: {exc}"
            if isinstance(attempt, str):
                reason = attempt
            else:
                result = attempt
        if result is None:
            assert reason is not None
            try:
                result = self._full(bronze, loads, out, previous, on_step, reason)
            except _Unpartitionable as exc:
                result = self._unpartitioned(bronze, loads, out, on_step, f"{reason}; unpartitioned: {exc}")
        result.info["seconds"] = round(time.perf_counter() - started, 3)
        return result

    def _why_not_incremental(self, previous: PreviousBuild | None, loads: Sequence[str]) -> str | None:
        if previous is None:
            return "no previous build"
        layout = previous.info.get("layout")
        if not layout:
            return f"the previous build has no parts (made by {previous.info.get('engine')})"
        if layout.get("version") != LAYOUT_VERSION:
            return f"the previous build has parts of layout {layout.get('version')}, this knowtrace writes {LAYOUT_VERSION}"
        if layout.get("signature") != self.signature:
            return "the transforms changed since the previous build"
        if layout.get("duckdb") != duckdb.__version__:
            return f"the previous build was made with DuckDB {layout.get('duckdb')}, this is {duckdb.__version__}"
        if not layout.get("parts"):
            return "the previous build has no rows to keep"
        missing = sorted(set(self.rules) - set(layout.get("partials", {})))
        if missing:
            return f"the previous build has no partial rows of {', '.join(missing)}"
        removed = set(previous.info.get("loads", [])) - set(loads)
        if removed:
            return f"{len(removed)} loads of the previous build are gone"
        return None

    # -- connections and sources --------------------------------------------------------------------

    def _connect(self) -> duckdb.DuckDBPyConnection:
        con = self.engine.connect()
        con.execute("SET preserve_insertion_order = true")  # the parts are cut in the SQL's row order
        return con

    def _register_bronze(self, con: duckdb.DuckDBPyConnection, bronze: BronzeFiles, loads: Sequence[str],
                         skip: Sequence[str] = ()) -> None:
        for table, by_load in bronze.items():
            if table in skip:
                continue
            files = [f for load in loads for f in by_load.get(load, ())]
            register_source(con, f"bronze_{table}", files if files else self._empty(table))

    def _empty(self, table: str) -> pa.Table:
        try:
            return self.empty_bronze[table].empty_table()
        except KeyError:
            raise LakeError(f"no files and no schema for bronze table {table!r}") from None

    # -- full build -------------------------------------------------------------------------------

    def _full(self, bronze: BronzeFiles, loads: Sequence[str], out: Path, previous: PreviousBuild | None,
              on_step: Callable[[TransformStep, int], None] | None, reason: str) -> BuildResult:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        con = self._connect()
        try:
            self._register_bronze(con, bronze, loads)
            bronze_rows = self._rows(con, "bronze_interactions")
            part_rows = target_part_rows(bronze_rows)
            pieces = self._write_keyed(con, out, [(None, None)], part_rows)
            parts = [Part(lo=None if n == 0 else piece.lo, first=piece.first, learners=piece.learners,
                          uid=f"{out.name}:{n}", rows=rows) for n, (piece, rows) in enumerate(pieces)]
            partials = self._write_partials(con, parts, list(range(len(parts))), out)
            counts = {step.table: sum(p.rows[step.table] for p in parts) for step in self.keyed}
            self._register_keyed_files(con, out)
            if on_step is not None:
                for step in self.keyed:
                    on_step(step, counts[step.table])
            counts |= self._write_others(con, out, on_step, partials=None)
            self._full_median_windows(con, out, partials)
            self._register_keyed_files(con, out)
            learner_index = write_learner_index(con, out)
            index_info = self._full_index(con, bronze, loads, out, previous, silver_rows=counts[self.keyed[0].table])
        finally:
            con.close()
        return BuildResult(self._ordered(counts), {
            "kind": "full", "full_reason": reason,
            "layout": self._layout(parts, part_rows, index_info, partials, learner_index=learner_index)})

    def _unpartitioned(self, bronze: BronzeFiles, loads: Sequence[str], out: Path,
                       on_step: Callable[[TransformStep, int], None] | None, reason: str) -> BuildResult:
        shutil.rmtree(out, ignore_errors=True)
        sources: dict[str, Sequence[Path] | pa.Table] = {}
        for table, by_load in bronze.items():
            files = [f for load in loads for f in by_load.get(load, ())]
            sources[f"bronze_{table}"] = files if files else self._empty(table)
        counts = self.engine.build(sources, self.steps, out, on_step=on_step)
        return BuildResult(counts, {"kind": "full", "full_reason": reason})

    def _full_index(self, con: duckdb.DuckDBPyConnection, bronze: BronzeFiles, loads: Sequence[str], out: Path,
                    previous: PreviousBuild | None, silver_rows: int) -> dict[str, Any]:
        index = EventIndex(con, out)
        covered: set[str] = set()
        layout = (previous.info.get("layout") or {}) if previous is not None else {}
        if (previous is not None and layout.get("duckdb") == duckdb.__version__
                and layout.get("version") == LAYOUT_VERSION and set(previous.info.get("loads", [])) <= set(loads)):
            index.link_chunks(previous.folder, layout.get("index", {}).get("chunks", []))
            covered = set(previous.info.get("loads", []))
        by_load = bronze.get("interactions", {})
        index.add_chunk([f for load in loads if load not in covered for f in by_load.get(load, ())])
        index.compact()
        shared = index.write_all_shared(any_duplicates=index.rows() != silver_rows)
        return index.info(shared)

    # -- incremental build --------------------------------------------------------------------------

    def _incremental(self, bronze: BronzeFiles, loads: Sequence[str], out: Path, previous: PreviousBuild,
                     on_step: Callable[[TransformStep, int], None] | None) -> BuildResult | str:
        layout = previous.info["layout"]
        parts = [Part.from_json(p) for p in layout["parts"]]
        built = set(previous.info.get("loads", []))
        new_loads = [load for load in loads if load not in built]
        first = self.keyed[0].table
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        con = self._connect()
        try:
            index = EventIndex(con, out)
            index.link_chunks(previous.folder, layout["index"]["chunks"])
            by_load = bronze.get("interactions", {})
            new_chunk = index.add_chunk([f for load in new_loads for f in by_load.get(load, ())])
            update, shared_rows = index.update_shared(previous.folder, new_chunk)
            appended = append_build(self, con, bronze, loads, new_loads, out, previous, update, index, shared_rows,
                                    on_step)
            if not isinstance(appended, str):
                return appended
            if Deltas.from_layout(layout):
                return f"not an append ({appended}) and the previous build holds appended rows"
            touched = {part_of(parts, key) for key in update.new_learners}
            touched = self._close_over_ties(parts, touched, update.tied)
            old_rows = sum(p.rows[first] for p in parts)
            redo = sum(parts[i].rows[first] for i in touched) + update.new_rows
            share = redo / max(1, old_rows + update.new_rows)
            if touched and share > MAX_INCREMENTAL_SHARE:
                return (f"the new loads touch {len(touched)} of {len(parts)} parts ({share:.0%} of the rows, "
                        f"over {MAX_INCREMENTAL_SHARE:.0%})")
            runs = runs_of(touched)
            segments = [(parts[a].lo, parts[b + 1].lo if b + 1 < len(parts) else None) for a, b in runs]
            self._register_bronze(con, bronze, loads, skip=("interactions",))
            self._register_restricted(con, bronze, loads, segments)
            part_rows = int(layout["part_rows"])
            # the rebuilt parts are written under temporary numbers, renamed once the new order is known
            pieces = self._write_keyed(con, out / _FRESH, segments, part_rows) if runs else []
            new_parts, origins, fresh_at = self._assemble(parts, runs, pieces, out.name)
            for j, origin in enumerate(origins):
                for step in self.keyed:
                    if origin is None:
                        target = _part_file(out, step, j)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        _part_file(out / _FRESH, step, fresh_at[j]).rename(target)
                    else:
                        link_or_copy(_part_file(previous.folder, step, origin), _part_file(out, step, j))
            shutil.rmtree(out / _FRESH, ignore_errors=True)
            if not new_parts:
                self._write_keyed(con, out, [(None, None)], part_rows)  # no rows left: empty files
            fresh = [j for j, origin in enumerate(origins) if origin is None]
            partials = self._write_partials(con, new_parts, fresh, out)
            partials = self._carry_partials(con, previous, layout["partials"], partials, {p.uid for p in new_parts},
                                            out)
            counts = {step.table: sum(p.rows[step.table] for p in new_parts) for step in self.keyed}
            self._register_keyed_files(con, out)
            if on_step is not None:
                for step in self.keyed:
                    on_step(step, counts[step.table])
            counts |= self._write_others(con, out, on_step, partials=partials)
            self._register_keyed_files(con, out)
            learner_index = write_learner_index(con, out)
            index.compact()
        finally:
            con.close()
        kept_parts = sum(1 for o in origins if o is not None)
        return BuildResult(self._ordered(counts), {
            "kind": "incremental",
            "incremental": {"from_build": previous.info.get("build_id"), "new_loads": len(new_loads),
                            "not_appended": appended,
                            "parts_rebuilt": len(new_parts) - kept_parts, "parts_kept": kept_parts,
                            "parts_touched": len(touched), "rows_recomputed": sum(rows[first] for _, rows in pieces)},
            "layout": self._layout(new_parts, part_rows, index.info(shared_rows), partials,
                                   learner_index=learner_index)})

    @staticmethod
    def _assemble(parts: Sequence[Part], runs: Sequence[tuple[int, int]], pieces: Sequence[tuple[Piece, dict[str, int]]],
                  build_id: str) -> tuple[list[Part], list[int | None], dict[int, int]]:
        """The new parts in key order: each kept part (its old index in ``origins``), each run replaced by the
        parts rebuilt for it (origin None; ``fresh_at`` maps their new index to their number among ``pieces``)."""
        by_run: dict[int, list[int]] = {}
        for n, (piece, _) in enumerate(pieces):
            by_run.setdefault(piece.segment, []).append(n)
        run_at = {a: r for r, (a, _) in enumerate(runs)}
        new_parts: list[Part] = []
        origins: list[int | None] = []
        fresh_at: dict[int, int] = {}
        i = 0
        while i < len(parts):
            if i not in run_at:
                kept = parts[i]
                new_parts.append(Part(kept.lo, kept.first, kept.learners, kept.uid, dict(kept.rows)))
                origins.append(i)
                i += 1
                continue
            r = run_at[i]
            for n in by_run.get(r, []):
                piece, rows = pieces[n]
                fresh_at[len(new_parts)] = n
                new_parts.append(Part(piece.lo, piece.first, piece.learners, f"{build_id}:{len(new_parts)}", rows))
                origins.append(None)
            i = runs[r][1] + 1
        if new_parts:
            new_parts[0].lo = None  # the first part holds every key before the next one
        return new_parts, origins, fresh_at

    @staticmethod
    def _close_over_ties(parts: Sequence[Part], touched: set[int], tied: Sequence[Sequence[Key]]) -> set[int]:
        """``touched`` plus every part tied to it through learners that share an event id."""
        groups = [{part_of(parts, key) for key in learners} for learners in tied]
        touched = set(touched)
        changed = True
        while changed:
            changed = False
            for group in groups:
                if group & touched and not group <= touched:
                    touched |= group
                    changed = True
        return touched

    def _register_restricted(self, con: duckdb.DuckDBPyConnection, bronze: BronzeFiles, loads: Sequence[str],
                             intervals: Sequence[tuple[Key | None, Key | None]]) -> None:
        """``bronze_interactions`` as the rows of the learners in ``intervals`` only."""
        by_load = bronze.get("interactions", {})
        files = [f for load in loads for f in by_load.get(load, ())]
        boxes = [box for lo, hi in intervals for box in interval_filters(lo, hi)]
        if not files or not boxes:
            register_source(con, "bronze_interactions", self._empty("interactions"))
            return
        # one scan (not one per interval: bronze loaded in time order has every learner in every row group);
        # DuckDB still skips the row groups whose statistics fall outside every interval
        where = " OR ".join(f"({box})" for box in boxes)
        con.execute(f"CREATE OR REPLACE VIEW bronze_interactions AS SELECT * FROM "
                    f"read_parquet({_files_sql(files)}, union_by_name = true) WHERE {where}")

    # -- the steps --------------------------------------------------------------------------------

    @staticmethod
    def _rows(con: duckdb.DuckDBPyConnection, view: str) -> int:
        return int(con.execute(f"SELECT count(*) FROM {view}").fetchall()[0][0])

    def _write_keyed(self, con: duckdb.DuckDBPyConnection, folder: Path,
                     segments: Sequence[tuple[Key | None, Key | None]], part_rows: int) -> list[tuple[Piece, dict[str, int]]]:
        """Run the keyed steps over the (restricted) bronze rows and write them as parts numbered from 0 under
        ``folder``: the first table cut into parts of about ``part_rows`` rows within ``segments``, the others
        computed part by part from the first table's parts. Returns each part with its rows per table."""
        primary, *others = self.keyed
        try:
            pieces = write_cut(con, primary.sql, primary.table, segments, part_rows,
                               lambda n: _part_file(folder, primary, n))
            if not pieces:  # no rows: one empty file per keyed table
                return self._write_empty_keyed(con, folder)
            files = [_part_file(folder, primary, n) for n in range(len(pieces))]
            register_source(con, primary.table, files)
            rows = [{primary.table: piece.rows} for piece in pieces]
            for step in others:  # part by part: a learner's rows depend on their rows of the first table only
                written = write_per_part(con, step.sql, primary.table, files,
                                         lambda n, step=step: _part_file(folder, step, n))  # type: ignore[misc]
                for counts, n_rows in zip(rows, written):
                    counts[step.table] = n_rows
            register_source(con, primary.table, files)
            for step in others:
                register_source(con, step.table, [_part_file(folder, step, n) for n in range(len(pieces))])
        except NotOrderedByLearner as exc:
            raise _Unpartitionable(str(exc)) from exc
        return list(zip(pieces, rows))

    def _write_empty_keyed(self, con: duckdb.DuckDBPyConnection, folder: Path) -> list[Any]:
        for step in self.keyed:
            file = _part_file(folder, step, 0)
            file.parent.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY (SELECT * FROM ({step.sql}) LIMIT 0) TO '{quote_path(file)}' ({_WRITE})")
            register_source(con, step.table, [file])
        return []

    def _write_others(self, con: duckdb.DuckDBPyConnection, out: Path,
                      on_step: Callable[[TransformStep, int], None] | None,
                      partials: Mapping[str, list[dict[str, Any]]] | None, deltas: Deltas | None = None,
                      appended: tuple[Path, str] | None = None) -> dict[str, int]:
        """Write the aggregate tables: by their SQL files, or (``partials`` given) from the parts' partial
        rows for the tables with a rule. ``appended`` (an append build): the previous build's folder and
        the view of the appended answers, whose values update that build's median windows."""
        counts = {}
        for step in self.other:
            file = _part_file(out, step, 0)
            file.parent.mkdir(parents=True, exist_ok=True)
            rule = self.rules.get(step.table) if partials is not None else None
            entries = partials.get(step.table, []) if partials is not None else []
            if rule is None or not entries:
                rule, sql = None, step.sql
            else:
                self._partials_view(con, out, entries, step.table)
                if rule.reduced_input is not None:
                    con.execute(f"CREATE OR REPLACE VIEW interactions AS {rule.reduced_input}")
                    sql = step.sql
                else:
                    sql = rule.combine or ""
            if rule is not None and step.table in MEDIAN_RULES:
                write_medians(con, out, MEDIAN_RULES[step.table], "__partials", appended)
            con.execute(f"COPY ({sql}) TO '{quote_path(file)}' ({_WRITE})")
            if rule is not None and rule.reduced_input is not None:
                self._register_keyed_files(con, out, deltas)
            register_source(con, step.table, [file])
            counts[step.table] = int(con.execute(f"SELECT count(*) FROM {step.table}").fetchone()[0])  # type: ignore[index]
            if on_step is not None:
                on_step(step, counts[step.table])
        return counts

    def _register_keyed_files(self, con: duckdb.DuckDBPyConnection, out: Path, deltas: Deltas | None = None) -> None:
        for step in self.keyed:
            register_source(con, step.table, keyed_source(out, step, deltas or Deltas(), primary=step is self.keyed[0]))

    @staticmethod
    def _partials_view(con: duckdb.DuckDBPyConnection, out: Path, entries: Sequence[Mapping[str, Any]],
                       table: str) -> None:
        """Define ``__partials``: the partial rows of ``table`` listed in ``entries``."""
        files = [out / PARTIALS_DIR / table / entry["file"] for entry in entries]
        # a file also holds rows of parts since rebuilt: only the listed parts count
        uids = ", ".join(f"'{uid}'" for entry in entries for uid in entry["parts"])
        con.execute(f"CREATE OR REPLACE VIEW __partials AS SELECT * FROM read_parquet({_files_sql(files)}) "
                    f"WHERE __part IN ({uids})")

    def _full_median_windows(self, con: duckdb.DuckDBPyConnection, out: Path,
                             partials: Mapping[str, list[dict[str, Any]]]) -> None:
        """Write the median windows of a full build (whose tables its SQL files computed) from its partial rows."""
        for table, rule in MEDIAN_RULES.items():
            if table in self.rules and partials.get(table):
                self._partials_view(con, out, partials[table], table)
                write_medians(con, out, rule, "__partials")

    # -- partial rows of the aggregate tables ---------------------------------------------------------

    def _write_partials(self, con: duckdb.DuckDBPyConnection, parts: Sequence[Part], which: Sequence[int],
                        out: Path) -> dict[str, list[dict[str, Any]]]:
        """Write the partial rows of parts ``which`` (one file per table, from their part files of the first keyed
        table); returns the files written, per table."""
        written: dict[str, list[dict[str, Any]]] = {table: [] for table in self.rules}
        which = [j for j in which if parts[j].rows.get(self.keyed[0].table)]
        if not self.rules or not which:
            return written
        primary = self.keyed[0]
        files = [str(_part_file(out, primary, j)) for j in which]
        con.register("__kt_part_files", pa.table({"filename": files, "__part": [parts[j].uid for j in which]}))
        con.execute(f"""CREATE OR REPLACE VIEW interactions AS
            SELECT rows.* EXCLUDE (filename), part.__part
            FROM read_parquet({_files_sql([Path(f) for f in files])}, filename = true) AS rows
            JOIN __kt_part_files AS part USING (filename)""")
        for table, rule in self.rules.items():
            file = out / PARTIALS_DIR / table / f"{out.name}.parquet"
            file.parent.mkdir(parents=True, exist_ok=True)
            con.execute(f"COPY ({rule.partial}) TO '{quote_path(file)}' (FORMAT parquet, COMPRESSION zstd)")
            written[table].append({"file": file.name, "parts": [parts[j].uid for j in which]})
        con.unregister("__kt_part_files")
        return written

    def _carry_partials(self, con: duckdb.DuckDBPyConnection, previous: PreviousBuild,
                        old: Mapping[str, list[dict[str, Any]]], written: dict[str, list[dict[str, Any]]],
                        alive: set[str], out: Path) -> dict[str, list[dict[str, Any]]]:
        """Link the previous build's partial files that hold units still alive (kept parts, appended rows);
        merge them when there are too many."""
        for table in self.rules:
            entries = []
            for entry in old.get(table, []):
                kept = [uid for uid in entry["parts"] if uid in alive]
                if kept:
                    link_or_copy(previous.folder / PARTIALS_DIR / table / entry["file"],
                                 out / PARTIALS_DIR / table / entry["file"])
                    entries.append({"file": entry["file"], "parts": kept})
            entries += written[table]
            if len(entries) > MAX_PARTIAL_FILES:
                folder = out / PARTIALS_DIR / table
                files = [folder / e["file"] for e in entries]
                merged = folder / f"{out.name}-merged.parquet"
                uids = ", ".join(f"'{u}'" for u in sorted(alive))
                con.execute(f"COPY (SELECT * FROM read_parquet({_files_sql(files)}) WHERE __part IN ({uids})) "
                            f"TO '{quote_path(merged)}' (FORMAT parquet, COMPRESSION zstd)")
                for file in files:
                    file.unlink()
                entries = [{"file": merged.name, "parts": sorted({u for e in entries for u in e["parts"]})}]
            written[table] = entries
        return written

    def _ordered(self, counts: Mapping[str, int]) -> dict[str, int]:
        return {step.table: counts[step.table] for step in self.steps}

    def _layout(self, parts: Sequence[Part], part_rows: int, index: dict[str, Any],
                partials: Mapping[str, list[dict[str, Any]]], deltas: Deltas | None = None,
                learner_index: Sequence[str] = ()) -> dict[str, Any]:
        layout = {"version": LAYOUT_VERSION, "signature": self.signature, "duckdb": duckdb.__version__,
                  "keyed": [s.table for s in self.keyed], "part_rows": part_rows,
                  "parts": [p.to_json() for p in parts], "index": index, "partials": dict(partials)}
        if deltas:
            layout["deltas"] = deltas.to_json()
        if learner_index:
            layout["learner_index"] = list(learner_index)
        return layout

