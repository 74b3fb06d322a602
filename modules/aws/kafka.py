"""Optional Amazon MSK cluster for event-driven DAGs: TLS only, IAM (SASL/OAUTHBEARER) auth only, in private subnets,
reachable on 9098 only from security groups admitted with allow_from().

Provisioned clusters encrypt at rest with a customer KMS key and ship broker logs to a KMS-encrypted CloudWatch log
group. MSK Serverless always encrypts at rest with an AWS-managed key and has no broker logs (the service offers
neither), so production config refuses it (environments/sections/events.py).

Airflow reaches the cluster through the connection documented in docs/events.md (`kafka_connection_extra()`),
stored in Vault at `<VAULT_AIRFLOW_MOUNT>/connections/<KAFKA_CONNECTION_ID>`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


from cdktf_cdktf_provider_aws import (
    cloudwatch_log_group,
    data_aws_msk_bootstrap_brokers,
    msk_cluster,
    msk_serverless_cluster,
    security_group,
)
from constructs import Construct

from ..core import validation
from .encryption import EncryptionKey, EncryptionKeyProps
from .network import admit_tcp_from
from .identity import PlatformIdentities
from .settings import EventsSettings
from ..core.tokens import is_unresolved
from ..core.validation import ConfigError
from ..core.environment import AwsEnvironment

PORT = 9098                                    # SASL/IAM over TLS, the only listener this cluster has
KAFKA_CONNECTION_ID = "kafka_msk"              # Airflow connection id (Vault: <mount>/connections/kafka_msk)
_NAME = re.compile(r"[a-z][a-z0-9-]{0,57}")
_SUBNETS = {"provisioned": (2, 3), "serverless": (2, 5)}


def log_group_prefix(name: str) -> str:
    """Prefix of the broker log group names: the logs KMS key's policy must admit it."""
    return f"/aws/msk/{name}/"


def broker_subnet_ids(zones: tuple[str, ...], *, availability_zones: tuple[str, ...],
                      subnet_ids: list[str]) -> tuple[str, ...]:
    """The private subnet of each configured zone (subnet_ids are in availability_zones order)."""
    unknown = [z for z in zones if z not in availability_zones]
    if unknown:
        raise ConfigError("kafka_availability_zones", list(zones), f"names zones {unknown} the environment has no "
                          f"subnets in", f"use zones from {list(availability_zones)}")
    return tuple(subnet_ids[availability_zones.index(z)] for z in zones)


def kafka_connection_extra(*, bootstrap_brokers: str, consumer_group: str) -> dict[str, Any]:
    """The `extra` of the Airflow Kafka connection: TLS + SASL/OAUTHBEARER, which the apache-kafka provider turns
    into MSK IAM tokens for `*.kafka.<region>.amazonaws.com` brokers (credentials: the pod's identity)."""
    return {"bootstrap.servers": bootstrap_brokers, "security.protocol": "SASL_SSL",
            "sasl.mechanism": "OAUTHBEARER", "group.id": consumer_group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False}


@dataclass(frozen=True, kw_only=True)
class KafkaProps:
    name: str                                   # cluster name, e.g. 'airflow-prod-kafka'
    vpc_id: str
    subnet_ids: tuple[str, ...]                 # one private subnet per broker zone
    logs_kms_key_arn: str                       # key for the broker log group (policy admits log_group_prefix)
    settings: EventsSettings = field(default_factory=EventsSettings)   # its kafka_* fields
    log_retention_days: int = 30

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigError("name", self.name, "is not a valid MSK cluster name",
                              "use up to 58 lowercase letters, digits and hyphens, starting with a letter")
        mode = self.settings.kafka_mode
        low, high = _SUBNETS[mode]
        if not is_unresolved(list(self.subnet_ids)) and not low <= len(self.subnet_ids) <= high:
            raise ConfigError("subnet_ids", list(self.subnet_ids), f"gives {len(self.subnet_ids)} subnets (MSK "
                              f"{mode} needs {low}-{high}, each in its own zone)",
                              f"pass {low}-{high} private subnets in distinct availability zones")
        validation.log_retention("log_retention_days", self.log_retention_days)


class Kafka(Construct):
    """An MSK cluster; clients authenticate with IAM only and speak TLS only."""
    PORT = PORT

    def __init__(self, scope: Construct, id_: str, *, props: KafkaProps) -> None:
        super().__init__(scope, id_)
        self._props = props
        name = props.name
        self.security_group = security_group.SecurityGroup(
            self, "security-group", name=name, vpc_id=props.vpc_id,
            description=f"{name} MSK brokers; {PORT} only from admitted security groups", tags={"Name": name})
        self.security_group_id: str = self.security_group.id
        self.key: EncryptionKey | None = None
        self.log_group_name: str | None = None
        if props.settings.kafka_mode == "provisioned":
            self.key = EncryptionKey(self, "key", props=EncryptionKeyProps(
                alias=name, description=f"{name} MSK data at rest"))
            log_group = cloudwatch_log_group.CloudwatchLogGroup(
                self, "broker-log-group", name=f"{log_group_prefix(name)}broker",
                retention_in_days=props.log_retention_days, kms_key_id=props.logs_kms_key_arn)
            self.log_group_name = log_group.name
            self.cluster = msk_cluster.MskCluster(
                self, "cluster", cluster_name=name, kafka_version=props.settings.kafka_version,
                number_of_broker_nodes=props.settings.kafka_brokers_per_zone * len(props.subnet_ids),
                broker_node_group_info=msk_cluster.MskClusterBrokerNodeGroupInfo(
                    instance_type=props.settings.kafka_broker_instance_type, client_subnets=list(props.subnet_ids),
                    security_groups=[self.security_group.id],
                    storage_info=msk_cluster.MskClusterBrokerNodeGroupInfoStorageInfo(
                        ebs_storage_info=msk_cluster.MskClusterBrokerNodeGroupInfoStorageInfoEbsStorageInfo(
                            volume_size=props.settings.kafka_volume_size_gib)),
                    connectivity_info=msk_cluster.MskClusterBrokerNodeGroupInfoConnectivityInfo(
                        public_access=msk_cluster.MskClusterBrokerNodeGroupInfoConnectivityInfoPublicAccess(
                            type="DISABLED"))),
                encryption_info=msk_cluster.MskClusterEncryptionInfo(
                    encryption_at_rest_kms_key_arn=self.key.arn,
                    encryption_in_transit=msk_cluster.MskClusterEncryptionInfoEncryptionInTransit(
                        client_broker="TLS", in_cluster=True)),
                client_authentication=msk_cluster.MskClusterClientAuthentication(
                    sasl=msk_cluster.MskClusterClientAuthenticationSasl(iam=True, scram=False),
                    unauthenticated=False),
                logging_info=msk_cluster.MskClusterLoggingInfo(broker_logs=msk_cluster.MskClusterLoggingInfoBrokerLogs(
                    cloudwatch_logs=msk_cluster.MskClusterLoggingInfoBrokerLogsCloudwatchLogs(
                        enabled=True, log_group=log_group.name))),
                enhanced_monitoring="PER_BROKER", tags={"Name": name})
            self.bootstrap_brokers: str = self.cluster.bootstrap_brokers_sasl_iam
        else:
            self.cluster = msk_serverless_cluster.MskServerlessCluster(
                self, "cluster", cluster_name=name,
                vpc_config=[msk_serverless_cluster.MskServerlessClusterVpcConfig(
                    subnet_ids=list(props.subnet_ids), security_group_ids=[self.security_group.id])],
                client_authentication=msk_serverless_cluster.MskServerlessClusterClientAuthentication(
                    sasl=msk_serverless_cluster.MskServerlessClusterClientAuthenticationSasl(
                        iam=msk_serverless_cluster.MskServerlessClusterClientAuthenticationSaslIam(enabled=True))),
                tags={"Name": name})
            brokers = data_aws_msk_bootstrap_brokers.DataAwsMskBootstrapBrokers(
                self, "bootstrap-brokers", cluster_arn=self.cluster.arn)
            self.bootstrap_brokers = brokers.bootstrap_brokers_sasl_iam
        self.name = name
        self.arn: str = self.cluster.arn
        self.cluster_uuid: str = self.cluster.cluster_uuid

    def allow_from(self, id_: str, *, source_security_group_id: str) -> None:
        """Open 9098 to exactly one security group (never to a CIDR)."""
        admit_tcp_from(self, f"ingress-{id_}", security_group_id=self.security_group.id, port=PORT,
                       source_security_group_id=source_security_group_id, description=f"Kafka (TLS + IAM) from {id_}")

    def topic_arn(self, topic: str) -> str:
        return self._resource_arn("topic", topic)

    def group_arn(self, group: str) -> str:
        return self._resource_arn("group", group)

    def _resource_arn(self, kind: str, resource: str) -> str:
        env = AwsEnvironment.of(self)
        p = self._props
        return f"arn:{env.partition}:kafka:{env.region}:{env.account_id}:{kind}/{p.name}/{self.cluster_uuid}/{resource}"

    def grant_read(self, identities: PlatformIdentities, workload_id: str, *, topics: tuple[str, ...],
                   consumer_group: str) -> None:
        """Let one workload connect and consume exactly these topics as exactly this consumer group."""
        if not topics:
            raise ConfigError("topics", topics, "is empty", "name the topics the workload reads")
        identities.grant(workload_id, "ConnectKafka", ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"],
                         [self.arn])
        identities.grant(workload_id, "ReadKafkaTopics", ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                         [self.topic_arn(t) for t in topics])
        identities.grant(workload_id, "UseKafkaConsumerGroup",
                         ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"], [self.group_arn(consumer_group)])
