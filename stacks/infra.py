"""Per-environment AWS infrastructure (AWS provider only)."""
from __future__ import annotations

from cdktf import TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider
from constructs import Construct

from environments.config import EnvironmentConfig
from modules.encryption import EncryptionKey, EncryptionKeyProps, logs_service_use
from modules.network import Network, NetworkProps

from .backend import use_s3_backend


class InfraStack(TerraformStack):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, id_)
        c = config
        AwsProvider(self, "aws", region=c.region, allowed_account_ids=[c.account_id])
        use_s3_backend(self, state=c.state, account_id=c.account_id, partition=c.partition, key=f"{c.name}/infra.tfstate")
        logs_key = EncryptionKey(self, "logs-key", props=EncryptionKeyProps(
            alias=f"{c.prefix}-logs", description=f"{c.prefix} CloudWatch Logs", account_id=c.account_id,
            partition=c.partition, services=(logs_service_use(
                region=c.region, account_id=c.account_id, partition=c.partition,
                log_group_prefixes=(f"/aws/vpc/{c.prefix}/", f"/aws/eks/{c.prefix}/", f"/{c.prefix}/")),)))
        self.network = Network(self, "network", props=NetworkProps(
            name=c.prefix, cidr=c.network.vpc_cidr, subnets=c.network.subnets, availability_zones=c.availability_zones,
            nat_gateways=c.network.nat_gateways,
            interface_endpoints=c.network.interface_endpoints, region=c.region, account_id=c.account_id,
            partition=c.partition, cluster_name=c.cluster_name, flow_log_retention_days=c.log_retention_days,
            flow_log_kms_key_arn=logs_key.arn))
        TerraformOutput(self, "vpc-id", value=self.network.vpc_id)
        for tier, ids in self.network.subnet_ids.items():
            TerraformOutput(self, f"{tier}-subnet-ids", value=ids)
