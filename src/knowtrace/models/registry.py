"""The registry of learner models: every ``KnowledgeModel`` subclass with a ``name`` lands here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from knowtrace.exceptions import InputError

if TYPE_CHECKING:
    from knowtrace.models.base import KnowledgeModel

__all__ = ["MODELS", "available_models", "get_model", "get_model_class", "register"]

#: model name -> model class; filled by ``KnowledgeModel.__init_subclass__``.
MODELS: dict[str, type[KnowledgeModel]] = {}


def register(cls: type[KnowledgeModel]) -> type[KnowledgeModel]:
    """Add a model class under its ``name``; a second class with the same name is an error."""
    existing = MODELS.get(cls.name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"model name {cls.name!r} is taken by {existing.__module__}.{existing.__qualname__}")
    MODELS[cls.name] = cls
    return cls


def _load_builtins() -> None:
    import knowtrace.models  # noqa: F401  (registers the built-in models)


def get_model_class(name: str) -> type[KnowledgeModel]:
    """The model class registered under ``name``."""
    _load_builtins()
    try:
        return MODELS[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; known: {', '.join(available_models())}") from None


def get_model(name: str, **params: Any) -> KnowledgeModel:
    """A new, unfitted model ``name`` with hyperparameters ``params``."""
    return get_model_class(name)(**params)


def available_models() -> list[str]:
    """The names of all registered models, sorted."""
    _load_builtins()
    return sorted(MODELS)
