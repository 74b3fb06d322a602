"""Shared fixtures. The jsii runtime (bundled Node, fast provider imports) is set up before any
construct module is imported by a test."""
from __future__ import annotations

import fnmatch
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import fastsynth  # noqa: E402

fastsynth.install()

import cdktf  # noqa: E402
import pytest  # noqa: E402


TEST_ACCOUNT, TEST_REGION = "123456789012", "eu-west-1"   # the environment of every construct test's stack
TEST_KEY_ADMIN = f"arn:aws:iam::{TEST_ACCOUNT}:role/key-admin"   # administers every KMS key of a construct test's stack


def new_stack(name: str = "test") -> cdktf.TerraformStack:
    """The smallest stack a construct test needs (an AWS provider, so `terraform validate` could run it)."""
    from cdktf_cdktf_provider_aws.provider import AwsProvider

    from modules.aws.encryption import KeyAdministrators
    from modules.core.environment import AwsEnvironment

    stack = cdktf.TerraformStack(cdktf.Testing.app(), name)
    AwsEnvironment(account_id=TEST_ACCOUNT, region=TEST_REGION).bind(stack)
    KeyAdministrators((TEST_KEY_ADMIN,)).bind(stack)
    AwsProvider(stack, "aws", region=TEST_REGION)
    return stack


def make_props(props_class, **values):
    """Construct props from flat keyword arguments: those naming a field of the props' `settings` type go into a
    settings object (so a test can say `make_props(DatabaseProps, **BASE, multi_az=False)`)."""
    import dataclasses
    import typing

    settings_class = typing.get_type_hints(props_class)["settings"]
    own = {f.name for f in dataclasses.fields(props_class)}
    settings = {k: values.pop(k) for k in [k for k in values if k not in own]
                if k in {f.name for f in dataclasses.fields(settings_class)}}
    if "settings" not in values:
        values["settings"] = settings_class(**settings)
    return props_class(**values)


def synth(stack: cdktf.TerraformStack) -> dict:
    """Synthesize one stack to parsed JSON, failing the test on any policy-pack finding."""
    from modules.core.aspects import PolicyPack

    policy = PolicyPack()
    cdktf.Aspects.of(stack).add(policy)
    doc = json.loads(cdktf.Testing.synth(stack))
    policy.raise_for_findings()
    return doc


def only(res: dict, rtype: str) -> tuple[str, dict]:
    """The one resource of a type, as (logical id, body); fails if there are zero or several."""
    ((address, body),) = res[rtype].items()
    return address, body


def key_policy_denies(policy: dict, *, action: str, context: dict) -> bool:
    """Whether an explicit Deny of a KMS key policy applies to a request: `context` holds the request's condition keys
    (`aws:PrincipalArn` for an IAM principal, none for a service principal; `kms:ViaService` when a service calls for
    the principal). Evaluates exactly the operators the key policies use and refuses any other, so a new one cannot
    pass unexamined."""
    def holds(operator: str, key: str, expected) -> bool:
        expected = expected if isinstance(expected, list) else [expected]
        if operator == "Null":                                   # "true": the key is absent
            (value,) = expected
            return (key not in context) == (value == "true")
        if operator.endswith("IfExists") and key not in context:
            return True
        if key not in context:
            return False
        actual, base = str(context[key]), operator.removesuffix("IfExists")
        if base in ("ArnEquals", "StringEquals"):
            return actual in expected
        if base in ("ArnLike", "StringLike"):
            return any(fnmatch.fnmatchcase(actual, e) for e in expected)
        if base == "Bool":
            return actual.lower() in [e.lower() for e in expected]
        raise AssertionError(f"condition operator {operator} is not evaluated here")

    for stmt in policy["Statement"]:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        if stmt["Effect"] != "Deny" or not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions):
            continue
        assert stmt["Principal"] in ({"AWS": "*"}, "*"), f"deny {stmt['Sid']} names principals: evaluate them too"
        if all(holds(op, key, value) for op, keys in stmt.get("Condition", {}).items() for key, value in keys.items()):
            return True
    return False


def strings(value):
    """Every string inside a parsed JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def looks_like_secret(text: str) -> bool:
    """A literal of 12+ characters mixing upper case, lower case and digits, with no separators a name,
    ARN, window or reference would have."""
    return (not text.startswith("${") and len(text) >= 12 and re.fullmatch(r"[A-Za-z0-9!#$%&*+=?^_~]+", text)
            is not None and re.search(r"[A-Z]", text) is not None and re.search(r"[a-z]", text) is not None
            and re.search(r"\d", text) is not None)


@pytest.fixture
def stack() -> cdktf.TerraformStack:
    return new_stack()


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Path:
    """Every environment synthesized once per session, exactly as `python main.py` does it."""
    import main

    out = tmp_path_factory.mktemp("synth") / "cdktf.out"
    main.synthesize(list(main.environments.NAMES), [], out)
    return out


@pytest.fixture(scope="session")
def stacks(synthesized: Path) -> dict[str, dict]:
    """Parsed cdk.tf.json of every synthesized stack, by stack name."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(synthesized.glob("stacks/*/cdk.tf.json"))}
