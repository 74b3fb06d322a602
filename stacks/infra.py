"""Per-environment AWS infrastructure (AWS provider only): network, keys, EKS, identities, RDS, Redis, S3."""
from __future__ import annotations

from cdktf import TerraformOutput
from constructs import Construct

from environments.config import EnvironmentConfig
from modules.aspects import GovernedStack
from modules.cache import Cache, CacheProps
from modules.cache import log_group_prefix as cache_log_prefix
from modules.cluster import Cluster, ClusterProps, NodeGroupSizing, container_insights_log_group_prefix
from modules.database import Database, DatabaseProps
from modules.database import log_group_prefix as database_log_prefix
from modules.edge import BACKENDS, Edge, EdgeProps, alb_log_delivery_statements, waf_log_group_name
from modules.encryption import EncryptionKey, EncryptionKeyProps, logs_service_use
from modules.events import Events, EventsProps
from modules.identity import PlatformIdentities, PlatformIdentitiesProps
from modules.kafka import Kafka, KafkaProps, broker_subnet_ids
from modules.kafka import log_group_prefix as kafka_log_prefix
from modules.network import Network, NetworkProps
from modules.node_interruption import NodeInterruptionQueue, NodeInterruptionQueueProps
from modules.observability import Alerting, AlertingProps
from modules.platform_secrets import PlatformSecrets, PlatformSecretsProps
from modules.storage import AirflowBuckets, AirflowBucketsProps

from .backend import use_environment_backend
from .errors import section_props
from .provider import Emulator, aws_provider

class InfraStack(GovernedStack):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 emulator: Emulator | None = None) -> None:
        super().__init__(scope, id_)
        c = config
        account = dict(account_id=c.account_id, partition=c.partition)
        aws_provider(self, region=c.region, account_id=c.account_id, emulator=emulator)
        use_environment_backend(self, config=c, layer="infra", emulator=emulator)

        logs_key = EncryptionKey(self, "logs-key", props=EncryptionKeyProps(
            alias=f"{c.prefix}-logs", description=f"{c.prefix} CloudWatch Logs", services=(logs_service_use(
                region=c.region, log_group_prefixes=(
                    f"/aws/vpc/{c.prefix}/", f"/aws/eks/{c.prefix}/", database_log_prefix(c.prefix),
                    cache_log_prefix(f"{c.prefix}-broker"), f"/{c.prefix}/",
                    waf_log_group_name(c.prefix), kafka_log_prefix(f"{c.prefix}-kafka"),
                    container_insights_log_group_prefix(c.cluster_name)), **account),), **account))
        self.network = network = Network(self, "network", props=NetworkProps(
            name=c.prefix, cidr=c.network.vpc_cidr, subnets=c.network.subnets, availability_zones=c.availability_zones,
            nat_gateways=c.network.nat_gateways, interface_endpoints=c.network.interface_endpoints, region=c.region,
            cluster_name=c.cluster_name, flow_log_retention_days=c.log_retention_days, flow_log_kms_key_arn=logs_key.arn,
            **account))
        in_vpc = dict(vpc_id=network.vpc_id, logs_kms_key_arn=logs_key.arn)

        self.storage = storage = AirflowBuckets(self, "storage", props=AirflowBucketsProps(
            name=c.prefix, bucket_names={p: c.bucket_name(p) for p in ("dags", "task-logs", "plugins", "access-logs")},
            task_log_expiration_days=c.storage.task_log_expiration_days,
            access_log_expiration_days=c.storage.access_log_expiration_days, prevent_destroy=c.deletion_protection,
            access_log_statements=alb_log_delivery_statements(account_id=c.account_id, region=c.region,
                                                              partition=c.partition), **account))
        self.cluster = cluster = Cluster(self, "cluster", props=section_props(
            f"environments.{c.name}.cluster", lambda: ClusterProps(
            name=c.cluster_name, kubernetes_version=c.cluster.kubernetes_version,
            subnet_ids=tuple(network.private_subnet_ids), public_access_cidrs=c.cluster.public_access_cidrs,
            admin_principal_arns=c.cluster.admin_role_arns,
            system_nodes=NodeGroupSizing(instance_types=c.cluster.system_instance_types,
                                         min_size=c.cluster.system_min_size, desired_size=c.cluster.system_desired_size,
                                         max_size=c.cluster.system_max_size, disk_size_gib=c.cluster.system_disk_size_gib),
            **({"addon_versions": c.cluster.addon_versions} if c.cluster.addon_versions else {}),
            log_retention_days=c.log_retention_days, region=c.region, **in_vpc, **account)))
        self.database = database = Database(self, "database", props=section_props(
            f"environments.{c.name}.database", lambda: DatabaseProps(
            name=c.prefix, subnet_ids=tuple(network.database_subnet_ids), instance_class=c.database.instance_class,
            engine_version=c.database.engine_version, allocated_storage_gib=c.database.allocated_storage_gib,
            max_allocated_storage_gib=c.database.max_allocated_storage_gib, multi_az=c.database.multi_az,
            backup_retention_days=c.database.backup_retention_days, deletion_protection=c.deletion_protection,
            log_retention_days=c.log_retention_days, region=c.region, **in_vpc, **account)))
        self.cache = cache = Cache(self, "cache", props=section_props(
            f"environments.{c.name}.cache", lambda: CacheProps(
            name=f"{c.prefix}-broker", subnet_ids=tuple(network.private_subnet_ids), engine=c.cache.engine,
            node_type=c.cache.node_type, num_nodes=c.cache.num_nodes, multi_az=c.cache.multi_az,
            snapshot_retention_days=c.cache.snapshot_retention_days, log_retention_days=c.log_retention_days,
            region=c.region, **in_vpc, **account)))
        for store in (database, cache):
            store.allow_from("cluster-nodes", source_security_group_id=cluster.node_security_group_id)
        cluster.allow_node_egress("database", destination_security_group_id=database.security_group_id, port=Database.PORT)
        cluster.allow_node_egress("cache", destination_security_group_id=cache.security_group_id, port=Cache.PORT)

        vault_key = EncryptionKey(self, "vault-unseal-key", props=EncryptionKeyProps(
            alias=f"{c.prefix}-vault-unseal", description=f"{c.prefix} Vault auto-unseal", **account))
        self.identities = identities = PlatformIdentities(self, "identities", props=PlatformIdentitiesProps(
            cluster_name=cluster.name, region=c.region, dags_bucket_arn=storage.dags.arn,
            logs_bucket_arn=storage.task_logs.arn, plugins_bucket_arn=storage.plugins.arn,
            storage_kms_key_arn=storage.kms_key_arn, vault_unseal_key_arn=vault_key.arn,
            delivered_secret_arns=(database.master_secret_arn, cache.auth_token_secret_arn),
            secrets_kms_key_arns=(database.kms_key_arn, cache.kms_key_arn),
            node_security_group_id=cluster.node_security_group_id, node_role_arn=cluster.node_role_arn,
            addon_managed=("ebs-csi-driver", "cloudwatch-agent"), **account))
        cluster.bind_addon_identity("aws-ebs-csi-driver", service_account="ebs-csi-controller-sa",
                                    role_arn=identities.role_arns["ebs-csi-driver"])
        cluster.bind_addon_identity("amazon-cloudwatch-observability", service_account="cloudwatch-agent",
                                    role_arn=identities.role_arns["cloudwatch-agent"])
        # Karpenter drains spot workers on the two-minute warning instead of losing their tasks mid-run.
        self.node_interruption = NodeInterruptionQueue(self, "node-interruption", props=NodeInterruptionQueueProps(
            cluster_name=c.cluster_name, region=c.region, **account))
        self.node_interruption.grant_consume(identities)
        self.vault_unseal_key_arn = vault_key.arn
        # Generated in-cluster secrets (Airflow keys, Grafana admin, Alertmanager receivers) that External Secrets
        # delivers; its role may read exactly these and decrypt them only through Secrets Manager.
        self.platform_secrets = PlatformSecrets(self, "platform-secrets", props=PlatformSecretsProps(
            prefix=c.prefix, region=c.region, **account))
        self.platform_secrets.grant_read(identities, "external-secrets")
        self._events(c, storage=storage, network=network, cluster=cluster, identities=identities,
                     logs_kms_key_arn=logs_key.arn, account=account)

        self.edge = edge = Edge(self, "edge", props=section_props(
            f"environments.{c.name}.edge", lambda: EdgeProps(
            name=c.prefix, cluster_name=c.cluster_name, domain=c.domain, vpc_id=network.vpc_id,
            public_subnet_ids=tuple(network.public_subnet_ids), target_security_group_id=cluster.node_security_group_id,
            access_log_bucket=storage.access_logs.name, logs_kms_key_arn=logs_key.arn,
            log_retention_days=c.log_retention_days, zone_mode=c.edge.zone_mode, extra_sans=c.edge.extra_sans,
            ingress_cidrs=c.edge.ingress_cidrs, waf_rate_limit=c.edge.waf_rate_limit, tls_policy=c.edge.tls_policy,
            dual_stack=network.public_ipv6, deletion_protection=c.deletion_protection)),
            # ELB checks it may write the log bucket when the ALB is created: the bucket policy comes first.
            depends_on=[storage.access_logs.node.find_child("policy")])
        for backend in BACKENDS:
            cluster.allow_node_ingress(f"alb-{backend.host}", source_security_group_id=edge.security_group_id,
                                       port=backend.port)
        self._alerting(c, account=account)
        self._outputs()

    def _outputs(self) -> None:
        """What the platform and vault-config stacks read through cross-stack references / remote state."""
        n, cl, db, cache, s = self.network, self.cluster, self.database, self.cache, self.storage
        values = {
            "vpc-id": n.vpc_id, "private-subnet-ids": n.private_subnet_ids, "public-subnet-ids": n.public_subnet_ids,
            "database-subnet-ids": n.database_subnet_ids,
            "cluster-name": cl.name, "cluster-endpoint": cl.endpoint, "cluster-oidc-issuer-url": cl.oidc_issuer_url,
            "cluster-certificate-authority-data": cl.certificate_authority_data,
            "node-security-group-id": cl.node_security_group_id,
            "database-endpoint": db.address, "database-port": db.port, "database-name": db.database_name,
            "database-master-secret-arn": db.master_secret_arn,
            "cache-primary-endpoint": cache.primary_endpoint, "cache-port": cache.port,
            "cache-auth-token-secret-arn": cache.auth_token_secret_arn,
            "dags-bucket-name": s.dags.name, "task-logs-bucket-name": s.task_logs.name,
            "plugins-bucket-name": s.plugins.name, "access-logs-bucket-name": s.access_logs.name,
            "vault-unseal-key-arn": self.vault_unseal_key_arn,
            "karpenter-interruption-queue-name": self.node_interruption.queue_name,
            "alb-dns-name": self.edge.dns_name, "web-acl-arn": self.edge.web_acl_arn,
            **{f"target-group-arn-{host}": arn for host, arn in self.edge.target_group_arns.items()},
        }
        for name, value in values.items():
            TerraformOutput(self, name, value=value)
        for workload, arn in self.identities.role_arns.items():
            TerraformOutput(self, f"role-arn-{workload}", value=arn)
        for name, value in self.events.outputs().items():
            TerraformOutput(self, name, value=value)
        if self.kafka:
            TerraformOutput(self, "kafka-bootstrap-brokers", value=self.kafka.bootstrap_brokers)
            TerraformOutput(self, "kafka-cluster-arn", value=self.kafka.arn)

    def _alerting(self, c: EnvironmentConfig, *, account: dict) -> None:
        """CloudWatch alarms -> SNS topic per severity -> PagerDuty / Slack (docs/alerting.md)."""
        a = c.alarms
        self.alerting = alerting = Alerting(self, "alerting", props=section_props(
            f"environments.{c.name}.alarms", lambda: AlertingProps(
            name=c.prefix, region=c.region, thresholds=a.thresholds(), pagerduty_secret_name=a.pagerduty_secret_name,
            pagerduty_severities=a.pagerduty_severities, slack_workspace_id=a.slack_workspace_id,
            slack_channel_id=a.slack_channel_id, slack_severities=a.slack_severities, **account)))
        alerting.watch_database(identifier=self.database.identifier)
        alerting.watch_cache(member_cluster_ids=self.cache.member_cluster_ids)
        alerting.watch_load_balancer(load_balancer_arn_suffix=self.edge.load_balancer_arn_suffix,
                                     target_group_arn_suffixes=self.edge.target_group_arn_suffixes)
        alerting.watch_cluster(cluster_name=self.cluster.name)
        for rule, queue in self.events.queues.items():
            alerting.watch_queue(rule, queue_name=queue.name, dlq_name=queue.dead_letter_name)
        for severity, arn in alerting.topic_arns.items():
            TerraformOutput(self, f"alerts-topic-arn-{severity}", value=arn)

    def _events(self, c: EnvironmentConfig, *, storage: AirflowBuckets, network: Network, cluster: Cluster,
                identities: PlatformIdentities, logs_kms_key_arn: str, account: dict) -> None:
        """Event-driven DAGs (docs/events.md): rules -> encrypted queues, optional MSK; only the triggerer consumes."""
        e = c.events
        self.events = Events(self, "events", props=section_props(f"environments.{c.name}.events", lambda: EventsProps(
            name=c.prefix, region=c.region, landing_bucket_name=c.bucket_name("landing"),
            landing_kms_key_arn=storage.kms_key_arn, access_log_bucket=storage.access_logs.bucket_id,
            landing_expiration_days=e.landing_expiration_days, prevent_destroy=c.deletion_protection, rules=e.rules,
            application_source_prefix=e.application_source_prefix, max_receive_count=e.max_receive_count,
            retry_attempts=e.retry_attempts, max_event_age_seconds=e.max_event_age_seconds,
            message_retention_seconds=e.message_retention_seconds,
            visibility_timeout_seconds=e.visibility_timeout_seconds, **account)))
        self.events.grant_consume(identities, "airflow-triggerer")
        self.kafka: Kafka | None = None
        if e.kafka:
            self.kafka = kafka = Kafka(self, "kafka", props=section_props(f"environments.{c.name}.events", lambda: KafkaProps(
                name=f"{c.prefix}-kafka", vpc_id=network.vpc_id, region=c.region, mode=e.kafka_mode,
                subnet_ids=broker_subnet_ids(e.kafka_availability_zones, availability_zones=c.availability_zones,
                                             subnet_ids=network.private_subnet_ids),
                kafka_version=e.kafka_version, broker_instance_type=e.kafka_broker_instance_type,
                brokers_per_subnet=e.kafka_brokers_per_zone, volume_size_gib=e.kafka_volume_size_gib,
                log_retention_days=c.log_retention_days, logs_kms_key_arn=logs_kms_key_arn, **account)))
            kafka.allow_from("cluster-nodes", source_security_group_id=cluster.node_security_group_id)
            cluster.allow_node_egress("kafka", destination_security_group_id=kafka.security_group_id, port=Kafka.PORT)
            kafka.grant_read(identities, "airflow-triggerer", topics=e.kafka_topics,
                             consumer_group=e.kafka_consumer_group)
