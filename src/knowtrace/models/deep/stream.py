"""Training answers streamed from a lake's gold ``learner_sequences``, a bounded number of learners at a time.

``LakeSequences`` reads the table's Parquet parts (one row per learner, the answers as lists) in
record batches of at most ``chunk_learners`` learners, never the whole table. Each batch becomes a
small silver-like table of its answers and an ``Interactions`` view of it, so a learner's answers
are encoded and cut into windows exactly as the in-memory path does. ``scan`` (the first pass)
sums the ``AnswerCounts`` a ``Vocabulary`` is built from; ``blocks`` gathers consecutive chunks
until ``buffer_answers`` answers and yields them encoded, with their windows. Training epochs read
the row groups in an order shuffled by the fit's generator, and shuffle the batches within each
block (a bounded shuffle buffer); validation and the learners' final states read them in table
order. ``HashSplit`` holds learners out for validation by a seeded hash of their id, so no list of
all learners is ever built.

The Parquet files are opened once, when the source is made, and read from those open files, so a
rebuild of the lake during a fit (which swaps in new files and deletes the old ones) does not change
what the fit reads. A table that holds appended rows (delta files of an append build, see
``knowtrace.lake.overlay``) is first written whole, merged and in the full build's order, to a
temporary file, which is read instead of its parts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from knowtrace.exceptions import InputError
from knowtrace.lake.overlay import Deltas
from knowtrace.models.data import Interactions
from knowtrace.models.deep.sequences import AnswerCounts, Encoded, Vocabulary, Windows, history_windows

if TYPE_CHECKING:
    from knowtrace.lake import Lake

__all__ = ["BUFFER_ANSWERS", "CHUNK_LEARNERS", "Block", "HashSplit", "LakeSequences", "Scan", "silver_fingerprint"]

#: learners per record batch read from ``learner_sequences``
CHUNK_LEARNERS = 1024
#: answers gathered from consecutive chunks before they are encoded and their windows batched together
BUFFER_ANSWERS = 1 << 18
#: bytes read at a time from a Parquet column chunk (0 would read each column chunk whole)
READ_BUFFER = 1 << 20
_COLUMNS = ["tenant", "learner_id", "item_ids", "corrects", "concept_ids"]
_LISTS = ("item_ids", "corrects", "concept_ids")


@dataclass(frozen=True)
class HashSplit:
    """Learners held out for validation: those whose id hashes, with ``seed``, below ``share``."""

    seed: int
    share: float

    def held(self, learner_ids: Sequence[str]) -> np.ndarray:
        """Whether each learner is held out (bool array)."""
        limit = int(self.share * 2.0**64)
        prefix = f"{self.seed}\x00".encode()
        return np.fromiter(
            (int.from_bytes(hashlib.blake2b(prefix + x.encode(), digest_size=8).digest(), "little") < limit
             for x in learner_ids), dtype=bool, count=len(learner_ids))

    def kept(self, learner_ids: Sequence[str]) -> np.ndarray:
        """Whether each learner is trained on (not held out)."""
        return ~self.held(learner_ids)


@dataclass(frozen=True)
class Scan:
    """What the first pass found: the ``counts`` of all answers, the learners, and how many of
    them the split holds out."""

    counts: AnswerCounts
    learners: int
    held_learners: int


@dataclass(frozen=True)
class Block:
    """Consecutive chunks of learners: their view, their encoded answers and the windows over them."""

    view: Interactions
    encoded: Encoded
    windows: Windows


class LakeSequences:
    """The learners of a lake's gold ``learner_sequences``, read a chunk of learners at a time (see the
    module docstring; ``chunk_learners`` and ``buffer_answers`` default to ``CHUNK_LEARNERS`` and
    ``BUFFER_ANSWERS``). Use it as a context manager, or ``close`` it, to release the open files."""

    def __init__(self, lake: Lake, *, chunk_learners: int | None = None, buffer_answers: int | None = None) -> None:
        self.chunk_learners = CHUNK_LEARNERS if chunk_learners is None else chunk_learners
        self.buffer_answers = BUFFER_ANSWERS if buffer_answers is None else buffer_answers
        if self.chunk_learners < 1 or self.buffer_answers < 1:
            raise InputError("chunk_learners and buffer_answers must be >= 1")
        self._files = _open_table(lake, "learner_sequences", _COLUMNS)
        self.units = []
        for f, handle in enumerate(self._files):
            metadata = _parquet(handle).metadata
            self.units += [(f, g) for g in range(metadata.num_row_groups) if metadata.row_group(g).num_rows]
        self._tenant: str | None = None

    def close(self) -> None:
        """Close the Parquet files."""
        _close(self._files)
        self._files = []

    def __enter__(self) -> LakeSequences:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def chunks(self, *, keep: Callable[[Sequence[str]], np.ndarray] | None = None,
               rng: np.random.Generator | None = None) -> Iterator[pa.Table]:
        """The answers of at most ``chunk_learners`` learners at a time, as a silver-like table
        (``learner_id``, ``item_id``, ``concept_ids``, ``correct``, ``position``), of the learners
        ``keep(learner_ids)`` selects (all when None); row groups in shuffled order with ``rng``."""
        order = rng.permutation(len(self.units)) if rng is not None else range(len(self.units))
        for u in order:
            f, group = self.units[int(u)]
            for batch in _parquet(self._files[f]).iter_batches(batch_size=self.chunk_learners, row_groups=[group],
                                                               columns=_COLUMNS, use_threads=False):
                self._check_tenant(batch.column("tenant"))
                if keep is not None:
                    batch = batch.filter(pa.array(keep(batch.column("learner_id").to_pylist())))
                if batch.num_rows:
                    yield _answers(batch)

    def scan(self, split: HashSplit | None) -> Scan:
        """The first pass: the counts of every learner's answers, and what ``split`` holds out."""
        counts: AnswerCounts | None = None
        learners = held_learners = 0
        for table in self.chunks():
            view = Interactions.from_table(table)
            part = AnswerCounts.from_view(view)
            counts = part if counts is None else counts.merge(part)
            learners += len(view.learner_ids)
            if split is not None:
                held_learners += int(split.held(view.learner_ids.tolist()).sum())
        if counts is None:
            counts = AnswerCounts.from_view(Interactions.from_table(_answers(_empty_batch())))
        return Scan(counts, learners, held_learners)

    def blocks(self, vocab: Vocabulary, window: int, *, keep: Callable[[Sequence[str]], np.ndarray] | None = None,
               rng: np.random.Generator | None = None) -> Iterator[Block]:
        """The selected learners (see ``chunks``) in blocks of about ``buffer_answers`` answers, encoded
        with ``vocab``, with the windows of ``window`` answers that predict all of them."""
        buffer: list[pa.Table] = []
        size = 0
        for table in self.chunks(keep=keep, rng=rng):
            buffer.append(table)
            size += table.num_rows
            if size >= self.buffer_answers:
                yield _block(buffer, vocab, window)
                buffer, size = [], 0
        if buffer:
            yield _block(buffer, vocab, window)

    def windows(self, vocab: Vocabulary, window: int, *,
                keep: Callable[[Sequence[str]], np.ndarray] | None = None) -> Iterator[tuple[Encoded, Windows]]:
        """The ``(encoded, windows)`` of ``blocks``, in table order."""
        for block in self.blocks(vocab, window, keep=keep):
            yield block.encoded, block.windows

    def _check_tenant(self, tenants: pa.Array) -> None:
        for tenant in pc.unique(tenants).to_pylist():
            if self._tenant is None:
                self._tenant = tenant
            elif tenant != self._tenant:
                raise InputError("a model is fit on one tenant's interactions; filter the table by tenant first")


def _block(tables: list[pa.Table], vocab: Vocabulary, window: int) -> Block:
    _release_freed_memory()
    view = Interactions.from_table(pa.concat_tables(tables))
    return Block(view, vocab.encode(view), history_windows(view.starts[:-1], np.diff(view.starts), window))


def _libc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None on other C libraries)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_trim()


def _release_freed_memory() -> None:
    """Give the C heap's free pages back to the system (glibc only). Without it, what the blocks'
    arrays and the training batches freed stayed resident and the peak grew with the epoch's length:
    944 MiB instead of 716 for SAKT on 40,000 learners in ``bench/deep_memory.py``."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _answers(batch: pa.RecordBatch) -> pa.Table:
    """The answers of a batch of ``learner_sequences`` rows, one row each."""
    lengths = [pc.fill_null(pc.list_value_length(batch.column(c)), 0).to_numpy() for c in _LISTS]
    if any(not np.array_equal(lengths[0], x) for x in lengths[1:]):
        raise InputError("learner_sequences has a learner whose item_ids, corrects and concept_ids differ in length")
    n = lengths[0].astype(np.int64)
    first = np.cumsum(n) - n
    position = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(first, n)
    return pa.table({
        "learner_id": batch.column("learner_id").take(pa.array(np.repeat(np.arange(len(n)), n))),
        "item_id": pc.list_flatten(batch.column("item_ids")),
        "concept_ids": pc.list_flatten(batch.column("concept_ids")),
        "correct": pc.list_flatten(batch.column("corrects")),
        "position": position,
    })


def _empty_batch() -> pa.RecordBatch:
    return pa.record_batch({
        "tenant": pa.array([], pa.string()), "learner_id": pa.array([], pa.string()),
        "item_ids": pa.array([], pa.list_(pa.string())), "corrects": pa.array([], pa.list_(pa.int8())),
        "concept_ids": pa.array([], pa.list_(pa.list_(pa.string()))),
    })


def _open_table(lake: Lake, table: str, columns: list[str]) -> list[pa.NativeFile]:
    """The open Parquet files of a table of the lake's current build, in key order (none before a
    build): its parts, or, when it holds appended rows, one temporary file of the merged table's
    ``columns`` (deleted once open: the open handle keeps it readable)."""
    build = lake.current_build()
    if build is None:
        return []
    if not Deltas.from_layout(build.get("layout")).files.get(table):
        layer = lake.layout.silver if table == "interactions" else lake.layout.gold
        return _open(sorted((layer.resolve() / table).glob("*.parquet")))
    with tempfile.TemporaryDirectory(prefix="knowtrace-") as folder:
        path = Path(folder) / f"{table}.parquet"
        lake.export(table, path, columns=columns)
        return _open([path])


def _open(paths: list[Path]) -> list[pa.NativeFile]:
    """The files, open (read through ``_parquet``)."""
    files: list[pa.NativeFile] = []
    try:
        for path in paths:
            files.append(pa.OSFile(str(path)))
    except BaseException:
        _close(files)
        raise
    return files


def _close(files: Iterable[pa.NativeFile]) -> None:
    for handle in files:
        handle.close()


def _parquet(handle: pa.NativeFile) -> pq.ParquetFile:
    """A reader of an open Parquet file, made per read: a ``ParquetFile`` keeps its read buffers while
    it lives (about 1 MiB per file read), which over a lake's ~128 parts would add up."""
    return pq.ParquetFile(handle, buffer_size=READ_BUFFER)


def silver_fingerprint(lake: Lake, *, batch_rows: int = 1 << 16) -> str | None:
    """``knowtrace.models.data.fingerprint`` of the lake's ``interactions`` table, read a batch at a
    time (twice: the hash takes every id's offset before the ids' bytes)."""
    files = _open_table(lake, "interactions", ["event_id"])
    try:
        if files and "event_id" not in _parquet(files[0]).schema_arrow.names:
            return None  # a lake built before silver had event ids
        digest = hashlib.blake2b(digest_size=16)
        total = sum(_parquet(f).metadata.num_rows for f in files)
        digest.update(str(total).encode())
        if total == 0:
            return digest.hexdigest()
        end = 0
        for ids in _event_ids(files, batch_rows):
            offsets = _offsets(ids)
            digest.update((offsets[:-1] - offsets[0] + end).tobytes())
            end += int(offsets[-1] - offsets[0])
        digest.update(np.array([end], dtype=np.int64).tobytes())
        for ids in _event_ids(files, batch_rows):
            offsets = _offsets(ids)
            if offsets[-1] > offsets[0]:
                digest.update(memoryview(ids.buffers()[2])[int(offsets[0]): int(offsets[-1])])
        return digest.hexdigest()
    finally:
        _close(files)


def _event_ids(files: Iterable[pa.NativeFile], batch_rows: int) -> Iterator[pa.Array]:
    for handle in files:
        for batch in _parquet(handle).iter_batches(batch_size=batch_rows, columns=["event_id"], use_threads=False):
            if not batch.num_rows:
                continue
            ids = batch.column("event_id").cast(pa.large_string())
            yield pc.fill_null(ids, "") if ids.null_count else ids


def _offsets(ids: pa.Array) -> np.ndarray:
    return np.frombuffer(ids.buffers()[1], dtype=np.int64)[ids.offset: ids.offset + len(ids) + 1]
