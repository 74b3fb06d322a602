"""Customer-managed KMS keys: rotation on, a deletion window, and a key policy that separates who administers a key
from who uses it (docs/design.md §10).

Every key policy (`key_policy`) has, in this order:
- `EnableIamPolicies`: the account root may `kms:*`. AWS's default statement, and required: without it no IAM policy
  can grant use of the key (workload roles get theirs that way, naming the exact key ARN) and PutKeyPolicy's lockout
  check could leave the key unmanageable. It gives IAM principals nothing by itself.
- `KeyAdministrators`: the stack's `KeyAdministrators` may manage the key (AWS's documented key-administrator actions:
  policy, rotation, tags, aliases, enable/disable, deletion), none of which encrypts or decrypts.
- `AdministratorsNoDirectUse` (Deny): administrators may not call Encrypt, Decrypt, ReEncrypt or GenerateDataKey
  themselves, whatever their IAM policies allow (an administrator can still PutKeyPolicy the deny away: it binds
  people at the console, not the deploy role, which administers keys because Terraform writes their policies). Calls an AWS service makes for them (`kms:ViaService` set: Terraform
  writing a Secrets Manager version, reading state from S3, RDS creating its grant) stay under that service's own
  authorization, so a deploy keeps working.
- `AdministratorsGrantOnlyForAwsResources` (Deny): administrators may not create grants except through an AWS service
  for its resource (`kms:GrantIsForAWSResource`), so `kms:Create*` cannot hand them, or a principal they pick, use.
- the users: AWS service principals, each limited by a condition (`ServiceUse`).

The denies match administrators by `aws:PrincipalArn` rather than naming them as principals: they need no principal to
exist and still match a role that was deleted and created again (a named principal would turn into its old unique id).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdktf_cdktf_provider_aws import kms_alias, kms_key
from constructs import Construct

from ..core import iam
from ..core.environment import AwsEnvironment
from ..core.validation import ConfigError, require
from .identity import PlatformIdentities
from .settings import key_admin_arns

if TYPE_CHECKING:
    from cdktf import TerraformStack

_KEY_USE = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
# AWS KMS Developer Guide, "Default key policy", the key administrators statement: management, no cryptographic use.
KEY_ADMIN_ACTIONS = ("kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                     "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource",
                     "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand")
# The cryptographic operations of a symmetric encryption key. No Describe*: moto (the emulator) applies a Deny on
# DescribeKey without reading its condition, and administrators must describe their keys anyway.
CRYPTOGRAPHIC_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*")
_ATTRIBUTE = "kms_key_administrators"


@dataclass(frozen=True)
class KeyAdministrators:
    """Who administers every KMS key of a stack (manage, never use). A stack binds one, as it binds its AwsEnvironment;
    `key_policy` reads it."""
    arns: tuple[str, ...]

    def __post_init__(self) -> None:
        key_admin_arns("key_admin_arns", self.arns, required=True)

    def bind(self, stack: TerraformStack) -> None:
        setattr(stack, _ATTRIBUTE, self)

    @staticmethod
    def of(scope: Construct) -> KeyAdministrators:
        from cdktf import TerraformStack

        stack = TerraformStack.of(scope)
        administrators = getattr(stack, _ATTRIBUTE, None)
        if administrators is None:
            raise ConfigError("stack", stack.node.id, "has no key administrators for its KMS keys",
                              "bind them first: KeyAdministrators(('arn:aws:iam::<account>:role/<name>',)).bind(stack)")
        return administrators


def key_policy(scope: Construct, *uses: dict[str, Any]) -> str:
    """The key policy of a key in `scope`'s stack: the IAM statement, its administrators, the two denies that keep them
    from using it, then `uses` (statements for the services that use it)."""
    root = AwsEnvironment.of(scope).arn("iam", "root", region=False)
    admins = list(KeyAdministrators.of(scope).arns)
    is_admin = {"ArnEquals": {"aws:PrincipalArn": admins}}
    return iam.policy_document(
        iam.statement("EnableIamPolicies", ["kms:*"], "*", principal={"AWS": root}),
        iam.statement("KeyAdministrators", list(KEY_ADMIN_ACTIONS), "*", principal={"AWS": admins}),
        iam.statement("AdministratorsNoDirectUse", list(CRYPTOGRAPHIC_ACTIONS), "*", effect="Deny", principal={"AWS": "*"},
                      condition={**is_admin, "Null": {"kms:ViaService": "true"}}),
        iam.statement("AdministratorsGrantOnlyForAwsResources", ["kms:CreateGrant"], "*", effect="Deny", principal={"AWS": "*"},
                      condition={**is_admin, "BoolIfExists": {"kms:GrantIsForAWSResource": "false"}}),
        *uses)


@dataclass(frozen=True, kw_only=True)
class ServiceUse:
    """An AWS service principal allowed to use the key, limited by a condition (e.g. an encryption context)."""
    principal: str
    condition: dict | None = None
    # () = the usual encrypt/decrypt set; narrower when a service documents exactly what it calls (CloudTrail).
    actions: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EncryptionKeyProps:
    alias: str                         # without the 'alias/' prefix
    description: str
    services: tuple[ServiceUse, ...] = ()
    deletion_window_days: int = 30

    def __post_init__(self) -> None:
        require(re.fullmatch(r"[a-zA-Z0-9/_-]{1,250}", self.alias) is not None and not self.alias.startswith("aws/"),
                "alias", self.alias, "is not a customer KMS alias name",
                "use 1-250 letters, digits and /_- without the 'alias/' prefix, not under aws/")
        require(isinstance(self.deletion_window_days, int) and 7 <= self.deletion_window_days <= 30,
                "deletion_window_days", self.deletion_window_days, "is outside 7-30", "use 7-30 days")


class EncryptionKey(Construct):
    """A rotating symmetric key with an alias and `key_policy`: the stack's key administrators manage it, the listed
    services use it under their conditions, and workload roles get use through IAM (`grant`)."""

    def __init__(self, scope: Construct, id_: str, *, props: EncryptionKeyProps) -> None:
        super().__init__(scope, id_)
        uses = [iam.statement(f"Service{i}Uses", list(use.actions) or _KEY_USE, "*", principal={"Service": use.principal},
                              condition=use.condition) for i, use in enumerate(props.services)]
        # bypass_policy_lockout_safety_check stays unset (false): KMS refuses a policy its caller could not change again.
        self.resource = kms_key.KmsKey(
            self, "key", description=props.description, enable_key_rotation=True, rotation_period_in_days=365,
            deletion_window_in_days=props.deletion_window_days, policy=key_policy(self, *uses))
        self.alias = kms_alias.KmsAlias(self, "alias", name=f"alias/{props.alias}", target_key_id=self.resource.key_id)
        self.arn: str = self.resource.arn
        self.key_id: str = self.resource.key_id
        self.alias_name = f"alias/{props.alias}"

    def grant(self, identities: PlatformIdentities, workload_id: str, sid: str, actions: list[str],
              condition: dict | None = None) -> None:
        """Let one workload call `actions` with this key, optionally only under `condition` (e.g. kms:ViaService:
        through one AWS service): its role's IAM policy names the key's ARN, which the key policy's IAM statement
        honours. Not a key policy principal: the role may not exist yet when the key is created, and some roles' trust
        names the cluster, which needs this key first (a cycle)."""
        identities.grant(workload_id, sid, actions, [self.arn], condition)


def logs_service_use(environment: AwsEnvironment, *, log_group_prefixes: tuple[str, ...]) -> ServiceUse:
    """CloudWatch Logs may use the key only for log groups whose names start with one of the prefixes."""
    arns = [environment.arn("logs", f"log-group:{prefix}*") for prefix in log_group_prefixes]
    return ServiceUse(principal=environment.service_endpoint("logs"),
                      condition={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": arns}})
