"""AwsEnvironment: a stack's account, region and partition, which its AWS constructs read instead of props."""
from __future__ import annotations

import cdktf
import pytest
from constructs import Construct

from modules.aws.encryption import EncryptionKey, EncryptionKeyProps
from modules.core.environment import AwsEnvironment, partition_of
from modules.core.validation import ConfigError
from tests.conftest import synth


@pytest.mark.parametrize("region,partition", [("eu-west-1", "aws"), ("cn-north-1", "aws-cn"),
                                              ("us-gov-west-1", "aws-us-gov")])
def test_partition_follows_the_region(region, partition):
    environment = AwsEnvironment(account_id="123456789012", region=region)
    assert (partition_of(region), environment.partition) == (partition, partition)
    assert environment.arn("iam", "root", region=False) == f"arn:{partition}:iam::123456789012:root"
    assert environment.arn("ssm", "parameter/x", account=False) == f"arn:{partition}:ssm:{region}::parameter/x"


@pytest.mark.parametrize("field,value,message", [
    ("account_id", "1234", "account_id='1234' is not a 12-digit AWS account id"),
    ("region", "moon", "region='moon' is not an AWS region name"),
])
def test_bad_account_or_region_is_one_clear_error(field, value, message):
    with pytest.raises(ConfigError, match=message):
        AwsEnvironment(**{"account_id": "123456789012", "region": "eu-west-1", field: value})


def test_a_construct_reads_the_environment_of_its_stack(stack):
    nested = Construct(stack, "nested")
    assert AwsEnvironment.of(nested) == AwsEnvironment(account_id="123456789012", region="eu-west-1")
    EncryptionKey(nested, "key", props=EncryptionKeyProps(alias="test", description="test"))
    (key,) = synth(stack)["resource"]["aws_kms_key"].values()
    assert '"AWS":"arn:aws:iam::123456789012:root"' in key["policy"].replace(" ", "")


def test_a_stack_without_an_environment_says_how_to_bind_one():
    bare = cdktf.TerraformStack(cdktf.Testing.app(), "bare")
    with pytest.raises(ConfigError, match=r"stack='bare' has no AWS environment.*fix: bind one first"):
        EncryptionKey(bare, "key", props=EncryptionKeyProps(alias="test", description="test"))
