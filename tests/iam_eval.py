"""A small evaluator of IAM identity-policy semantics within one account, for tests: may a principal whose identity
policies are `identity` and whose permissions boundary is `boundary` make a request?

The rules (IAM User Guide, "Policy evaluation logic", "Permissions boundaries for IAM entities"):
- An explicit Deny in any of the policies ends it: denied.
- Otherwise the request is allowed when some identity-policy statement and some boundary statement allow it (the
  effective permissions are the intersection; no boundary means the identity policies alone decide).
- A statement matches when its Action (or not its NotAction), its Resource (or not its NotResource) and every
  condition match. Actions match case-insensitively with `*`/`?` wildcards, resources case-sensitively.
- Conditions: StringEquals/StringLike/ArnEquals/ArnLike match when the key is present and a value matches;
  their negations (StringNotEquals, …) match when the key is absent or no value matches; `ForAnyValue:` on a
  multivalued key (a list in the context) matches when any of its values does. Any other operator is refused, so a
  policy that starts using one cannot pass unexamined.
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

ADMINISTRATOR_ACCESS = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _listed(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _condition(operator: str, key: str, expected: Any, context: dict[str, Any]) -> bool:
    if operator.startswith("ForAnyValue:"):
        base = operator.removeprefix("ForAnyValue:")
        assert "Not" not in base, f"condition operator {operator} is not evaluated here"
        return any(_condition(base, key, expected, {key: value}) for value in _listed(context.get(key, [])))
    expected = _listed(expected)
    negated = "Not" in operator
    base = operator.replace("Not", "")
    if base in ("StringEquals", "ArnEquals"):
        hit = key in context and context[key] in expected
    elif base in ("StringLike", "ArnLike"):
        hit = key in context and any(fnmatchcase(context[key], e) for e in expected)
    else:
        raise AssertionError(f"condition operator {operator} is not evaluated here")
    return not hit if negated else hit


def _matches(statement: dict, action: str, resource: str, context: dict[str, str]) -> bool:
    if "Action" in statement:
        action_ok = any(fnmatchcase(action.lower(), a.lower()) for a in _listed(statement["Action"]))
    else:
        action_ok = not any(fnmatchcase(action.lower(), a.lower()) for a in _listed(statement["NotAction"]))
    if "Resource" in statement:
        resource_ok = any(fnmatchcase(resource, r) for r in _listed(statement["Resource"]))
    else:
        resource_ok = not any(fnmatchcase(resource, r) for r in _listed(statement["NotResource"]))
    return action_ok and resource_ok and all(
        _condition(op, key, value, context) for op, keys in statement.get("Condition", {}).items()
        for key, value in keys.items())


def allowed(action: str, resource: str, *, identity: list[dict], boundary: dict | None = None,
            context: dict[str, str] | None = None) -> bool:
    """Whether the request `action` on `resource` (with condition keys `context`) is allowed."""
    context = context or {}
    policies = identity + ([boundary] if boundary else [])
    if any(s["Effect"] == "Deny" and _matches(s, action, resource, context)
           for policy in policies for s in policy["Statement"]):
        return False

    def allows(policy: dict) -> bool:
        return any(s["Effect"] == "Allow" and _matches(s, action, resource, context) for s in policy["Statement"])
    return any(allows(p) for p in identity) and (boundary is None or allows(boundary))
