"""EventBridge rules as typed data, and the pure checks both the environment config and modules/aws/events.py run.

Pure Python on purpose: environments/ imports it before the jsii runtime starts, so it must not import cdktf.
An event pattern is a dict (JSON object) as EventBridge documents it; a JSON string is accepted and parsed,
so `--set 'events.rules=[...]'` and config files can pass either.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Literal

from ..core.validation import ConfigError, require

# Top-level fields of an EventBridge event that a pattern may match (events reference, "Event structure").
PATTERN_KEYS = ("version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail")
# Rule names become '<prefix>-<name>' (EventBridge: 64 chars) and queues '<prefix>-events-<name>-dlq' (SQS: 80);
# with the longest prefix ('<project 16>-<env 16>') 30 characters fit both.
_RULE_NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,28}[a-z0-9])?")
BUSES = ("custom", "default")
LANDING_RULE = "landing-object-created"       # the two rules every environment has (modules/aws/events.py)
APPLICATION_RULE = "application-events"
DEFAULT_RULE_NAMES = (LANDING_RULE, APPLICATION_RULE)
_PATTERN_FIX = ("give a JSON object of event fields to match, e.g. "
                "{\"source\": [\"app.orders\"], \"detail-type\": [\"OrderPlaced\"]}")


def event_pattern(field: str, value: Any) -> dict[str, Any]:
    """The pattern as a dict, or one ConfigError naming what is wrong (bad JSON, empty, unknown key, bad matcher)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ConfigError(field, value, f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})",
                              _PATTERN_FIX) from None
    require(isinstance(value, dict) and bool(value), field, value, "is not a non-empty JSON object", _PATTERN_FIX)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(field, value, f"is not JSON-serialisable ({err})",
                          "use only strings, numbers, booleans, null, lists and objects") from None
    unknown = sorted(str(k) for k in value if k not in PATTERN_KEYS)
    require(not unknown, field, value, f"matches unknown event fields {unknown}",
            f"use only {', '.join(PATTERN_KEYS)} at the top level (nest the rest under 'detail')")
    for key, matcher in value.items():
        if key == "detail":
            require(isinstance(matcher, dict) and bool(matcher), f"{field}.detail", matcher,
                    "is not a non-empty object", "nest the detail fields to match, e.g. {\"bucket\": {\"name\": [\"x\"]}}")
        _matchers(f"{field}.{key}", matcher)
    return value


def _matchers(field: str, value: Any) -> None:
    """Every leaf of a pattern is a non-empty list of values or matchers; objects nest further fields."""
    if isinstance(value, dict):
        require(bool(value), field, value, "is an empty object", "nest at least one field, or remove it")
        for key, nested in value.items():
            _matchers(f"{field}.{key}", nested)
        return
    require(isinstance(value, list) and bool(value), field, value, "is not a non-empty list of values to match",
            "wrap the value in a list, e.g. [\"value\"] (EventBridge matches any element)")


@dataclass(frozen=True, kw_only=True)
class EventRule:
    """One rule: events matching `event_pattern` on `bus` ('custom' = this environment's bus, 'default' = where
    AWS services such as S3 send) land in their own encrypted SQS queue with a dead-letter queue."""
    name: str                                   # kebab-case, unique; queue '<prefix>-events-<name>'
    event_pattern: dict[str, Any]
    bus: Literal["custom", "default"] = "custom"
    description: str = ""

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and _RULE_NAME.fullmatch(self.name) is not None, "name", self.name,
                "is not a valid rule name", "use 1-30 lowercase letters, digits and inner hyphens, starting with a letter")
        require(self.bus in BUSES, "bus", self.bus, "is not an event bus of this platform",
                "use 'custom' (the environment's bus) or 'default' (AWS service events such as S3)")
        require(isinstance(self.description, str) and len(self.description) <= 512, "description", self.description,
                "is not a string of at most 512 characters", "shorten the description")
        object.__setattr__(self, "event_pattern", event_pattern("event_pattern", self.event_pattern))


def event_rules(field: str, value: Any, *, reserved: Iterable[str] = DEFAULT_RULE_NAMES) -> tuple[EventRule, ...]:
    """Rules from config: EventRule objects or dicts with the same fields. The CLI hands a value it could not
    parse as JSON over as comma-split strings; they are joined again so the error shows the JSON parser's reason."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if items and all(isinstance(i, str) for i in items):
        text = ",".join(items)
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(field, text, f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})",
                              "pass a JSON list of rules, e.g. [{\"name\": \"orders\", \"event_pattern\": "
                              "{\"source\": [\"app.orders\"]}}]") from None
        items = items if isinstance(items, list) else [items]
    rules: list[EventRule] = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if isinstance(item, dict):
            extra = sorted(set(item) - {"name", "event_pattern", "bus", "description"})
            require(not extra and "name" in item and "event_pattern" in item, where, item,
                    "is not an event rule", "give an object with name, event_pattern and optionally bus, description")
            try:
                item = EventRule(**item)
            except ConfigError as err:
                raise err.within(where) from None
        require(isinstance(item, EventRule), where, item, "is not an event rule",
                "give an EventRule or an object with name and event_pattern")
        rules.append(item)
    names = [r.name for r in rules]
    for name in names:
        require(name not in reserved, f"{field}.name", name, "is the name of a default rule",
                f"choose a name other than {', '.join(reserved)}")
        require(names.count(name) == 1, f"{field}.name", name, "is used by two rules", "give every rule its own name")
    return tuple(rules)
