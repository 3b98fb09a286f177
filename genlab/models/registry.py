"""The registry of models: one plain dict, filled by `@register_model` in each model's file."""
from __future__ import annotations

from ..config import ConfigError, from_dict

MODELS: dict[str, type] = {}


def register_model(name: str):
    """Register a model class under `name` in the one plain dict of models."""
    def decorate(cls):
        cls.name = name
        MODELS[name] = cls
        return cls
    return decorate


def unregister_model(name: str) -> None:
    """Remove a model (tests register throw-away models and clean up after themselves)."""
    MODELS.pop(name, None)


def get_model_class(name: str):
    """The model class registered under `name`, or a ConfigError listing the known names."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(name: str, model_config: dict | None = None):
    """Build a registered model from a plain dict of its config fields."""
    cls = get_model_class(name)
    return cls(from_dict(cls.config_class, model_config or {}))
