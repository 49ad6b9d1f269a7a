"""The model registry: versioned model artifacts in the lake, and which version of each model is promoted.

Layout, one folder per (tenant, model)::

    <lake>/models/<tenant>/<model>/
        registry.json   every registered version (the index) and the history of promotions
        PROMOTED        the promoted version's entry: the one small file a server polls
        v0001/          the artifact of version 1 (``KnowledgeModel.save``: model.json + state.npz)
        v0002/ ...
        .lock           serialises writers

A version exists once it is in ``registry.json``: its artifact is written into a staging folder,
flushed to disk and renamed into place before the index that names it is replaced (atomically,
fsynced). ``PROMOTED`` is replaced atomically too and only ever names a registered version, so a
reader in another process sees the old state or the new one, never a half-written version. Readers
take no lock.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from knowtrace import __version__
from knowtrace.exceptions import InputError, KnowtraceError, LakeError
from knowtrace.lake import Lake
from knowtrace.lake.layout import LakeLayout
from knowtrace.lake.manifest import fsync_dir, write_json_atomic
from knowtrace.models.base import ArtifactError, KnowledgeModel

__all__ = ["PROMOTION_METRIC", "REGISTRY_FORMAT", "ModelRegistry", "ModelVersion", "Promotion", "PromotionRefused"]

#: version of the layout of ``registry.json`` and ``PROMOTED``
REGISTRY_FORMAT = 1
#: the metric a candidate must not be worse on (higher is better) to be promoted without ``force``
PROMOTION_METRIC = "auc"
INDEX_FILE = "registry.json"
POINTER_FILE = "PROMOTED"
LOCK_FILE = ".lock"
_VERSION = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a tenant's model: where its artifact is and what it was trained and scored on."""

    tenant: str
    model: str
    version: str
    path: Path
    metrics: dict[str, Any]
    data_window: dict[str, Any]
    created_at: datetime
    promoted_at: datetime | None = None
    training_fingerprint: str | None = None
    n_train: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    knowtrace_version: str | None = None

    @property
    def number(self) -> int:
        """The version as a number (``v0012`` -> 12)."""
        return _version_number(self.version)

    @property
    def auc(self) -> float | None:
        """The promotion metric (None when the evaluation could not compute it)."""
        return _metric(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        """The entry as JSON-ready values."""
        return {
            "tenant": self.tenant, "model": self.model, "version": self.version, "path": str(self.path),
            "created_at": self.created_at.isoformat(),
            "promoted_at": None if self.promoted_at is None else self.promoted_at.isoformat(),
            "metrics": self.metrics, "data_window": self.data_window,
            "training_fingerprint": self.training_fingerprint, "n_train": self.n_train, "params": self.params,
            "knowtrace_version": self.knowtrace_version,
        }


@dataclass(frozen=True)
class Promotion:
    """A promotion that happened: ``version`` replaced ``previous`` (None: the first promoted version)."""

    tenant: str
    model: str
    version: str
    previous: str | None
    auc: float | None
    previous_auc: float | None
    forced: bool
    promoted_at: datetime
    reason: str
    changed: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__) | {"promoted_at": self.promoted_at.isoformat()}


class PromotionRefused(KnowtraceError):
    """A version is worse than the promoted one on the promotion metric (promote with ``force`` to override)."""

    def __init__(self, message: str, *, tenant: str, model: str, version: str, current: str,
                 auc: float | None, current_auc: float | None) -> None:
        super().__init__(message)
        self.tenant, self.model, self.version, self.current = tenant, model, version, current
        self.auc, self.current_auc = auc, current_auc


class ModelRegistry:
    """Registered model versions of every tenant, kept under ``<lake>/models``."""

    def __init__(self, lake_root: str | os.PathLike[str] | Lake) -> None:
        root = lake_root.root if isinstance(lake_root, Lake) else Path(lake_root)
        self.lake_root = root.absolute()
        self.root = self.lake_root / "models"

    # -- where things are ----------------------------------------------------------------------

    def model_dir(self, tenant: str, model_name: str) -> Path:
        """The folder of one tenant's model."""
        return self.root / _segment(tenant, "tenant") / _segment(model_name, "model")

    # -- reading (no lock: every file read was replaced whole) -----------------------------------

    def versions(self, tenant: str, model_name: str) -> list[ModelVersion]:
        """Every registered version of the model, oldest first (empty when none)."""
        index = self._read_index(self.model_dir(tenant, model_name))
        return [self._entry_to_version(index["tenant"], index["model"], e) for e in index["versions"]]

    def get(self, tenant: str, model_name: str, version: str | int) -> ModelVersion:
        """One registered version (``"v0003"``, ``"3"`` or ``3``); ``InputError`` naming the known ones if absent."""
        wanted = _normalise_version(version)
        versions = self.versions(tenant, model_name)
        for entry in versions:
            if entry.version == wanted:
                return entry
        known = ", ".join(v.version for v in versions) or "none"
        raise InputError(f"no version {wanted} of model {model_name!r} for tenant {tenant!r} (registered: {known})",
                         field="version")

    def latest(self, tenant: str, model_name: str) -> ModelVersion | None:
        """The newest registered version, promoted or not."""
        versions = self.versions(tenant, model_name)
        return versions[-1] if versions else None

    def promoted(self, tenant: str, model_name: str) -> ModelVersion | None:
        """The promoted version (None before the first promotion); reads one small file."""
        pointer = self.model_dir(tenant, model_name) / POINTER_FILE
        try:
            text = pointer.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        data = _parse(text, pointer)
        return self._entry_to_version(data["tenant"], data["model"], data)

    def models(self, tenant: str | None = None) -> list[tuple[str, str]]:
        """(tenant, model) of every model with a registered version, of one tenant or all, sorted."""
        found = []
        if not self.root.is_dir():
            return []
        tenants = [self.root / _segment(tenant, "tenant")] if tenant is not None else sorted(self.root.iterdir())
        for tenant_dir in tenants:
            if not tenant_dir.is_dir():
                continue
            for model_dir in sorted(tenant_dir.iterdir()):
                index = self._read_index(model_dir)
                if index["versions"]:
                    found.append((index["tenant"], index["model"]))
        return sorted(found)

    def promotions(self, tenant: str, model_name: str) -> list[dict[str, Any]]:
        """The history of promotions of the model, oldest first."""
        return list(self._read_index(self.model_dir(tenant, model_name))["promotions"])

    def load(self, model_version: ModelVersion) -> KnowledgeModel:
        """The fitted model of a registered version."""
        model = KnowledgeModel.load(model_version.path)
        if model.name != model_version.model or model.training_fingerprint_ != model_version.training_fingerprint:
            raise ArtifactError(f"{model_version.path} holds a {model.name} model trained on "
                                f"{model.training_fingerprint_}, but the registry entry says {model_version.model} "
                                f"trained on {model_version.training_fingerprint}")
        return model

    # -- writing -------------------------------------------------------------------------------

    def register(self, model: KnowledgeModel, *, tenant: str, metrics: Mapping[str, Any],
                 data_window: Mapping[str, Any]) -> ModelVersion:
        """Save a fitted model as the next version of ``tenant``'s model ``model.name``.

        ``metrics``: the evaluation's scores of exactly this fitted model (``auc``, ``acc``, ``rmse``,
        ``logloss``, ``ece``, ``n``, ...); ``data_window``: what it was trained on (time range,
        loads, watermark). Both are stored as JSON (NaN as null).
        """
        if not isinstance(model, KnowledgeModel) or not model.is_fitted:
            raise InputError(f"only a fitted model can be registered, got {model!r}", field="model")
        if not isinstance(metrics, Mapping) or not isinstance(data_window, Mapping):
            raise InputError("metrics and data_window must be mappings", field="metrics")
        if not LakeLayout(self.lake_root).version_file.is_file():
            raise LakeError(f"{self.lake_root} is not a knowtrace lake (no _meta/lake.json): models are "
                            "registered in the lake they were trained from")
        folder = self.model_dir(tenant, model.name)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock(folder):
            index = self._read_index(folder)
            index["tenant"], index["model"] = tenant, model.name
            self._discard_uncommitted(folder, index)
            number = max((_version_number(e["version"]) for e in index["versions"]), default=0) + 1
            version = f"v{number:04d}"
            staging = folder / f".staging-{version}-{secrets.token_hex(4)}"
            try:
                model.save(staging)
                _fsync_tree(staging)
                os.replace(staging, folder / version)
                fsync_dir(folder)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            entry = {
                "version": version,
                "created_at": datetime.now(timezone.utc).isoformat(),
                "promoted_at": None,
                "metrics": _jsonable(dict(metrics)),
                "data_window": _jsonable(dict(data_window)),
                "training_fingerprint": model.training_fingerprint_,
                "n_train": int(model.n_train_),
                "params": _jsonable(model.get_params()),
                "knowtrace_version": __version__,
            }
            index["versions"].append(entry)
            try:
                write_json_atomic(folder / INDEX_FILE, index)
            except BaseException:
                shutil.rmtree(folder / version, ignore_errors=True)
                raise
            return self._entry_to_version(tenant, model.name, entry)

    def promote(self, tenant: str, model_name: str, version: str | int, *, force: bool = False) -> Promotion:
        """Make ``version`` the promoted one, unless its AUC is below the promoted version's (then
        ``PromotionRefused`` naming both, unless ``force``). Equal AUCs are allowed; the first
        promotion always is. A version without an AUC counts as worse than one with."""
        folder = self.model_dir(tenant, model_name)
        if not (folder / INDEX_FILE).is_file():
            raise InputError(f"no model {model_name!r} is registered for tenant {tenant!r}", field="model")
        with self._lock(folder):
            candidate = self.get(tenant, model_name, version)
            current = self.promoted(tenant, model_name)
            now = datetime.now(timezone.utc)
            auc, current_auc = candidate.auc, None if current is None else current.auc
            previous = None if current is None else current.version
            if current is not None and current.version == candidate.version:
                return Promotion(tenant, model_name, candidate.version, previous, auc, current_auc, False,
                                 current.promoted_at or now, f"{candidate.version} is already the promoted version",
                                 changed=False)
            reason = _compare(candidate, current)
            forced = reason is None
            if reason is None:
                message = (f"refused to promote {model_name} {candidate.version} for tenant {tenant!r}: its "
                           f"{PROMOTION_METRIC} {_fmt(auc)} is worse than {_fmt(current_auc)} of the promoted "
                           f"{previous} (promote with force / --force to override)")
                if not force:
                    raise PromotionRefused(message, tenant=tenant, model=model_name, version=candidate.version,
                                           current=str(previous), auc=auc, current_auc=current_auc)
                reason = f"forced: {PROMOTION_METRIC} {_fmt(auc)} is worse than {_fmt(current_auc)} of {previous}"
            index = self._read_index(folder)
            entry = next(e for e in index["versions"] if e["version"] == candidate.version)
            entry["promoted_at"] = now.isoformat()
            index["promotions"].append({"version": candidate.version, "previous": previous,
                                        "promoted_at": now.isoformat(), "forced": forced, "auc": auc,
                                        "previous_auc": current_auc, "reason": reason})
            # the pointer is what servers read: it moves first; the index keeps the history
            write_json_atomic(folder / POINTER_FILE, {"format": REGISTRY_FORMAT, "tenant": tenant,
                                                      "model": model_name, **entry})
            write_json_atomic(folder / INDEX_FILE, index)
            return Promotion(tenant, model_name, candidate.version, previous, auc, current_auc, forced, now, reason)

    # -- internals -----------------------------------------------------------------------------

    @contextmanager
    def _lock(self, folder: Path) -> Iterator[None]:
        with (folder / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_index(self, folder: Path) -> dict[str, Any]:
        file = folder / INDEX_FILE
        try:
            text = file.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return {"format": REGISTRY_FORMAT, "tenant": None, "model": None, "versions": [], "promotions": []}
        data = _parse(text, file)
        if not isinstance(data.get("versions"), list) or not isinstance(data.get("promotions"), list):
            raise LakeError(f"{file}: corrupt registry index (no versions/promotions lists)")
        return data

    def _entry_to_version(self, tenant: str, model_name: str, entry: Mapping[str, Any]) -> ModelVersion:
        try:
            return ModelVersion(
                tenant=tenant, model=model_name, version=entry["version"],
                path=self.model_dir(tenant, model_name) / entry["version"],
                metrics=dict(entry.get("metrics") or {}), data_window=dict(entry.get("data_window") or {}),
                created_at=datetime.fromisoformat(entry["created_at"]),
                promoted_at=None if entry.get("promoted_at") is None else datetime.fromisoformat(entry["promoted_at"]),
                training_fingerprint=entry.get("training_fingerprint"), n_train=int(entry.get("n_train") or 0),
                params=dict(entry.get("params") or {}), knowtrace_version=entry.get("knowtrace_version"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LakeError(f"corrupt registry entry of {model_name!r} for tenant {tenant!r}: {exc!r}") from None

    def _discard_uncommitted(self, folder: Path, index: Mapping[str, Any]) -> None:
        """Remove what a writer that died left behind: staging folders, artifacts no index names."""
        committed = {e["version"] for e in index["versions"]}
        for path in folder.iterdir():
            if path.is_dir() and (path.name.startswith(".staging-")
                                  or (_VERSION.match(path.name) and path.name not in committed)):
                shutil.rmtree(path, ignore_errors=True)


def _compare(candidate: ModelVersion, current: ModelVersion | None) -> str | None:
    """Why ``candidate`` may replace ``current``, or None when it is worse."""
    if current is None:
        return "first promoted version"
    new, old = candidate.auc, current.auc
    if old is None:
        return f"{current.version} has no {PROMOTION_METRIC}"
    if new is None or new < old:
        return None
    relation = "equal to" if new == old else "better than"
    return f"{PROMOTION_METRIC} {_fmt(new)} {relation} {_fmt(old)} of {current.version}"


def _metric(metrics: Mapping[str, Any]) -> float | None:
    value = metrics.get(PROMOTION_METRIC)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _segment(name: str, what: str) -> str:
    """``name`` as one path segment: unchanged when plain, else percent-encoded (so any tenant works)."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"the {what} name is empty", field=what)
    encoded = quote(name, safe="-_.")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded


def _version_number(version: str) -> int:
    match = _VERSION.match(version)
    if match is None:
        raise InputError(f"not a model version: {version!r} (versions look like v0001)", field="version")
    return int(match.group(1))


def _normalise_version(version: str | int) -> str:
    if isinstance(version, int) and not isinstance(version, bool):
        number = version
    else:
        text = str(version).strip()
        if text.isdigit():
            number = int(text)
        else:
            number = _version_number(text)
    if number < 1:
        raise InputError(f"not a model version: {version!r} (versions start at v0001)", field="version")
    return f"v{number:04d}"


def _parse(text: str, file: Path) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LakeError(f"{file}: corrupt registry file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != REGISTRY_FORMAT:
        raise LakeError(f"{file}: not a registry file of format {REGISTRY_FORMAT}")
    return data


def _jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays as Python values, tuples as lists and NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise InputError(f"cannot store {type(value).__name__} value {value!r} in the registry (JSON only)")


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(folder)

