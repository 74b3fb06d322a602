"""Shared fixtures. The jsii runtime (bundled Node, fast provider imports) is set up before any
construct module is imported by a test."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from modules import jsii_runtime  # noqa: E402

jsii_runtime.install()

import cdktf  # noqa: E402
import pytest  # noqa: E402


def new_stack(name: str = "test") -> cdktf.TerraformStack:
    """The smallest stack a construct test needs (an AWS provider, so `terraform validate` could run it)."""
    from cdktf_cdktf_provider_aws.provider import AwsProvider

    stack = cdktf.TerraformStack(cdktf.Testing.app(), name)
    AwsProvider(stack, "aws", region="eu-west-1")
    return stack


def synth(stack: cdktf.TerraformStack) -> dict:
    """Synthesize one stack to parsed JSON, failing the test on any policy-pack finding."""
    from modules.aspects import PolicyPack

    policy = PolicyPack()
    cdktf.Aspects.of(stack).add(policy)
    doc = json.loads(cdktf.Testing.synth(stack))
    policy.raise_for_findings()
    return doc


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
