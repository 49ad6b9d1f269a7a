"""The model registry: versions, artifacts that load back, promotion rules, atomic writes."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from knowtrace.exceptions import InputError, LakeError
from knowtrace.lake import Lake
from knowtrace.models import ArtifactError, get_model
from knowtrace.registry import ModelRegistry, PromotionRefused
from knowtrace.registry import registry as registry_module

ANSWERS = [(f"l{n}", f"i{k}", (f"c{k % 3}",), int((n + k) % 3 != 0)) for n in range(6) for k in range(8)]
WINDOW = {"first_timestamp": "2026-01-01T00:00:00+00:00", "last_timestamp": "2026-02-01T00:00:00+00:00",
          "answers": len(ANSWERS), "loads": ["20260201T000000000000Z-abcdef"]}


@pytest.fixture
def table(make_table) -> pa.Table:
    return make_table(ANSWERS)


def fitted(table: pa.Table, name: str = "elo", **params: object):
    return get_model(name, **params).fit(table)


def metrics(auc: float | None) -> dict[str, object]:
    return {"auc": float("nan") if auc is None else auc, "acc": 0.6, "rmse": 0.45, "logloss": 0.65, "ece": 0.04,
            "n": 48, "per_concept": {"c0": {"auc": 0.5}}}


def test_register_versions_and_load_back(lake: Lake, table: pa.Table) -> None:
    registry = ModelRegistry(lake.root)
    assert registry.versions("school-1", "elo") == [] and registry.promoted("school-1", "elo") is None
    model = fitted(table)
    first = registry.register(model, tenant="school-1", metrics=metrics(0.7), data_window=WINDOW)
    second = registry.register(fitted(table, k_a=0.5), tenant="school-1", metrics=metrics(None),
                               data_window=WINDOW)
    assert (first.version, second.version, first.number, second.number) == ("v0001", "v0002", 1, 2)
    assert first.path == lake.root / "models" / "school-1" / "elo" / "v0001"
    assert (first.path / "model.json").is_file() and (first.path / "state.npz").is_file()
    assert [v.version for v in registry.versions("school-1", "elo")] == ["v0001", "v0002"]
    assert registry.latest("school-1", "elo") == second
    assert registry.get("school-1", "elo", 2) == registry.get("school-1", "elo", "v0002") == second
    assert first.auc == 0.7 and second.auc is None and second.metrics["auc"] is None  # NaN is stored as null
    assert first.data_window == WINDOW and first.training_fingerprint == model.training_fingerprint_
    assert first.n_train == len(ANSWERS) and first.params["k_a"] == 1.0 and second.params["k_a"] == 0.5
    assert first.created_at.tzinfo is not None and first.promoted_at is None
    assert registry.models() == [("school-1", "elo")] and registry.models("other") == []
    index = json.loads((lake.root / "models" / "school-1" / "elo" / "registry.json").read_text())
    assert [e["version"] for e in index["versions"]] == ["v0001", "v0002"]
    # the artifact is the model: it predicts exactly what the registered one did
    loaded = registry.load(first)
    assert loaded.name == "elo" and loaded.training_fingerprint_ == model.training_fingerprint_
    np.testing.assert_array_equal(loaded.predict_proba(table), model.predict_proba(table))
    assert not np.array_equal(registry.load(second).predict_proba(table), model.predict_proba(table))


def test_first_promotion_is_always_allowed(lake: Lake, table: pa.Table) -> None:
    registry = ModelRegistry(lake.root)
    version = registry.register(fitted(table), tenant="t", metrics=metrics(None), data_window=WINDOW)
    promotion = registry.promote("t", "elo", "v0001")
    assert (promotion.version, promotion.previous, promotion.forced, promotion.reason) == \
        ("v0001", None, False, "first promoted version")
    promoted = registry.promoted("t", "elo")
    assert promoted is not None and promoted.version == version.version and promoted.promoted_at is not None
    again = registry.promote("t", "elo", 1)
    assert not again.changed and "already the promoted version" in again.reason


def test_promotion_refuses_a_worse_auc_unless_forced(lake: Lake, table: pa.Table) -> None:
    registry = ModelRegistry(lake.root)
    for auc in (0.70, 0.65, 0.65, 0.80, None):
        registry.register(fitted(table), tenant="t", metrics=metrics(auc), data_window=WINDOW)
    registry.promote("t", "elo", "v0001")
    with pytest.raises(PromotionRefused) as refused:
        registry.promote("t", "elo", "v0002")
    message = str(refused.value)
    assert "v0002" in message and "0.6500" in message and "0.7000" in message and "v0001" in message
    assert (refused.value.auc, refused.value.current_auc, refused.value.current) == (0.65, 0.70, "v0001")
    assert registry.promoted("t", "elo").version == "v0001"  # type: ignore[union-attr]
    forced = registry.promote("t", "elo", "v0002", force=True)  # a rollback to a worse model
    assert forced.forced and forced.previous == "v0001" and forced.reason.startswith("forced")
    tie = registry.promote("t", "elo", "v0003")  # equal AUC: not worse
    assert not tie.forced and "equal to" in tie.reason
    better = registry.promote("t", "elo", "v0004")
    assert "better than 0.6500 of v0003" in better.reason
    with pytest.raises(PromotionRefused, match="n/a is worse than 0.8000"):  # no AUC counts as worse
        registry.promote("t", "elo", "v0005")
    assert registry.promoted("t", "elo").version == "v0004"  # type: ignore[union-attr]
    history = registry.promotions("t", "elo")
    assert [(h["version"], h["previous"], h["forced"]) for h in history] == [
        ("v0001", None, False), ("v0002", "v0001", True), ("v0003", "v0002", False), ("v0004", "v0003", False)]
    assert registry.get("t", "elo", "v0001").promoted_at is not None
    assert registry.get("t", "elo", "v0005").promoted_at is None


def test_unknown_models_versions_and_bad_input(lake: Lake, table: pa.Table, tmp_path: Path) -> None:
    registry = ModelRegistry(lake.root)
    with pytest.raises(InputError, match="no model 'elo' is registered for tenant 't'"):
        registry.promote("t", "elo", "v0001")
    registry.register(fitted(table), tenant="t", metrics=metrics(0.7), data_window=WINDOW)
    with pytest.raises(InputError, match=r"no version v0007 of model 'elo' for tenant 't' \(registered: v0001\)"):
        registry.promote("t", "elo", "v0007")
    with pytest.raises(InputError, match="not a model version: 'latest'"):
        registry.get("t", "elo", "latest")
    with pytest.raises(InputError, match="only a fitted model"):
        registry.register(get_model("elo"), tenant="t", metrics={}, data_window={})
    with pytest.raises(InputError, match="tenant name is empty"):
        registry.versions("", "elo")
    with pytest.raises(LakeError, match="not a knowtrace lake"):
        ModelRegistry(tmp_path / "nowhere").register(fitted(table), tenant="t", metrics={}, data_window={})
    with pytest.raises(InputError, match="cannot store object"):
        registry.register(fitted(table), tenant="t", metrics={"auc": object()}, data_window={})
    assert [v.version for v in registry.versions("t", "elo")] == ["v0001"]


def test_any_tenant_name_is_one_folder(lake: Lake, table: pa.Table) -> None:
    registry = ModelRegistry(lake.root)
    for tenant in ("school 42/a", "..", ".hidden"):
        version = registry.register(fitted(table), tenant=tenant, metrics=metrics(0.6), data_window=WINDOW)
        assert version.path.parent.parent.parent == lake.root / "models"
        assert not version.path.parent.parent.name.startswith(".")
        registry.promote(tenant, "elo", version.version)
        assert registry.promoted(tenant, "elo").tenant == tenant  # type: ignore[union-attr]
    assert registry.models() == sorted([("school 42/a", "elo"), ("..", "elo"), (".hidden", "elo")])


def test_a_failed_register_leaves_no_version(lake: Lake, table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ModelRegistry(lake.root)
    registry.register(fitted(table), tenant="t", metrics=metrics(0.7), data_window=WINDOW)
    folder = registry.model_dir("t", "elo")

    def crash(path: Path, data: dict) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(registry_module, "write_json_atomic", crash)
    with pytest.raises(OSError, match="disk full"):
        registry.register(fitted(table), tenant="t", metrics=metrics(0.8), data_window=WINDOW)
    monkeypatch.undo()
    assert [v.version for v in registry.versions("t", "elo")] == ["v0001"]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["v0001"]
    # a writer killed between the artifact's rename and the index leaves folders no index names
    (folder / "v0002").mkdir()
    (folder / ".staging-v0002-dead").mkdir()
    version = registry.register(fitted(table), tenant="t", metrics=metrics(0.8), data_window=WINDOW)
    assert version.version == "v0002" and (version.path / "model.json").is_file()
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["v0001", "v0002"]


def test_a_reader_never_sees_a_half_written_version(lake: Lake, table: pa.Table) -> None:
    registry = ModelRegistry(lake.root)
    reader = ModelRegistry(lake.root)  # as a server would hold its own
    expected = fitted(table).predict_proba(table)
    stop = threading.Event()
    seen: set[str] = set()
    errors: list[BaseException] = []

    def poll() -> None:
        while not stop.is_set():
            try:
                current = reader.promoted("t", "elo")
                versions = reader.versions("t", "elo")
                if current is not None:
                    assert current.version in {v.version for v in versions}
                    np.testing.assert_allclose(reader.load(current).predict_proba(table), expected)
                    seen.add(current.version)
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised in the test thread
                errors.append(exc)
                return

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        for n in range(12):
            version = registry.register(fitted(table), tenant="t", metrics=metrics(0.6 + n / 100),
                                        data_window=WINDOW)
            registry.promote("t", "elo", version.version)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[0]
    assert seen and registry.promoted("t", "elo").version == "v0012"  # type: ignore[union-attr]


def test_load_refuses_an_artifact_that_is_not_the_registered_one(lake: Lake, table: pa.Table) -> None:
    registry = ModelRegistry(lake.root)
    version = registry.register(fitted(table), tenant="t", metrics=metrics(0.7), data_window=WINDOW)
    other = table.slice(0, 20)
    fitted(other).save(version.path)  # overwritten behind the registry's back
    with pytest.raises(ArtifactError, match="registry entry says elo trained on"):
        registry.load(version)
