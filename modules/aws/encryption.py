"""Customer-managed KMS keys: rotation on, a deletion window, and a key policy that names who may use them."""
from __future__ import annotations

import re
from dataclasses import dataclass

from cdktf_cdktf_provider_aws import kms_alias, kms_key
from constructs import Construct

from ..core import iam
from ..core.environment import AwsEnvironment
from ..core.validation import require
from .identity import PlatformIdentities

_KEY_USE = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]


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
    """A rotating symmetric key with an alias. The account root administers it (IAM policies then grant
    use to roles); only the listed services get use in the key policy itself."""

    def __init__(self, scope: Construct, id_: str, *, props: EncryptionKeyProps) -> None:
        super().__init__(scope, id_)
        root = AwsEnvironment.of(self).arn("iam", "root", region=False)
        statements = [iam.statement("AccountAdministers", ["kms:*"], "*", principal={"AWS": root})]
        statements += [iam.statement(f"Service{i}Uses", list(use.actions) or _KEY_USE, "*", principal={"Service": use.principal},
                                     condition=use.condition) for i, use in enumerate(props.services)]
        self.resource = kms_key.KmsKey(
            self, "key", description=props.description, enable_key_rotation=True, rotation_period_in_days=365,
            deletion_window_in_days=props.deletion_window_days, policy=iam.policy_document(*statements))
        self.alias = kms_alias.KmsAlias(self, "alias", name=f"alias/{props.alias}", target_key_id=self.resource.key_id)
        self.arn: str = self.resource.arn
        self.key_id: str = self.resource.key_id
        self.alias_name = f"alias/{props.alias}"

    def grant(self, identities: PlatformIdentities, workload_id: str, sid: str, actions: list[str],
              condition: dict | None = None) -> None:
        """Let one workload call `actions` with this key (its IAM role; the key policy defers to IAM), optionally
        only under `condition` (e.g. kms:ViaService: through one AWS service)."""
        identities.grant(workload_id, sid, actions, [self.arn], condition)


def logs_service_use(environment: AwsEnvironment, *, log_group_prefixes: tuple[str, ...]) -> ServiceUse:
    """CloudWatch Logs may use the key only for log groups whose names start with one of the prefixes."""
    arns = [environment.arn("logs", f"log-group:{prefix}*") for prefix in log_group_prefixes]
    return ServiceUse(principal=environment.service_endpoint("logs"),
                      condition={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": arns}})
