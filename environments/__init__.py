"""Environment registry: `load("dev")` returns the validated config, with optional `--set` overrides."""
from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any, Iterable

from .config import EnvironmentConfig
from modules.core.validation import ConfigError

NAMES = ("dev", "staging", "prod")


def load(name: str, overrides: Iterable[str] = ()) -> EnvironmentConfig:
    if name not in NAMES:
        raise ConfigError("env", name, "is not a known environment",
                          f"use one of {', '.join(NAMES)}, or add environments/{name}.py and list it in NAMES")
    try:
        config = importlib.import_module(f"{__name__}.{name}").CONFIG
        for override in overrides:
            config = apply_override(config, override)
    except ConfigError as err:
        raise (err if err.field.startswith("--") else err.within(f"environments.{name}")) from None
    return config


def apply_override(config: Any, override: str) -> Any:
    """Apply one `path=value` override (e.g. `network.az_count=3`, `tags.extra.team=ml`); validation re-runs."""
    path, sep, raw = override.partition("=")
    if not sep or not path:
        raise ConfigError("--set", override, "is not of the form field.path=value", "write e.g. --set network.az_count=3")
    return _replace(config, path.split("."), raw, path)


def _replace(node: Any, keys: list[str], raw: str, path: str) -> Any:
    key, rest = keys[0], keys[1:]
    if isinstance(node, dict):
        current = node.get(key, "")
        return {**node, key: _replace(current, rest, raw, path) if rest else _coerce(current, raw, path)}
    fields = {f.name for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else set()
    if key not in fields:
        raise ConfigError("--set", path, "names no config field",
                          f"use one of {', '.join(sorted(fields))}" if fields else "stop at a field that holds a value")
    current = getattr(node, key)
    value = _replace(current, rest, raw, path) if rest else _coerce(current, raw, path)
    return dataclasses.replace(node, **{key: value})


# How a field's type is named in an error ("is not a whole number", not "is not a int").
KINDS = {int: "a whole number", float: "a number", bool: "true or false", dict: "a JSON object",
         tuple: "a list (JSON, or comma-separated)"}


def _coerce(current: Any, raw: str, path: str) -> Any:
    if isinstance(current, str):
        return raw
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.split(",") if isinstance(current, tuple) else raw
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if type(value) is not type(current) and not (isinstance(current, tuple) and value == ""):
        kind = KINDS.get(type(current), type(current).__name__)
        raise ConfigError(path, raw, f"is not {kind}", f"give {kind}")
    return () if value == "" else value
