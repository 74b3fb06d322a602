"""PlatformSecrets: generated Airflow keys, Grafana admin and Alertmanager receiver secrets under their own key,
readable by exactly the External Secrets workload."""
from __future__ import annotations

import base64
import json
import re
import secrets
import string

import pytest
from cryptography.fernet import Fernet

from tests.conftest import looks_like_secret, new_stack, strings, synth
from tests.modules.aws.test_identity import BASE as IDENTITY_BASE
from tests.modules.aws.test_identity import grant_all

from modules.platform import kubernetes as k8s
from modules.aws.identity import PlatformIdentities, PlatformIdentitiesProps
from modules.aws.platform_secrets import VALUE_VERSIONS, PlatformSecrets, PlatformSecretsProps
from modules.core.validation import ConfigError

PROPS = dict(prefix="af-test")


def build(grant: bool = False) -> dict:
    stack = new_stack()
    secrets_ = PlatformSecrets(stack, "platform-secrets", props=PlatformSecretsProps(**PROPS))
    if grant:
        identities = grant_all(PlatformIdentities(stack, "identities", props=PlatformIdentitiesProps(**IDENTITY_BASE)))
        secrets_.grant_read(identities, "external-secrets")
    return synth(stack)


def by_name(doc: dict) -> dict[str, tuple[str, dict]]:
    return {s["name"]: (address, s) for address, s in doc["resource"]["aws_secretsmanager_secret"].items()}


def version_of(doc: dict, address: str) -> dict:
    (version,) = [v for v in doc["resource"]["aws_secretsmanager_secret_version"].values()
                  if v["secret_id"] == f"${{aws_secretsmanager_secret.{address}.id}}"]
    return version


def test_five_contract_secrets_encrypted_with_their_own_rotating_key():
    doc = build()
    (key_address, key), = doc["resource"]["aws_kms_key"].items()
    assert key["enable_key_rotation"] is True
    secrets_ = by_name(doc)
    assert set(secrets_) == {k8s.airflow_keys_secret_name("af-test"), k8s.airflow_database_users_secret_name("af-test"),
                             k8s.airflow_api_server_secret_name("af-test"), k8s.grafana_admin_secret_name("af-test"),
                             k8s.alert_receivers_secret_name("af-test")} == {
        "af-test/airflow/keys", "af-test/airflow/database-users", "af-test/airflow/api-server", "af-test/grafana/admin",
        "af-test/alertmanager/receivers"}
    assert {s["kms_key_id"] for _, s in secrets_.values()} == {f"${{aws_kms_key.{key_address}.arn}}"}
    assert {s["recovery_window_in_days"] for _, s in secrets_.values()} == {7}


EPHEMERAL_PASSWORD = r"ephemeral\.aws_secretsmanager_random_password\.([^.]+)\.random_password"


def test_generated_values_are_ephemeral_and_written_only_through_write_only_arguments():
    doc = build()
    secrets_ = by_name(doc)
    expected_keys = {"af-test/airflow/keys": ["fernet-key", "jwt-secret", "api-secret-key"],
                     "af-test/airflow/database-users": ["app-password", "monitor-password"],
                     "af-test/airflow/api-server": ["flask-secret-key"],
                     "af-test/grafana/admin": ["admin-user", "admin-password"]}
    for name, keys in expected_keys.items():
        version = version_of(doc, secrets_[name][0])
        # No secret_string and no data source: nothing generated is stored in plan or state (docs/design.md §9).
        assert set(version) == {"secret_id", "secret_string_wo", "secret_string_wo_version"}
        assert version["secret_string_wo_version"] == VALUE_VERSIONS[secrets_[name][0].split("_")[1]] == 1
        body = version["secret_string_wo"]
        assert body.startswith("${jsonencode({") and re.findall(r'"([a-z-]+)" =', body) == keys
    keys = version_of(doc, secrets_["af-test/airflow/keys"][0])["secret_string_wo"]
    for field in ("jwt-secret", "api-secret-key"):
        assert re.search(rf'"{field}" = {EPHEMERAL_PASSWORD}', keys)
    grafana = version_of(doc, secrets_["af-test/grafana/admin"][0])["secret_string_wo"]
    assert re.search(rf'"admin-password" = {EPHEMERAL_PASSWORD}', grafana)
    users = version_of(doc, secrets_["af-test/airflow/database-users"][0])["secret_string_wo"]
    generated = doc["ephemeral"]["aws_secretsmanager_random_password"]
    for field in ("app-password", "monitor-password"):
        (address,) = re.findall(rf'"{field}" = {EPHEMERAL_PASSWORD}', users)
        # letters and digits only: they go into URLs, pgbouncer's users.txt and SCRAM without quoting questions
        assert (generated[address]["exclude_punctuation"], generated[address]["password_length"]) == (True, 40)
    assert "data" not in doc
    assert len(generated) == 7
    assert [s for s in strings(doc) if looks_like_secret(s)] == []


def test_receiver_placeholders_are_empty_for_the_operator_to_fill_and_later_changes_ignored():
    doc = build()
    version = version_of(doc, by_name(doc)["af-test/alertmanager/receivers"][0])
    assert version["lifecycle"] == {"ignore_changes": ["secret_string"]}
    assert version["secret_string"] == '${jsonencode({"slack-webhook-url" = "", "pagerduty-routing-key" = ""})}'


def test_fernet_key_is_base64_of_32_random_printable_characters():
    doc = build()
    body = version_of(doc, by_name(doc)["af-test/airflow/keys"][0])["secret_string_wo"]
    (source,) = re.findall(rf'"fernet-key" = base64encode\({EPHEMERAL_PASSWORD}\)', body)
    password = doc["ephemeral"]["aws_secretsmanager_random_password"][source]
    assert (password["password_length"], password["exclude_punctuation"], password["include_space"]) == (32, False, False)
    # What Terraform's base64encode makes of such a value is a key Airflow's cryptography accepts.
    printable = string.ascii_letters + string.digits + string.punctuation
    for _ in range(50):
        raw = "".join(secrets.choice(printable) for _ in range(32))
        key = base64.b64encode(raw.encode()).decode()
        assert Fernet(key).decrypt(Fernet(key).encrypt(b"x")) == b"x"


def test_external_secrets_reads_exactly_these_secrets_and_decrypts_only_through_secrets_manager():
    doc = build(grant=True)
    (policy,) = [p for a, p in doc["resource"]["aws_iam_role_policy"].items() if a.startswith("identities_external-secrets")]
    statements = {s["Sid"]: s for s in json.loads(policy["policy"])["Statement"]}
    read, decrypt = statements["ReadPlatformSecrets"], statements["DecryptPlatformSecretsViaSecretsManager"]
    assert read["Action"] == ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    assert sorted(read["Resource"]) == sorted(f"${{aws_secretsmanager_secret.{a}.arn}}" for a, _ in by_name(doc).values())
    (key_address,) = doc["resource"]["aws_kms_key"]
    assert decrypt["Action"] == ["kms:Decrypt"] and decrypt["Resource"] == [f"${{aws_kms_key.{key_address}.arn}}"]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}
    others = [a for a, p in doc["resource"]["aws_iam_role_policy"].items()
              if "platform-secrets" in p["policy"] and not a.startswith("identities_external-secrets")]
    assert others == []          # no other workload reads them


@pytest.mark.parametrize("change,field", [
    ({"prefix": "Bad_Prefix"}, "prefix"), ({"recovery_window_days": 0}, "recovery_window_days")])
def test_props_fail_fast_naming_the_field(change, field):
    with pytest.raises(ConfigError) as err:
        PlatformSecretsProps(**{**PROPS, **change})
    assert err.value.field == field
