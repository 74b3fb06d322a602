"""Environment registry: `load("dev")` returns the validated config, with optional `--set` overrides;
`load_all(names)` loads several and checks them against each other (account isolation)."""
from __future__ import annotations

import dataclasses
import importlib
import json
from typing import Any, Iterable

from .config import EnvironmentConfig
from modules.core.validation import ConfigError

NAMES = ("dev", "staging", "prod")


def load(name: str, overrides: Iterable[str] = ()) -> EnvironmentConfig:
    config = _load(name, overrides)
    # Also against the other configured environments as written: synthesizing prod alone (or with an override)
    # must still refuse an account or state bucket that a non-production environment uses.
    check_isolation(config, [_configured(other) for other in NAMES if other != name])
    _check_own_account(config)
    return config


def _load(name: str, overrides: Iterable[str]) -> EnvironmentConfig:
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


def _check_own_account(config: EnvironmentConfig) -> None:
    try:
        config.check_own_account()
    except ConfigError as err:
        raise err.within(f"environments.{config.name}") from None


def load_all(names: Iterable[str], overrides: Iterable[str] = ()) -> list[EnvironmentConfig]:
    """`load` each environment, then check the loaded ones against each other (an override applied to all of them,
    e.g. `--set account_id=...`, can put production and non-production in one account)."""
    overrides = list(overrides)
    configs = [_load(name, overrides) for name in names]
    for i, config in enumerate(configs):
        loaded = {c.name for c in configs}
        check_isolation(config, configs[:i] + configs[i + 1:] + [_configured(o) for o in NAMES if o not in loaded])
    for config in configs:
        _check_own_account(config)
    return configs


def _configured(name: str) -> EnvironmentConfig:
    return importlib.import_module(f"{__name__}.{name}").CONFIG


def check_isolation(config: EnvironmentConfig, others: Iterable[EnvironmentConfig]) -> None:
    """Refuse, naming `config`'s field: production and non-production in one AWS account or one state bucket; two
    environments of one account with different state (one state stack per account); a state bucket in two
    accounts; two GuardDuty detectors in one account (AWS allows one per account and region); and, in one account, a
    name prefix that is another's plus '-' (the CI boundaries scope roles by `<prefix>-*`, which would match both)."""
    where = f"environments.{config.name}"
    others = [other for other in others if other.name != config.name]
    for other in others:     # production isolation first: it is the error that matters when several apply
        if config.production != other.production:
            prod, nonprod = (config, other) if config.production else (other, config)
            if config.account_id == other.account_id:
                raise ConfigError(f"{where}.account_id", config.account_id,
                                  f"is shared by production environment {prod.name} and non-production environment "
                                  f"{nonprod.name}", f"give {prod.name} an AWS account of its own (one account per "
                                  "environment, README 'Adding or changing an environment')")
            if config.state.bucket == other.state.bucket:
                raise ConfigError(f"{where}.state.bucket", config.state.bucket,
                                  f"holds the state of production environment {prod.name} and of non-production "
                                  f"environment {nonprod.name}", f"give {prod.name} the state bucket of its own account")
    for other in others:
        if config.account_id == other.account_id and (config.prefix.startswith(f"{other.prefix}-")
                                                      or other.prefix.startswith(f"{config.prefix}-")):
            raise ConfigError(f"{where}.name", config.name, f"shares account {config.account_id} with {other.name}, "
                              f"and role/{min(config.prefix, other.prefix, key=len)}-* would match both environments' "
                              "roles", "rename one so neither name is the other's plus '-', or give it its own account")
        if config.account_id == other.account_id and config.state != other.state:
            raise ConfigError(f"{where}.state", config.state.bucket,
                              f"differs from the state of {other.name} ({other.state.bucket}), in the same account "
                              f"{config.account_id}", "environments in one account share one StateConfig (one state "
                              "bucket, key and CI roles per account: environments/common.py state_in)")
        if config.account_id != other.account_id and config.state.bucket == other.state.bucket:
            raise ConfigError(f"{where}.state.bucket", config.state.bucket,
                              f"is also the state bucket of {other.name} in account {other.account_id}",
                              "each account keeps its state in a bucket of its own (environments/common.py state_in)")
        if config.account_id == other.account_id and config.guardrails.guardduty and other.guardrails.guardduty:
            raise ConfigError(f"{where}.guardrails.guardduty", True,
                              f"is also on in {other.name}, in the same account {config.account_id}, and AWS allows "
                              "one GuardDuty detector per account and region", f"keep it on in one of them; turn it "
                              f"(and cloudtrail) off in the other with off_reason='shares the account of {other.name}'")


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
