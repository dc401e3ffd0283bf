"""Fitting the manager's values to a service's own pydantic model.

The rules (docs/adopting.md owns them; the Rust client and config-agent
follow the same):

- Only the fields the model declares are read; every other key the manager
  holds is left out before validating, so a model with ``extra="forbid"``
  keeps working while the manager's schema grows.
- A key the manager does not send (an unset secret, a field it does not
  know) takes the inherited environment variable ``FIELD.upper()`` when one
  is set, else the model default.
- Otherwise the manager's value wins over the environment, except for a
  variable listed in ``CONFIG_PINNED_ENV``: it keeps its inherited value, and
  the field is reported as pinned.
- When values do not fit, the failing fields (named by pydantic's error
  locations, never with their values) are dropped and take their default, so
  the service still starts; the caller reports them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

#: A config key as the manager accepts it (``domain::validate_key``).
CONFIG_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
#: At most this many names in a report's ``fields`` or ``pinned`` (decision 4).
MAX_REPORTED = 64


def env_value(raw: str) -> Any:
    """An inherited variable's value: JSON arrays/objects are parsed, anything
    else is given to pydantic as the string (its lax mode converts numbers
    and booleans)."""
    text = raw.strip()
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return raw
    return raw


@dataclass(frozen=True)
class Fit(Generic[T]):
    """A model built from the manager's values."""

    instance: T
    #: Config keys whose value did not fit and took the model default.
    failed: tuple[str, ...] = ()
    #: Config key → variable whose inherited value was used (``CONFIG_PINNED_ENV``).
    pinned: dict[str, str] = field(default_factory=dict)
    #: The first validation error (with every value), when ``failed``.
    error: ValidationError | None = None


def failing_keys(error: ValidationError) -> list[str]:
    """The top-level names in ``error``'s locations (never its inputs)."""
    names: list[str] = []
    for item in error.errors(include_input=False, include_url=False):
        loc = item.get("loc") or ()
        if loc and isinstance(loc[0], str) and loc[0] not in names:
            names.append(loc[0])
    return names


def reportable(keys: Collection[str]) -> list[str]:
    """The keys a report may carry: the manager's key grammar, at most 64."""
    return [k for k in keys if CONFIG_KEY.fullmatch(k)][:MAX_REPORTED]


def fit_model(
    model: type[T],
    raw: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    pinned_env: Collection[str] = (),
) -> Fit[T]:
    """``model`` from ``raw`` (see the module rules). Raises
    ``ValidationError`` only when the model cannot be built even from its
    defaults (a required field without a value)."""
    data: dict[str, Any] = {}
    #: pydantic's name for a field (alias when set) → the config key.
    config_key: dict[str, str] = {}
    pinned: dict[str, str] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        config_key[key] = name
        present = False
        if name in raw:
            data[key], present = raw[name], True
        elif key in raw:
            data[key], present = raw[key], True
            config_key[key] = key
        variable = name.upper()
        inherited = environ.get(variable)
        if inherited is None:
            continue
        if variable in pinned_env:
            data[key] = env_value(inherited)
            pinned[config_key[key]] = variable
        elif not present:
            data[key] = env_value(inherited)
    failed: list[str] = []
    first: ValidationError | None = None
    while True:
        try:
            instance = model.model_validate(data)
        except ValidationError as e:
            bad = [k for k in failing_keys(e) if k in data]
            if not bad:
                raise
            first = first or e
            for k in bad:
                del data[k]
                failed.append(config_key.get(k, k))
                pinned.pop(config_key.get(k, k), None)
            continue
        return Fit(instance, tuple(failed), pinned, first)


def build_model(
    model: type[T],
    raw: Mapping[str, Any],
    environ: Mapping[str, str] = os.environ,
    pinned_env: Collection[str] = (),
) -> T:
    """``model`` from the manager's values with every value fitting: raises
    ``ValidationError`` naming the failing fields otherwise."""
    fit = fit_model(model, raw, environ, pinned_env)
    if fit.error is not None:
        raise fit.error
    return fit.instance
