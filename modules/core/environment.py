"""Where constructs deploy: the AWS account, region and partition belong to the stack, not to each construct's props
(cf. aws-cdk's `Stack.of(this).account`). A stack binds one `AwsEnvironment`; a construct asks `AwsEnvironment.of(self)`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import validation
from .validation import ConfigError

if TYPE_CHECKING:     # no cdktf import at run time: environments/ uses partition_of before jsii starts
    from cdktf import TerraformStack
    from constructs import Construct

_ATTRIBUTE = "aws_environment"


def partition_of(region: str) -> str:
    """The ARN partition of a region: aws-cn for China, aws-us-gov for GovCloud, else aws."""
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if "-gov-" in region else "aws"


@dataclass(frozen=True, kw_only=True)
class AwsEnvironment:
    account_id: str
    region: str

    def __post_init__(self) -> None:
        validation.account_id("account_id", self.account_id)
        validation.aws_region("region", self.region)

    @property
    def partition(self) -> str:
        return partition_of(self.region)

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        """`arn:<partition>:<service>:<region>:<account>:<resource>`, leaving out region or account where the
        service's ARNs have none (IAM, S3: region=False; public SSM parameters, AMIs: account=False)."""
        return (f"arn:{self.partition}:{service}:{self.region if region else ''}:"
                f"{self.account_id if account else ''}:{resource}")

    def service_endpoint(self, service: str) -> str:
        """`<service>.<region>.amazonaws.com`, e.g. for a `kms:ViaService` condition."""
        return f"{service}.{self.region}.amazonaws.com"

    def bind(self, stack: TerraformStack) -> None:
        """Make this the environment of every construct in `stack`."""
        setattr(stack, _ATTRIBUTE, self)

    @staticmethod
    def of(scope: Construct) -> AwsEnvironment:
        """The environment of the stack `scope` is in."""
        from cdktf import TerraformStack

        stack = TerraformStack.of(scope)
        environment = getattr(stack, _ATTRIBUTE, None)
        if environment is None:
            raise ConfigError("stack", stack.node.id, "has no AWS environment for its AWS constructs",
                              "bind one first: AwsEnvironment(account_id=..., region=...).bind(stack)")
        return environment
