"""A role that reads a few Secrets Manager secrets for one namespace's SecretStore, assumable by one workload role.

External Secrets Operator has one Pod Identity role (modules/aws/identity.py), and its shared ClusterSecretStore
serves several namespaces with it: whoever may create an ExternalSecret in any of them may name anything that role
reads. A secret that only one namespace may receive (the RDS master secret, for the database-role Job in
`airflow-db-admin`) is therefore read by a role of its own instead: the operator's role may assume it, nothing else
may, and only the SecretStore in that namespace names it (`spec.provider.aws.role`). The role is named under the
environment prefix, so the workload permissions boundary (modules/aws/ci_roles.py) covers it and lets the
operator's role assume it (roles of an environment may assume only `<prefix>-*` roles).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from cdktf_cdktf_provider_aws import iam_role, iam_role_policy
from constructs import Construct

from ..core import iam
from ..core.environment import AwsEnvironment
from ..core.tokens import is_unresolved
from ..core.validation import require
from .identity import PlatformIdentities, check_statement
from .platform_secrets import secret_delivery_statements

_ROLE_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}[a-z0-9]")
_ASSUME = ["sts:AssumeRole", "sts:TagSession"]      # TagSession: Pod Identity sessions carry (transitive) tags


@dataclass(frozen=True, kw_only=True)
class SecretReaderRoleProps:
    name: str                           # IAM role name, '<prefix>-<purpose>' (the boundary's own-roles pattern)
    description: str
    secret_arns: tuple[str, ...]        # exactly these secrets, nothing else
    kms_key_arns: tuple[str, ...]       # their keys, used only through Secrets Manager
    assumed_by: str                     # the one workload (modules/aws/identity.py WORKLOADS) that may assume it

    def __post_init__(self) -> None:
        require(is_unresolved(self.name) or _ROLE_NAME.fullmatch(self.name) is not None, "name", self.name,
                "is not a lowercase IAM role name", "use '<prefix>-<purpose>', e.g. 'airflow-dev-db-admin-secrets'")
        require(len(self.secret_arns) >= 1 and len(set(self.secret_arns)) == len(self.secret_arns), "secret_arns",
                list(self.secret_arns), "is empty or lists a secret twice", "list each secret the store reads once")
        require(len(set(self.kms_key_arns)) == len(self.kms_key_arns), "kms_key_arns", list(self.kms_key_arns),
                "lists a key twice", "list each key of those secrets once")


class SecretReaderRole(Construct):
    """The role, its read-only policy, and the assuming workload's permission to assume exactly it."""

    def __init__(self, scope: Construct, id_: str, *, props: SecretReaderRoleProps,
                 identities: PlatformIdentities) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        workload = identities.identity(props.assumed_by)
        # The workload's role ARN, not the account: nothing else in the account can assume this role, whatever its
        # own policy says.
        trust = iam.policy_document({
            "Sid": "AssumeByOneWorkloadRole", "Effect": "Allow", "Principal": {"AWS": workload.role_arn},
            "Action": _ASSUME})
        self.role = iam_role.IamRole(self, "role", name=props.name, description=props.description,
                                     assume_role_policy=trust, force_detach_policies=True)
        statements = secret_delivery_statements(env, secret_arns=props.secret_arns, kms_key_arns=props.kms_key_arns)
        for stmt in statements:
            check_statement(stmt)
        iam_role_policy.IamRolePolicy(self, "policy", role=self.role.id, name="least-privilege",
                                      policy=iam.policy_document(*statements))
        self.role_arn: str = self.role.arn
        self.role_name: str = self.role.name
        self.assumed_by: str = props.assumed_by
        workload.grant("Assume" + "".join(part.capitalize() for part in id_.split("-")) + "Role", _ASSUME,
                       [self.role_arn])
