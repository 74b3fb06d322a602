"""Secrets Manager secrets the infra stack generates for in-cluster use, under their own rotating KMS key:
Airflow's Fernet / JWT / API secret keys, the passwords of Airflow's own database roles, Grafana's admin login and
the Alertmanager receivers. External Secrets
(platform stack) copies them into Kubernetes Secrets; their names come from modules/platform/kubernetes.py.

Generated values never reach Terraform state (docs/design.md §9): each comes from the *ephemeral* resource
aws_secretsmanager_random_password (Secrets Manager's GetRandomPassword, asked at plan and again at apply, stored
nowhere) and is written through the write-only argument `secret_string_wo` of the secret version; state keeps
only `secret_string_wo_version`. No literal is in code or synthesized JSON. A write-only value is sent only when
its version number changes, so plans stay clean and the value written first stays; bumping
`VALUE_VERSIONS[<secret>]` writes a freshly generated value on the next apply (rotation; docs/design.md §9 says
what that means for Airflow's Fernet key). The Alertmanager receivers hold no generated value: their placeholders
go through `secret_string`, which ignores later changes, so the values the operator sets are never overwritten.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cdktf import Fn, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws import (
    secretsmanager_secret,
    secretsmanager_secret_version,
)
from constructs import Construct

from ..core import iam
from ..platform import kubernetes as k8s
from .encryption import EncryptionKey, EncryptionKeyProps
from .identity import PlatformIdentities
from ..core.validation import require
from ..core.environment import AwsEnvironment
from ..core.ephemeral import ephemeral_attribute

_PREFIX = re.compile(r"[a-z][a-z0-9-]{0,30}[a-z0-9]")
GRAFANA_ADMIN_USER = "admin"                     # the login name is not a secret; its password is
# `secret_string_wo_version` of each generated secret: bump one to write a new generated value on the next apply.
VALUE_VERSIONS = {"airflow-keys": 1, "airflow-database-users": 1, "airflow-api-server": 1, "grafana-admin": 1}


@dataclass(frozen=True, kw_only=True)
class PlatformSecretsProps:
    prefix: str                                  # environment prefix, e.g. 'airflow-prod' (secret names, key alias)
    recovery_window_days: int = 7                # a deleted secret can be restored for this long

    def __post_init__(self) -> None:
        require(isinstance(self.prefix, str) and _PREFIX.fullmatch(self.prefix) is not None, "prefix", self.prefix,
                "is not a valid name prefix", "use 2-32 lowercase letters, digits and inner hyphens")
        require(isinstance(self.recovery_window_days, int) and 7 <= self.recovery_window_days <= 30,
                "recovery_window_days", self.recovery_window_days, "is outside 7-30",
                "use 7-30 days (Secrets Manager's range; 0 would delete without recovery)")


class PlatformSecrets(Construct):
    """The five secrets and their key. `grant_read(identities, workload)` lets one workload read exactly them."""

    def __init__(self, scope: Construct, id_: str, *, props: PlatformSecretsProps) -> None:
        super().__init__(scope, id_)
        self._props = props
        self.key = EncryptionKey(self, "key", props=EncryptionKeyProps(
            alias=f"{props.prefix}-platform-secrets", description=f"{props.prefix} platform secrets (Secrets Manager)"))

        # Fernet key = urlsafe base64 of exactly 32 bytes: 32 random printable ASCII characters are 32 bytes;
        # base64encode gives 44 characters that cryptography's urlsafe_b64decode reads back as those 32 bytes.
        fernet_raw = self._random("fernet-key-bytes", length=32, exclude_punctuation=False)
        jwt = self._random("jwt-secret", length=64)
        api = self._random("api-secret-key", length=64)
        grafana = self._random("grafana-admin-password", length=32)
        # Letters and digits only: they go into connection URLs, pgbouncer's users.txt and SCRAM (whose SASLprep
        # leaves plain ASCII unchanged) without any quoting question.
        db_app = self._random("database-app-password", length=40)
        db_monitor = self._random("database-monitor-password", length=40)
        flask = self._random("flask-secret-key", length=64)

        self.airflow_keys = self._secret(
            "airflow-keys", k8s.airflow_keys_secret_name(props.prefix), "Airflow Fernet, JWT and API secret keys",
            {"fernet-key": Fn.base64encode(fernet_raw), "jwt-secret": jwt, "api-secret-key": api}, generated=True)
        # Airflow's own database roles (modules/platform/database_roles.py): the RDS master password is not here.
        self.airflow_database_users = self._secret(
            "airflow-database-users", k8s.airflow_database_users_secret_name(props.prefix),
            "Passwords of Airflow's database roles (the application role and the read-only monitor role)",
            {"app-password": db_app, "monitor-password": db_monitor}, generated=True)
        # The FAB app's Flask session key: the API server's alone (a worker holds `[api] secret_key` for its log
        # server, and a Flask key lets its holder forge a signed-in session).
        self.airflow_api_server = self._secret(
            "airflow-api-server", k8s.airflow_api_server_secret_name(props.prefix), "Airflow API server's Flask key",
            {"flask-secret-key": flask}, generated=True)
        self.grafana_admin = self._secret(
            "grafana-admin", k8s.grafana_admin_secret_name(props.prefix), "Grafana admin login",
            {"admin-user": GRAFANA_ADMIN_USER, "admin-password": grafana}, generated=True)
        # Placeholders: the operator writes the real webhook URL / routing key (docs/platform-addons.md).
        self.alert_receivers = self._secret(
            "alert-receivers", k8s.alert_receivers_secret_name(props.prefix),
            "Alertmanager receivers (Slack webhook URL, PagerDuty routing key); set by the operator",
            {"slack-webhook-url": "", "pagerduty-routing-key": ""})

        self.kms_key_arn: str = self.key.arn
        self.secret_arns: tuple[str, ...] = (self.airflow_keys.arn, self.airflow_database_users.arn,
                                             self.airflow_api_server.arn, self.grafana_admin.arn,
                                             self.alert_receivers.arn)
        self.secret_names: dict[str, str] = {
            "airflow-keys": k8s.airflow_keys_secret_name(props.prefix),
            "airflow-database-users": k8s.airflow_database_users_secret_name(props.prefix),
            "airflow-api-server": k8s.airflow_api_server_secret_name(props.prefix),
            "grafana-admin": k8s.grafana_admin_secret_name(props.prefix),
            "alert-receivers": k8s.alert_receivers_secret_name(props.prefix)}

    def _random(self, id_: str, *, length: int, exclude_punctuation: bool = True) -> str:
        """An ephemeral value: it may only reach `secret_string_wo` (Terraform refuses it anywhere else)."""
        return ephemeral_attribute(self, id_, type_="aws_secretsmanager_random_password", attribute="random_password",
                                   config={"password_length": length, "exclude_punctuation": exclude_punctuation,
                                           "include_space": False, "require_each_included_type": True})

    def _secret(self, id_: str, name: str, description: str, value: dict[str, Any],
                *, generated: bool = False) -> secretsmanager_secret.SecretsmanagerSecret:
        secret = secretsmanager_secret.SecretsmanagerSecret(
            self, id_, name=name, description=description, kms_key_id=self.key.arn,
            recovery_window_in_days=self._props.recovery_window_days)
        if generated:
            secretsmanager_secret_version.SecretsmanagerSecretVersion(
                self, f"{id_}-version", secret_id=secret.id, secret_string_wo=Fn.jsonencode(value),
                secret_string_wo_version=VALUE_VERSIONS[id_])
        else:
            secretsmanager_secret_version.SecretsmanagerSecretVersion(
                self, f"{id_}-version", secret_id=secret.id, secret_string=Fn.jsonencode(value),
                lifecycle=TerraformResourceLifecycle(ignore_changes=["secret_string"]))
        return secret

    def grant_read(self, identities: PlatformIdentities, workload_id: str = "external-secrets") -> None:
        """Read (GetSecretValue, DescribeSecret) exactly these secrets, and decrypt with their key only through
        Secrets Manager."""
        env = AwsEnvironment.of(self)
        identities.grant(workload_id, "ReadPlatformSecrets",
                         ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], list(self.secret_arns))
        identities.grant(workload_id, "DecryptPlatformSecretsViaSecretsManager", ["kms:Decrypt"], [self.key.arn],
                         condition={"StringEquals": {
                             "kms:ViaService": f"secretsmanager.{env.region}.amazonaws.com"}})



def grant_secret_delivery(identities: PlatformIdentities, workload_id: str, *, secret_arns: tuple[str, ...],
                          kms_key_arns: tuple[str, ...]) -> None:
    """Let the secret-delivery workload (External Secrets) read exactly these secrets (the database's master secret,
    the cache's AUTH token) and decrypt them only through Secrets Manager."""
    identities.add_statements(workload_id, *secret_delivery_statements(
        AwsEnvironment.of(identities), secret_arns=secret_arns, kms_key_arns=kms_key_arns))


def secret_delivery_statements(env: AwsEnvironment, *, secret_arns: tuple[str, ...],
                               kms_key_arns: tuple[str, ...]) -> list[dict]:
    statements = [iam.statement("ReadDeliveredSecrets", ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                                list(secret_arns))]
    if kms_key_arns:
        statements.append(iam.statement("DecryptSecretsViaSecretsManager", ["kms:Decrypt"], list(kms_key_arns),
                                        condition={"StringEquals": {"kms:ViaService": env.service_endpoint(
                                            "secretsmanager")}}))
    return statements
