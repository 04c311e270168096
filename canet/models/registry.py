"""Model registry: ``create_model(name, **kwargs)`` and ``list_models()``.

Every network the package knows is registered under a short name. A model made
by :func:`create_model` remembers its name and keyword arguments in
``model.canet_spec`` so that checkpoints can rebuild it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from canet.errors import CanetError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

F = TypeVar("F", bound=Callable[..., nn.Module])


def register_model(name: str) -> Callable[[F], F]:
    """Decorator that registers a model class or factory under ``name``."""

    def wrap(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with ``kwargs``.

    Raises:
        CanetError: ``name`` is not registered (the message lists valid names),
            or ``kwargs`` do not fit the model.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise CanetError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())}"
        ) from None
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise CanetError(f"bad arguments for model {name!r}: {exc}") from None
    model.canet_spec = {"name": name, "kwargs": dict(kwargs)}  # type: ignore[assignment]
    return model
