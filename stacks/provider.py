"""The AWS provider every stack uses, and its local-emulator variant (tests and `make rehearse` only)."""
from __future__ import annotations

from dataclasses import dataclass

from cdktf import TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderEndpoints

EMULATED_SERVICES = ("acm", "cloudtrail", "cloudwatch", "codebuild", "ec2", "eks", "elasticache", "elbv2", "events",
                     "guardduty", "iam", "kms", "logs", "rds", "route53", "s3", "secretsmanager", "sns", "sqs", "sts",
                     "wafv2")


@dataclass(frozen=True, kw_only=True)
class Emulator:
    """A synth for a local AWS emulator (tests, `make rehearse`, `make emulator-*`), never for a real deploy."""
    endpoint: str      # e.g. http://127.0.0.1:5000
    state_dir: str     # absolute: local state lives here, outside cdktf.out, so a re-synth never touches it


def aws_provider(stack: TerraformStack, *, region: str, account_id: str, emulator: Emulator | None = None) -> None:
    """The real provider pinned to the environment's account; with `emulator` (never the default) every
    service points at a local AWS emulator such as moto, with test credentials and no account checks."""
    if emulator is None:
        AwsProvider(stack, "aws", region=region, allowed_account_ids=[account_id])
        return
    # The account id is asked of the emulator (STS GetCallerIdentity), as on AWS: without it the provider cannot
    # tell a same-account security group reference from another account's and reads every rule back as
    # "<account>/sg-...", a change on every plan that AWS would never show.
    AwsProvider(stack, "aws", region=region, access_key="test", secret_key="test", skip_credentials_validation=True,
                skip_metadata_api_check="true", s3_use_path_style=True,
                endpoints=[AwsProviderEndpoints(**{service: emulator.endpoint for service in EMULATED_SERVICES})])
