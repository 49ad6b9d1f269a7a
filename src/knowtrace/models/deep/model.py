"""What DKT, SAKT and AKT share: encoding, windowed training and prediction, per-learner state.

``fit`` encodes the answers (``knowtrace.models.deep.sequences``), trains the network on windows
of the training learners (``valid`` to stop early, else ``valid_share`` of the training learners
held out) and then stores every training learner's state (``knowtrace.models.deep.state``), so a
learner seen in ``fit`` continues from its history; with ``remember_learners=False`` it stores
none (a caller that keeps learner states elsewhere, as the real-time path does, need not hold them).

``fit`` on a ``Lake`` streams the gold ``learner_sequences`` (``knowtrace.models.deep.stream``): a
first pass builds the vocabulary from counts, then every epoch reads chunks of learners in a
shuffled order and trains on batches shuffled within a bounded buffer of them; validation and the
final learner states are computed chunk by chunk too, so memory is bounded by the chunk and buffer
sizes (plus the stored states) whatever the number of learners. Each learner's windows are those
of the in-memory path; what differs is the batch order, and which learners ``valid_share`` holds
out: those whose id hashes (with ``seed``) below the share, so about that share of them (with
very few learners possibly none; if all hash below it, none is held out).

``predict_proba`` runs the network over the same windows in batches: a learner's rows continue
from its stored state (none for a learner the model has not seen: the first answer is predicted
from the learned start state alone), each row predicted from earlier answers only; it leaves the
stored states unchanged. ``predict_one`` /
``learn_one`` update the stored state one answer at a time and give the same predictions as
``predict_proba`` on the same answers (to float rounding: DKT stores its states as float32, so
about 1e-6). Predictions are computed on CPU in float64 from the float32 weights, with one torch
thread; training runs on ``device``. The learners of ``valid`` are scored as new learners, from
their own answers only.

Unknown ids: an item (unit ``"item"``) or concept (unit ``"concept"``) not seen in ``fit`` is the
UNK token, whose embeddings are the frequency-weighted means of the known tokens' (unless UNK
stood for untagged answers in fit, then it keeps what it learned); an unknown item has Rasch
difficulty 0. Histories longer than ``window`` are cut into windows (each answer is predicted from
at most ``window - 1`` earlier answers, see ``sequences``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
from scipy.special import expit

from knowtrace.exceptions import InputError
from knowtrace.models.base import Mastery, OnlineModel
from knowtrace.models.data import Interactions
from knowtrace.models.deep.sequences import (
    FIRST,
    UNK,
    AnswerCounts,
    Batch,
    Encoded,
    Vocabulary,
    Windows,
    history_windows,
    make_batch,
    pair_frequencies,
    plan_windows,
    window_of,
)
from knowtrace.models.deep.state import CachedAnswers, RecurrentStates

if TYPE_CHECKING:
    from knowtrace.events.concept_graph import ConceptGraph
    from knowtrace.models.deep.stream import LakeSequences
    from knowtrace.models.deep.training import EpochBatches, Net, ValidBlocks

__all__ = ["AUTO_ITEM_LIMIT", "SequenceModel"]

#: with ``unit="auto"``, DKT and SAKT use item tokens up to this many items, concepts beyond
AUTO_ITEM_LIMIT = 20_000
#: queries scored at once by ``predict_one``/``mastery`` of the attention models
QUERY_CHUNK = 256


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class SequenceModel(OnlineModel):
    """A knowledge-tracing network over each learner's answer sequence (see the module docstring)."""

    #: DKT keeps recurrent states per learner; the attention models cache the last answers
    recurrent: ClassVar[bool] = False

    unit: str
    window: int
    dropout: float
    epochs: int
    lr: float
    lr_decay: float
    batch_size: int
    patience: int
    valid_share: float
    seed: int
    device: str
    verbose: bool
    remember_learners: bool

    # to implement ----------------------------------------------------------------------------

    def _build_net(self, vocab: Vocabulary) -> Net:
        """A new network for ``vocab`` (imports torch)."""
        raise NotImplementedError

    def _unk_tables(self) -> dict[str, str]:
        """Parameter name -> "token" or "pair" for the embedding tables indexed by tokens or pairs."""
        raise NotImplementedError

    def _check_model_params(self) -> None:
        """Check the model's own hyperparameters."""

    def _resolve_unit(self, data: Interactions | AnswerCounts) -> str:
        """``unit`` resolved for the training data (its ``item_ids`` and ``concept_ids``): item tokens
        unless told otherwise or the items are more than ``AUTO_ITEM_LIMIT`` (and concepts exist)."""
        has_concepts = len(data.concept_ids) > 0
        if self.unit == "concept" and not has_concepts:
            raise InputError("unit='concept' needs answers tagged with concepts (concept_ids)", field="unit")
        if self.unit == "auto":
            return "concept" if has_concepts and len(data.item_ids) > AUTO_ITEM_LIMIT else "item"
        return self.unit

    # checks ----------------------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.unit not in ("item", "concept", "auto"):
            raise InputError(f"unit must be 'item', 'concept' or 'auto', got {self.unit!r}", field="unit")
        if not _is_int(self.window) or self.window < 2 or self.window % 2:
            raise InputError(f"window must be an even integer >= 2, got {self.window!r}", field="window")
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}", field=name)
        if not (isinstance(self.lr, (int, float)) and not isinstance(self.lr, bool) and math.isfinite(self.lr)
                and self.lr > 0):
            raise InputError(f"lr must be a finite number > 0, got {self.lr!r}", field="lr")
        if not (isinstance(self.lr_decay, (int, float)) and not isinstance(self.lr_decay, bool)
                and 0 < self.lr_decay <= 1):
            raise InputError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}", field="lr_decay")
        for name in ("dropout", "valid_share"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1):
                raise InputError(f"{name} must be in [0, 1), got {value!r}", field=name)
        if not _is_int(self.seed):
            raise InputError(f"seed must be an integer, got {self.seed!r}", field="seed")
        if not isinstance(self.remember_learners, bool):
            raise InputError(f"remember_learners must be true or false, got {self.remember_learners!r}",
                             field="remember_learners")
        self._check_model_params()

    # fitting ---------------------------------------------------------------------------------

    def fit(self, data: Any, *, valid: Any = None, graph: ConceptGraph | None = None) -> Self:
        """Learn from silver interactions (see ``KnowledgeModel.fit``); a ``Lake`` (for ``data``, and
        for ``valid``) is streamed a chunk of learners at a time (see the module docstring). The
        sequence models do not use ``graph``."""
        from knowtrace.lake import Lake
        from knowtrace.models.deep.stream import LakeSequences, silver_fingerprint

        if not isinstance(data, Lake):
            return super().fit(data, valid=valid, graph=graph)
        with ExitStack() as stack:
            source = stack.enter_context(LakeSequences(data))
            held: LakeSequences | Interactions | None = None
            if isinstance(valid, Lake):
                held = stack.enter_context(LakeSequences(valid))
            elif valid is not None:
                held = Interactions.from_table(valid)
            self.n_train_ = self._fit_stream(source, valid=held)
        self.training_fingerprint_ = silver_fingerprint(data)
        self.metrics_: dict[str, Any] = {}
        return self

    def _fit(self, data: Interactions, *, valid: Interactions | None = None) -> None:
        from knowtrace.models.deep import training

        self._check_params()
        if data.n == 0:
            raise InputError(f"{self.name} needs at least one answer to fit")
        device = training.resolve_device(self.device)
        window = int(self.window)
        vocab = Vocabulary.from_view(data, self._resolve_unit(data))
        encoded = vocab.encode(data)
        row0, lengths = data.starts[:-1], np.diff(data.starts)
        train_seqs = np.arange(len(lengths))
        validation: tuple[Encoded, Windows] | None = None
        if valid is not None:
            if valid.n:
                v_row0, v_len = valid.starts[:-1], np.diff(valid.starts)
                validation = (vocab.encode(valid), history_windows(v_row0, v_len, window))
        elif self.valid_share > 0 and len(lengths) >= 2:
            rng = np.random.default_rng(int(self.seed))
            n_held = min(max(1, round(self.valid_share * len(lengths))), len(lengths) - 1)
            held = np.sort(rng.permutation(len(lengths))[:n_held])
            train_seqs = np.setdiff1d(train_seqs, held)
            validation = (encoded, history_windows(row0[held], lengths[held], window))
        windows = history_windows(row0[train_seqs], lengths[train_seqs], window)
        self._train(vocab, training.window_batches(encoded, windows, int(self.batch_size)),
                    (lambda: [validation]) if validation is not None else None,
                    pair_frequencies(encoded, vocab.n_tokens), device)
        if self.remember_learners:
            self._store_final_states(encoded, data)

    def _fit_stream(self, source: LakeSequences, *, valid: LakeSequences | Interactions | None) -> int:
        """Fit on the learners of ``source`` (see the module docstring); returns the answers read."""
        from knowtrace.models.deep import training
        from knowtrace.models.deep.stream import HashSplit

        self._check_params()
        device = training.resolve_device(self.device)
        window, batch_size = int(self.window), int(self.batch_size)
        split = HashSplit(int(self.seed), float(self.valid_share)) if valid is None and self.valid_share > 0 else None
        scan = source.scan(split)
        if scan.counts.n == 0:
            raise InputError(f"{self.name} needs at least one answer to fit")
        if scan.held_learners in (0, scan.learners):
            split = None
        vocab = Vocabulary.from_counts(scan.counts, self._resolve_unit(scan.counts))

        kept = split.kept if split is not None else None

        def epoch(rng: np.random.Generator) -> Iterator[Batch]:
            for block in source.blocks(vocab, window, keep=kept, rng=rng):
                yield from training.window_batches(block.encoded, block.windows, batch_size)(rng)

        validation: ValidBlocks | None = None
        if split is not None:
            held = split.held
            validation = lambda: source.windows(vocab, window, keep=held)  # noqa: E731
        elif isinstance(valid, Interactions):
            if valid.n:
                pair = (vocab.encode(valid), history_windows(valid.starts[:-1], np.diff(valid.starts), window))
                validation = lambda: [pair]  # noqa: E731
        elif valid is not None:
            other = valid
            validation = lambda: other.windows(vocab, window)  # noqa: E731
        self._train(vocab, epoch, validation, scan.counts.pair_frequencies(vocab), device)
        if self.remember_learners:
            for block in source.blocks(vocab, window):
                self._store_final_states(block.encoded, block.view)
        return scan.counts.n

    def _train(self, vocab: Vocabulary, batches: EpochBatches, validation: ValidBlocks | None, pairs: np.ndarray,
               device: str) -> None:
        """Train the network on ``batches`` and set the learned attributes, with an empty learner store;
        ``pairs``: the training answers' ``pair_frequencies``."""
        from knowtrace.models.deep import training

        result = training.train(lambda: self._build_net(vocab), batches, valid=validation,
                                epochs=int(self.epochs), lr=float(self.lr), lr_decay=float(self.lr_decay),
                                batch_size=int(self.batch_size),
                                patience=int(self.patience), seed=int(self.seed), device=device,
                                verbose=bool(self.verbose), name=self.name)
        self.vocab_ = vocab
        self.weights_ = self._fill_unknown(result.weights, pairs, vocab)
        self.train_history_, self.best_epoch_, self.device_ = result.history, result.best_epoch, result.device
        self._inference = None
        self.learners_ = self._new_store()

    def _fill_unknown(self, weights: dict[str, np.ndarray], pairs: np.ndarray,
                      vocab: Vocabulary) -> dict[str, np.ndarray]:
        """The weights with the UNK rows of token/pair tables set to the frequency-weighted mean of
        the known rows (when UNK did not occur in training); ``pairs``: the training answers'
        ``pair_frequencies``."""
        n_tokens = vocab.n_tokens
        pair_freq = pairs
        token_freq = pairs.reshape(n_tokens, 2).sum(axis=1)
        if token_freq[UNK] > 0 or token_freq[FIRST:].sum() == 0:
            return weights
        out = dict(weights)
        for name, kind in self._unk_tables().items():
            table = out[name].copy()
            if kind == "token":
                table[UNK] = _weighted_mean(table[FIRST:], token_freq[FIRST:])
            else:
                for r in (0, 1):
                    rows = 2 * np.arange(FIRST, n_tokens) + r
                    table[2 * UNK + r] = _weighted_mean(table[rows], pair_freq[rows])
            out[name] = table
        return out

    # the inference network -------------------------------------------------------------------

    def _net(self) -> Net:
        """The network in float64 on CPU with the learned weights (built once)."""
        net = getattr(self, "_inference", None)
        if net is None:
            import torch

            with torch.random.fork_rng(devices=[]):
                net = self._build_net(self.vocab_)
            try:
                net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.weights_.items()})
            except RuntimeError as exc:
                raise ValueError(f"the stored weights do not fit the {self.name} network: {exc}") from None
            net = net.double().eval()
            self._inference = net
        return net

    def _new_store(self) -> RecurrentStates | CachedAnswers:
        if self.recurrent:
            start = self.weights_["start"]
            return RecurrentStates(start.shape[0], start.shape[1])
        return CachedAnswers(int(self.window))

    # per-learner state -----------------------------------------------------------------------

    def _start_states(self) -> np.ndarray:
        """The learned start state, twice (current and next window): (2, n_parts, hidden) float32."""
        start = np.asarray(self.weights_["start"], dtype=np.float32)
        return np.stack([start, start])

    def _store_final_states(self, encoded: Encoded, data: Interactions) -> None:
        """Store the state of every learner of ``data`` after all its answers (from the start state)."""
        window, stride = int(self.window), int(self.window) // 2
        row0, n = data.starts[:-1], np.diff(data.starts)
        names = data.learner_ids.tolist()
        store = self.learners_
        if isinstance(store, CachedAnswers):
            for j, name in enumerate(names):
                lo = row0[j] + max(n[j] - window, 0)
                store.put(name, int(n[j]), encoded.take(np.arange(lo, row0[j] + n[j])))
            return
        k = window_of(n, window)
        a_lo, b_lo = k * stride, (k + 1) * stride
        states = np.repeat(self._start_states()[None], len(n), axis=0)
        states[:, 0] = self._run_states(encoded, row0 + a_lo, n - a_lo)
        has_b = np.flatnonzero(n > b_lo)
        if len(has_b):
            states[has_b, 1] = self._run_states(encoded, row0[has_b] + b_lo[has_b], n[has_b] - b_lo[has_b])
        store.put_many(names, n, states)

    def _run_states(self, encoded: Encoded, row: np.ndarray, length: np.ndarray) -> np.ndarray:
        """Recurrent states (m, n_parts, hidden) float32 after rows ``[row, row + length)`` (length >= 1)."""
        import torch

        from knowtrace.models.deep.sequences import batches
        from knowtrace.models.deep.training import inference

        net = self._net()
        zeros = np.zeros(len(row), dtype=np.int64)
        windows = Windows(row, length, zeros, zeros, zeros, zeros, zeros)
        out = np.empty((len(row), *self.weights_["start"].shape), dtype=np.float32)
        with inference():
            for which in batches(length, int(self.batch_size)):
                batch = make_batch(encoded, windows, which)
                tokens = torch.from_numpy(batch.tokens)
                init = net.initial(len(which))  # type: ignore[operator]
                state = net.run(tokens, torch.from_numpy(batch.correct), torch.from_numpy(length[which]),  # type: ignore[operator]
                                init)
                out[which] = state.permute(1, 0, 2).numpy().astype(np.float32)
        return out

    def known_items(self) -> frozenset[str] | None:
        self._check_fitted()
        return frozenset(self.vocab_.item_ids.tolist())

    def get_learner_state(self, learner_id: str) -> dict[str, np.ndarray]:
        """What the model keeps of a learner, as arrays: ``count`` (answers so far) and, for DKT,
        ``states`` (2, n_parts, hidden) float32; for SAKT/AKT the cached last answers ``tokens``,
        ``item``, ``correct`` (model codes). A learner never seen has 0 answers and the start state."""
        self._check_fitted()
        store = self.learners_
        if isinstance(store, RecurrentStates):
            count, states = store.get(learner_id)
            return {"count": np.array([count], dtype=np.int64),
                    "states": states if states is not None else self._start_states()}
        count, cached = store.get(learner_id)
        cached = cached if cached is not None else Encoded.concat([])
        return {"count": np.array([count], dtype=np.int64), "tokens": cached.tokens.copy(),
                "item": cached.item.copy(), "correct": cached.correct.copy()}

    def set_learner_state(self, learner_id: str, state: Mapping[str, np.ndarray]) -> None:
        """Restore a learner's state exported by ``get_learner_state`` (of this model)."""
        self._check_fitted()
        store = self.learners_
        needed = ("count", "states") if isinstance(store, RecurrentStates) else ("count", "tokens", "item", "correct")
        missing = [k for k in needed if k not in state]
        if missing:
            raise InputError(f"a {self.name} learner state needs {', '.join(missing)}", field=missing[0])
        count_arr = np.asarray(state["count"])
        if count_arr.size != 1 or count_arr.dtype.kind not in "iu" or int(count_arr.ravel()[0]) < 0:
            raise InputError(f"count must be one non-negative integer, got {count_arr!r}", field="count")
        count = int(count_arr.ravel()[0])
        if isinstance(store, RecurrentStates):
            states = np.asarray(state["states"])
            if states.dtype.kind != "f" or not np.all(np.isfinite(states)):
                raise InputError("states must be finite floats", field="states")
            store.put(learner_id, count, states)
            return
        tokens, item, correct = (np.asarray(state[k]) for k in ("tokens", "item", "correct"))
        if any(a.dtype.kind not in "iu" for a in (tokens, item, correct)):
            raise InputError("tokens, item and correct must be integer arrays", field="tokens")
        if tokens.ndim != 2 or item.shape != (len(tokens),) or correct.shape != (len(tokens),):
            raise InputError("tokens (m, k), item (m,) and correct (m,) do not match", field="tokens")
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= self.vocab_.n_tokens or item.min() < 0
                            or item.max() >= self.vocab_.n_items or not np.isin(correct, (0, 1)).all()):
            raise InputError(f"codes out of range for this {self.name} model", field="tokens")
        if len(tokens) < min(count, int(self.window)):
            raise InputError(f"{len(tokens)} cached answers for {count} answers: the last "
                             f"{min(count, int(self.window))} are needed", field="tokens")
        store.put(learner_id, count, Encoded(tokens.astype(np.int64), item.astype(np.int64),
                                             correct.astype(np.int64)))

    def drop_learner(self, learner_id: str) -> None:
        self._check_fitted()
        self.learners_.drop(learner_id)

    # predicting ------------------------------------------------------------------------------

    def _predict(self, data: Interactions) -> np.ndarray:
        from knowtrace.models.deep.training import run_windows

        net = self._net()
        window = int(self.window)
        encoded = self.vocab_.encode(data)
        row0, lengths = data.starts[:-1], np.diff(data.starts)
        names = data.learner_ids.tolist()
        out = np.full(data.n, np.nan)
        store = self.learners_
        if isinstance(store, RecurrentStates):
            counts, rows = store.lookup(names)
            windows = plan_windows(row0, lengths, counts, counts, window)
            init = self._init_states(windows, rows) if np.any(windows.resumed) else None
            got, z = run_windows(net, encoded, windows, batch_size=int(self.batch_size), device="cpu",
                                 dtype=_float64(), init=init)
            out[got] = expit(z)
        else:
            combined, data_row, windows = self._with_cached(encoded, names, row0, lengths)
            got, z = run_windows(net, combined, windows, batch_size=int(self.batch_size), device="cpu",
                                 dtype=_float64())
            out[data_row[got]] = expit(z)
        if np.isnan(out).any():
            raise RuntimeError(f"{self.name}: {int(np.isnan(out).sum())} answers were not predicted")
        return out

    def _init_states(self, windows: Windows, rows: np.ndarray) -> Any:
        """``init(which)`` for ``run_windows``: each window's start state (n_parts, b, hidden)."""
        start = np.asarray(self.weights_["start"], dtype=np.float64)
        states = self.learners_.states  # type: ignore[union-attr]

        def init(which: np.ndarray) -> np.ndarray:
            resumed = windows.resumed[which]
            out = np.repeat(start[None], len(which), axis=0)
            sel = resumed > 0
            out[sel] = states[rows[windows.seq[which][sel]], resumed[sel] - 1]
            return out.transpose(1, 0, 2)

        return init

    def _with_cached(self, encoded: Encoded, names: list[str], row0: np.ndarray,
                     lengths: np.ndarray) -> tuple[Encoded, np.ndarray, Windows]:
        """Each learner's cached answers followed by its rows of ``encoded``: (the answers, the row of
        ``encoded`` of each, -1 for cached ones, and the windows that predict the rows)."""
        store: CachedAnswers = self.learners_  # type: ignore[assignment]
        counts = np.array([store.count(x) for x in names], dtype=np.int64)
        caches = [store.get(x)[1] for x in names]
        m = np.array([c.n if c is not None else 0 for c in caches], dtype=np.int64)
        cached = Encoded.concat([c for c in caches if c is not None])
        cache_off = np.concatenate(([0], np.cumsum(m)))[:-1]
        new_len = m + lengths
        new_row0 = np.concatenate(([0], np.cumsum(new_len)))[:-1].astype(np.int64)
        seq = np.repeat(np.arange(len(names)), new_len)
        at = np.arange(int(new_len.sum()), dtype=np.int64) - new_row0[seq]
        is_cached = at < m[seq]
        data_row = np.where(is_cached, -1, row0[seq] + at - m[seq])
        src = np.where(is_cached, cache_off[seq] + at, cached.n + np.maximum(data_row, 0))
        combined = Encoded.concat([cached, encoded]).take(src)
        windows = plan_windows(new_row0, new_len, counts - m, counts, int(self.window))
        return combined, data_row, windows

    def _query(self, learner_id: str, queries: Encoded) -> np.ndarray:
        """Logits (float64) of the learner's next answer being each of ``queries``."""
        import torch

        from knowtrace.models.deep.training import inference

        net = self._net()
        store = self.learners_
        with inference():
            if isinstance(store, RecurrentStates):
                _, states = store.get(learner_id)
                h = net.start[0] if states is None else torch.from_numpy(states[0, 0].astype(np.float64))
                z = net.readout(h.expand(queries.n, -1), torch.from_numpy(queries.tokens))  # type: ignore[operator]
                return z.numpy().astype(np.float64)
            count, cached = store.get(learner_id)
            start = int(window_of(count, int(self.window))) * (int(self.window) // 2)
            context = Encoded.concat([])
            if cached is not None and count > start:
                context = cached.take(np.arange(cached.n - (count - start), cached.n))
            out = [self._attend(net, context, queries.take(np.arange(s, min(s + QUERY_CHUNK, queries.n))))
                   for s in range(0, queries.n, QUERY_CHUNK)]
            return np.concatenate(out) if out else np.zeros(0)

    @staticmethod
    def _attend(net: Net, context: Encoded, queries: Encoded) -> np.ndarray:
        """Logits of ``queries`` as next answers after ``context``, all in one sequence."""
        import torch

        from knowtrace.models.deep.training import TorchBatch

        seq = Encoded.concat([context, queries])
        n_ctx = context.n
        pos = np.concatenate([np.arange(n_ctx), np.full(queries.n, n_ctx)]).astype(np.int64)[None]
        valid = np.ones_like(pos, dtype=bool)
        tb = TorchBatch(torch.from_numpy(seq.tokens[None]), torch.from_numpy(seq.item[None]),
                        torch.from_numpy(seq.correct[None]), torch.from_numpy(pos), torch.from_numpy(valid),
                        torch.from_numpy(valid))
        return net(tb)[0, n_ctx:].numpy().astype(np.float64)

    def _predict_one(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...]) -> float:
        return float(expit(self._query(learner_id, self.vocab_.encode_one(item_id, concept_ids))[0]))

    def _learn(self, learner_id: str, item_id: str, concept_ids: tuple[str, ...], correct: int, *,
               update_shared: bool) -> None:
        """Add the answer to the learner's state (the network's weights change only with ``fit``)."""
        answer = self.vocab_.encode_one(item_id, concept_ids, correct)
        store = self.learners_
        if isinstance(store, CachedAnswers):
            store.append(learner_id, answer)
            return
        import torch

        window, stride = int(self.window), int(self.window) // 2
        count, states = store.get(learner_id)
        states = states if states is not None else self._start_states()
        k = int(window_of(count, window))
        from knowtrace.models.deep.training import inference

        net = self._net()
        with inference():
            tokens, correct_t = torch.from_numpy(answer.tokens), torch.from_numpy(answer.correct)
            current = torch.from_numpy(states.astype(np.float64))  # (2, n_parts, hidden)
            new = current.clone()
            new[0] = net.step(current[0][:, None, :], tokens, correct_t)[:, 0]  # type: ignore[operator]
            if count >= (k + 1) * stride:
                new[1] = net.step(current[1][:, None, :], tokens, correct_t)[:, 0]  # type: ignore[operator]
        updated = new.numpy().astype(np.float32)
        if int(window_of(count + 1, window)) > k:
            updated = np.stack([updated[1], self._start_states()[0]])
        store.put(learner_id, count + 1, updated)

    def _item_concepts(self, item_id: str) -> tuple[str, ...]:
        vocab = self.vocab_
        code = int(vocab.item_codes(np.array([item_id], dtype=str))[0])
        tokens = vocab.item_concepts[code]
        return tuple(vocab.concept_ids[tokens[tokens >= FIRST] - FIRST].tolist()) if code else ()

    def mastery(self, learner_id: str) -> Mastery:
        """concept -> (P(correct) of the learner's next answer on the concept's typical item, None):
        the concept alone with an average item (unit ``"concept"``) or its most answered item in fit."""
        self._check_fitted()
        p = expit(self._query(learner_id, self.vocab_.concept_queries()))
        return {c: (float(x), None) for c, x in zip(self.vocab_.concept_ids.tolist(), p.tolist())}

    # state -----------------------------------------------------------------------------------

    def _get_state(self) -> dict[str, np.ndarray]:
        return {
            **{f"vocab_{k}": v for k, v in self.vocab_.to_state().items()},
            **{f"net.{k}": np.asarray(v) for k, v in self.weights_.items()},
            **self.learners_.to_state(),
            "train_history": self.train_history_,
            "best_epoch": np.array([self.best_epoch_], dtype=np.int64),
            "device": np.array([self.device_], dtype=str),
        }

    def _set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self._check_params()
        self.vocab_ = Vocabulary.from_state({k[len("vocab_"):]: v for k, v in state.items()
                                             if k.startswith("vocab_")})
        self.weights_ = {k[len("net."):]: np.asarray(v) for k, v in state.items() if k.startswith("net.")}
        self._inference = None
        self._net()
        if self.recurrent:
            start = self.weights_["start"]
            self.learners_ = RecurrentStates.from_state(state, start.shape[0], start.shape[1])
        else:
            self.learners_ = CachedAnswers.from_state(state, int(self.window))
        self.train_history_ = np.asarray(state["train_history"], dtype=np.float64)
        self.best_epoch_ = int(state["best_epoch"][0])
        self.device_ = str(state["device"][0])


def _weighted_mean(rows: np.ndarray, weight: np.ndarray) -> np.ndarray:
    total = weight.sum()
    if total <= 0:
        return rows.mean(axis=0) if len(rows) else np.zeros(rows.shape[1:], dtype=rows.dtype)
    return ((weight @ rows.reshape(len(rows), -1)) / total).reshape(rows.shape[1:]).astype(rows.dtype)


def _float64() -> Any:
    import torch

    return torch.float64
