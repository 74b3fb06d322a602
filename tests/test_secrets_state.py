"""Which generated secrets reach Terraform state, shown by a real apply (docs/design.md §9).

PlatformSecrets (Airflow keys, Grafana admin password) and the Cache (Redis AUTH token) are applied to the patched
emulator (moto) with real Terraform and the real hashicorp/aws 5.100.0 provider; the generated values are read back
from the emulator's Secrets Manager and searched for in the state file and in `terraform show -json`. The platform
secrets must be in neither; the AUTH token is, in exactly the places the provider gives no write-only argument for.
Skips locally without terraform, the mirror or moto and fails on CI, like tests/test_rehearsal.py.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import cdktf
import pytest

from tests.harness import find_provider_mirror
from tools import rehearse

ACCOUNT, REGION, PREFIX = "123456789012", "eu-west-1", "secrets-state"
STACK = "secrets-state"
PLATFORM_FIELDS = {f"{PREFIX}/airflow/keys": ("fernet-key", "jwt-secret", "api-secret-key"),
                   f"{PREFIX}/grafana/admin": ("admin-password",)}
AUTH_TOKEN_SECRET = f"elasticache/{PREFIX}-broker/auth-token"


@pytest.fixture(scope="module")
def tools_present() -> None:
    if shutil.which("terraform") is None or find_provider_mirror() is None or rehearse.moto_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("terraform, the hashicorp/aws 5.100.0 filesystem mirror or moto_server is missing on CI")
        pytest.skip("terraform, the provider mirror or moto_server is not on this machine")


def secrets_stack(endpoint: str, state_dir: Path) -> str:
    """The two constructs that generate secrets, on the smallest network the cache accepts."""
    from cdktf_cdktf_provider_aws import subnet, vpc

    from modules.aws.cache import Cache, CacheProps
    from modules.aws.encryption import EncryptionKey, EncryptionKeyProps, KeyAdministrators
    from modules.aws.platform_secrets import PlatformSecrets, PlatformSecretsProps
    from modules.aws.settings import CacheSettings
    from modules.core.environment import AwsEnvironment
    from stacks.backend import emulator_backend
    from stacks.provider import Emulator, aws_provider

    stack = cdktf.TerraformStack(cdktf.Testing.app(), STACK)
    emulator = Emulator(endpoint=endpoint, state_dir=str(state_dir))
    AwsEnvironment(account_id=ACCOUNT, region=REGION).bind(stack)
    KeyAdministrators((f"arn:aws:iam::{ACCOUNT}:role/key-admin",)).bind(stack)
    aws_provider(stack, region=REGION, account_id=ACCOUNT, emulator=emulator)
    emulator_backend(stack, emulator)
    network = vpc.Vpc(stack, "vpc", cidr_block="10.0.0.0/16")
    subnets = [subnet.Subnet(stack, f"subnet-{az}", vpc_id=network.id, cidr_block=f"10.0.{i}.0/24",
                             availability_zone=f"{REGION}{az}") for i, az in enumerate("ab")]
    logs = EncryptionKey(stack, "logs-key", props=EncryptionKeyProps(alias=f"{PREFIX}-logs", description="logs",
                                                                    deletion_window_days=7))
    PlatformSecrets(stack, "platform-secrets", props=PlatformSecretsProps(prefix=PREFIX))
    Cache(stack, "cache", props=CacheProps(
        name=f"{PREFIX}-broker", vpc_id=network.id, subnet_ids=tuple(s.id for s in subnets),
        logs_kms_key_arn=logs.arn, settings=CacheSettings(multi_az=False, num_nodes=1)))
    return cdktf.Testing.synth(stack)


def terraform(stack_dir: Path, env: dict[str, str], *args: str, timeout: float = 240) -> str:
    return rehearse.run(["terraform", *args, "-input=false", "-no-color"], cwd=stack_dir, env=env,
                        timeout=timeout).stdout


def secret_values(endpoint: str) -> dict[str, str]:
    """The current value of every secret in the emulator, by name."""
    import boto3

    client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="test",
                          aws_secret_access_key="test")
    names = [s["Name"] for s in client.list_secrets()["SecretList"]]
    return {name: client.get_secret_value(SecretId=name)["SecretString"] for name in names}


def generated_platform_values(values: dict[str, str]) -> dict[str, str]:
    """'<secret>:<field>' -> generated value; the Fernet key also as the 32 random characters it encodes."""
    found = {f"{name}:{field}": json.loads(values[name])[field] for name, fields in PLATFORM_FIELDS.items()
             for field in fields}
    found[f"{PREFIX}/airflow/keys:fernet-key (raw)"] = base64.b64decode(found[f"{PREFIX}/airflow/keys:fernet-key"]).decode()
    assert all(len(v) >= 32 for v in found.values()), "the emulator returned no generated values"
    return found


def strings(value, path: str = ""):
    """(path, string) of every string in a JSON document, at any depth."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def holders(state: dict, secret: str) -> set[str]:
    """Addresses (`[data.]type.name`) of the state's resources with an attribute containing `secret`."""
    return {f"{'data.' if r['mode'] == 'data' else ''}{r['type']}.{r['name']}"
            for r in state["resources"] for instance in r["instances"]
            if any(secret in s for _, s in strings(instance))}


def read_state(stack_dir: Path, env: dict[str, str], state_file: Path) -> tuple[dict, str, str]:
    shown = rehearse.run(["terraform", "show", "-json", "-no-color"], cwd=stack_dir, env=env, timeout=120).stdout
    return json.loads(state_file.read_text()), state_file.read_text(), shown


@pytest.mark.slow
def test_applied_state_holds_no_generated_platform_secret_and_the_auth_token_only_where_documented(
        tools_present, tmp_path, monkeypatch):
    from modules.aws import platform_secrets

    env = rehearse.terraform_env(tmp_path / "terraform")
    stack_dir, state_dir = tmp_path / STACK, tmp_path / "state"
    stack_dir.mkdir()
    state_file = state_dir / f"terraform.{STACK}.tfstate"
    with rehearse.moto_server(tmp_path / "moto.log") as endpoint:
        (stack_dir / "cdk.tf.json").write_text(secrets_stack(endpoint, state_dir))
        terraform(stack_dir, env, "init")
        terraform(stack_dir, env, "apply", "-auto-approve", "-parallelism=10")
        values = secret_values(endpoint)
        generated = generated_platform_values(values)
        state, state_text, shown = read_state(stack_dir, env, state_file)
        assert {name: holders(state, v) for name, v in generated.items()} == {name: set() for name in generated}
        assert [name for name, v in generated.items() if v in state_text or v in shown] == []
        # Terraform keeps only the version numbers of what it wrote.
        versions = {r["name"].split("_")[1]: r["instances"][0]["attributes"] for r in state["resources"]
                    if r["type"] == "aws_secretsmanager_secret_version"}
        for name in ("airflow-keys-version", "grafana-admin-version"):
            assert (versions[name]["secret_string"], versions[name]["secret_string_wo_version"],
                    versions[name]["has_secret_string_wo"]) == ("", 1, True)

        # The AUTH token is the one generated value still in state: aws_elasticache_replication_group.auth_token
        # has no write-only variant in hashicorp/aws 5.100.0, and what feeds a stored argument is stored too.
        token = values[AUTH_TOKEN_SECRET]
        assert len(token) == 64 and {a.removeprefix("data.").split(".")[0] for a in holders(state, token)} == {
            "aws_secretsmanager_random_password", "aws_secretsmanager_secret_version",
            "aws_elasticache_replication_group"}

        # The next plan changes nothing: a write-only value is sent only when its version changes.
        plan = subprocess.run(["terraform", "plan", "-detailed-exitcode", "-input=false", "-no-color"],
                              cwd=stack_dir, env=env, capture_output=True, text=True, timeout=240)
        assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-2000:]

        # Rotation: bumping a secret's version writes a fresh value on the next apply, again not into state.
        monkeypatch.setitem(platform_secrets.VALUE_VERSIONS, "grafana-admin", 2)
        (stack_dir / "cdk.tf.json").write_text(secrets_stack(endpoint, state_dir))
        terraform(stack_dir, env, "apply", "-auto-approve", "-parallelism=10")
        rotated = generated_platform_values(secret_values(endpoint))
        changed = {name for name in generated if rotated[name] != generated[name]}
        assert changed == {f"{PREFIX}/grafana/admin:admin-password"}
        state, state_text, shown = read_state(stack_dir, env, state_file)
        assert [name for name, v in rotated.items() if holders(state, v) or v in state_text or v in shown] == []
