"""How a learner state's arrays and mastery are written as bytes and text, and read back.

Arrays are written in a small self-describing binary layout, ``KTSTATE1\n``, a little-endian
uint32 header length, a JSON header ``[[name, dtype, shape], ...]`` and the arrays' raw bytes one
after the other. Only numeric, boolean and unicode-string dtypes are written or read: nothing is
ever unpickled. (``.npz`` is what model artifacts use, but zip members and ``.npy`` headers cost
0.1-0.3 ms per learner state, most of the stream worker's time; this layout costs a few
microseconds. ``.npz`` bytes are still read, with ``allow_pickle=False``.) Mastery becomes JSON
``{"concept": [p, se or null]}``.
"""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from knowtrace.state.store import LearnerState, StateError

__all__ = ["checked_states", "check_state", "decode_arrays", "decode_mastery", "encode_arrays", "encode_mastery"]

#: dtype kinds a stored array may have: bool, signed and unsigned integers, floats, unicode strings
ARRAY_KINDS = "biufU"


def check_state(state: Any, where: str) -> None:
    """Refuse what is not a ``LearnerState`` with a version, counters and storable arrays (StateError)."""
    if not isinstance(state, LearnerState):
        raise StateError(f"{where}: expected a LearnerState, got {type(state).__name__}")
    if not isinstance(state.version, str) or not state.version:
        raise StateError(f"{where}: version must be a non-empty string, got {state.version!r}")
    for name in ("n_answers", "last_offset"):
        value = getattr(state, name)
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise StateError(f"{where}: {name} must be an integer, got {value!r}")
    if not isinstance(state.arrays, Mapping):
        raise StateError(f"{where}: arrays must be a mapping of name -> numpy array")
    for key, value in state.arrays.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) or value.dtype.kind not in ARRAY_KINDS:
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise StateError(f"{where}: array {key!r} must be a numeric or string numpy array, got {kind}")


MAGIC = b"KTSTATE1\n"
NPZ_MAGIC = b"PK\x03\x04"


def encode_arrays(arrays: Mapping[str, np.ndarray]) -> bytes:
    """The arrays as bytes (see the module docstring)."""
    parts = [np.ascontiguousarray(a) for a in arrays.values()]
    header = json.dumps([[name, a.dtype.str, list(a.shape)] for name, a in zip(arrays, parts)],
                        separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<I", len(header)), header, *(a.tobytes() for a in parts)])


def decode_arrays(blob: bytes, where: str) -> dict[str, np.ndarray]:
    """The arrays written by ``encode_arrays`` (or an ``.npz``); StateError naming ``where`` when unreadable."""
    blob = bytes(blob)
    if blob.startswith(NPZ_MAGIC):
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise StateError(f"{where}: the stored arrays cannot be read: {exc}") from exc
    try:
        if not blob.startswith(MAGIC):
            raise ValueError("not a knowtrace learner state")
        start = len(MAGIC) + 4
        (size,) = struct.unpack_from("<I", blob, len(MAGIC))
        offset = start + size
        out = {}
        for name, descr, shape in json.loads(blob[start:offset]):
            dtype = np.dtype(str(descr))
            if dtype.kind not in ARRAY_KINDS:
                raise ValueError(f"array {name!r} has dtype {dtype}, which is not stored")
            count = math.prod(int(n) for n in shape)
            if count < 0 or offset + count * dtype.itemsize > len(blob):
                raise ValueError(f"array {name!r} runs past the end of the data")
            out[str(name)] = np.frombuffer(blob, dtype, count, offset).reshape(shape).copy()
            offset += count * dtype.itemsize
        if offset != len(blob):
            raise ValueError(f"{len(blob) - offset} bytes after the last array")
        return out
    except (ValueError, TypeError, struct.error) as exc:
        raise StateError(f"{where}: the stored arrays cannot be read: {exc}") from exc


def encode_mastery(mastery: Mapping[str, Any], where: str) -> str:
    """Mastery as JSON; refuses non-finite or non-numeric values (StateError naming ``where``)."""
    try:
        out = {str(c): [float(p), None if se is None else float(se)] for c, (p, se) in mastery.items()}
        return json.dumps(out, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        pass
    for concept, value in mastery.items():  # name the culprit
        try:
            p, se = value
            pair = [float(p), None if se is None else float(se)]
        except (TypeError, ValueError):
            raise StateError(f"{where}: mastery of {concept!r} must be (p, se or None), got {value!r}") from None
        if not all(v is None or math.isfinite(v) for v in pair):
            raise StateError(f"{where}: mastery of {concept!r} is not finite: {value!r}")
    raise StateError(f"{where}: mastery must map concept ids to (p, se or None)")


def decode_mastery(text: str | bytes, where: str) -> dict[str, tuple[float, float | None]]:
    """Mastery read from JSON."""
    try:
        raw = json.loads(text)
        return {str(c): (float(p), None if se is None else float(se)) for c, (p, se) in raw.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        raise StateError(f"{where}: the stored mastery cannot be read: {exc}") from exc


def checked_states(tenant: str, states: Mapping[tuple[str, str], LearnerState]
                   ) -> Iterator[tuple[str, str, LearnerState, str]]:
    """(model, learner_id, state, where) of each state a store is asked to write, refusing bad keys
    and states with a StateError; ``where`` names the state in error messages."""
    for key, state in states.items():
        where = f"state {key!r} of tenant {tenant!r}"
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)):
            raise StateError(f"{where}: keys must be (model, learner_id) string pairs")
        check_state(state, where)
        model, learner_id = key
        if state.model != model:
            raise StateError(f"{where}: the state is of model {state.model!r}, keyed under {model!r}")
        yield model, learner_id, state, where
