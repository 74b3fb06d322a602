"""Per-environment AWS infrastructure (AWS provider only): network, keys, EKS, identities, RDS, Redis, S3, and the
account guardrails (CloudTrail, GuardDuty) where the environment's settings turn them on."""
from __future__ import annotations

from cdktf import TerraformOutput
from constructs import Construct

from environments.config import EnvironmentConfig
from modules.core.aspects import GovernedStack
from modules.core.environment import AwsEnvironment
from modules.aws.cache import Cache, CacheProps
from modules.aws.cache import log_group_prefix as cache_log_prefix
from modules.aws.ci_runner import CiRunner, CiRunnerProps
from modules.aws.cluster import Cluster, ClusterProps, container_insights_log_group_prefix
from modules.aws.database import Database, DatabaseProps
from modules.aws.database import log_group_prefix as database_log_prefix
from modules.aws.edge import BACKENDS, Edge, EdgeProps, alb_log_delivery_statements, waf_log_group_name
from modules.aws.encryption import EncryptionKey, EncryptionKeyProps, KeyAdministrators, logs_service_use
from modules.aws.events import Events, EventsProps
from modules.aws.guardrails import AccountGuardrails, AccountGuardrailsProps
from modules.aws.identity import PlatformIdentities, PlatformIdentitiesProps
from modules.aws.kafka import Kafka, KafkaProps, broker_subnet_ids
from modules.aws.kafka import log_group_prefix as kafka_log_prefix
from modules.aws.network import Network, NetworkProps
from modules.aws.node_interruption import NodeInterruptionQueue, NodeInterruptionQueueProps
from modules.aws.observability import Alerting, AlertingProps
from modules.aws.platform_secrets import PlatformSecrets, PlatformSecretsProps, grant_secret_delivery
from modules.aws.secret_reader import SecretReaderRole, SecretReaderRoleProps
from modules.aws.storage import AirflowBuckets, AirflowBucketsProps
from modules.aws.vault_storage import VaultStorage, VaultStorageProps

from .backend import use_environment_backend
from .errors import section_props
from .provider import Emulator, aws_provider

class InfraStack(GovernedStack):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig,
                 emulator: Emulator | None = None) -> None:
        super().__init__(scope, id_)
        c = config
        environment = AwsEnvironment(account_id=c.account_id, region=c.region)
        environment.bind(self)
        KeyAdministrators(c.key_admin_arns).bind(self)     # every KMS key's administrators (manage, never use)
        aws_provider(self, region=c.region, account_id=c.account_id, emulator=emulator)
        use_environment_backend(self, config=c, layer="infra", emulator=emulator)

        logs_key = EncryptionKey(self, "logs-key", props=EncryptionKeyProps(
            alias=f"{c.prefix}-logs", description=f"{c.prefix} CloudWatch Logs", services=(logs_service_use(
                environment, log_group_prefixes=(
                    f"/aws/vpc/{c.prefix}/", f"/aws/eks/{c.prefix}/", database_log_prefix(c.prefix),
                    cache_log_prefix(f"{c.prefix}-broker"), f"/{c.prefix}/",
                    waf_log_group_name(c.prefix), kafka_log_prefix(f"{c.prefix}-kafka"),
                    container_insights_log_group_prefix(c.cluster_name))),)))
        self.network = network = Network(self, "network", props=NetworkProps(
            name=c.prefix, settings=c.network, cluster_name=c.cluster_name, flow_log_retention_days=c.log_retention_days,
            flow_log_kms_key_arn=logs_key.arn))
        in_vpc = dict(vpc_id=network.vpc_id, logs_kms_key_arn=logs_key.arn)

        self.storage = storage = AirflowBuckets(self, "storage", props=AirflowBucketsProps(
            name=c.prefix, bucket_names={p: c.bucket_name(p) for p in ("dags", "task-logs", "plugins", "access-logs")},
            settings=c.storage, prevent_destroy=c.deletion_protection,
            access_log_statements=alb_log_delivery_statements(environment)))
        self.cluster = cluster = Cluster(self, "cluster", props=section_props(
            f"environments.{c.name}.cluster", lambda: ClusterProps(
            name=c.cluster_name, settings=c.cluster, subnet_ids=tuple(network.private_subnet_ids),
            log_retention_days=c.log_retention_days, **in_vpc)))
        self.database = database = Database(self, "database", props=section_props(
            f"environments.{c.name}.database", lambda: DatabaseProps(
            name=c.prefix, settings=c.database, subnet_ids=tuple(network.database_subnet_ids),
            deletion_protection=c.deletion_protection, log_retention_days=c.log_retention_days, **in_vpc)))
        self.cache = cache = Cache(self, "cache", props=section_props(
            f"environments.{c.name}.cache", lambda: CacheProps(
            name=f"{c.prefix}-broker", settings=c.cache, subnet_ids=tuple(network.private_subnet_ids),
            log_retention_days=c.log_retention_days, **in_vpc)))
        for store in (database, cache):
            store.allow_from("cluster-nodes", source_security_group_id=cluster.node_security_group_id)
        cluster.allow_node_egress("database", destination_security_group_id=database.security_group_id, port=Database.PORT)
        cluster.allow_node_egress("cache", destination_security_group_id=cache.security_group_id, port=Cache.PORT)

        vault_key = EncryptionKey(self, "vault-unseal-key", props=EncryptionKeyProps(
            alias=f"{c.prefix}-vault-unseal", description=f"{c.prefix} Vault auto-unseal"))
        # Vault's volumes and raft snapshots on a key of their own; the snapshot bucket (docs/vault.md).
        self.vault_storage = vault_storage = VaultStorage(self, "vault-storage", props=section_props(
            f"environments.{c.name}.vault", lambda: VaultStorageProps(
                name=c.prefix, snapshot_bucket_name=c.bucket_name("vault-snapshots"),
                snapshot_retention_days=c.vault.snapshot_retention_days,
                access_log_bucket=storage.access_logs.bucket_id, access_log_policy=storage.access_logs.policy,
                prevent_destroy=c.deletion_protection)))
        # One role per workload; each resource grants what a workload needs of it (modules/aws/identity.py).
        self.identities = identities = PlatformIdentities(self, "identities", props=PlatformIdentitiesProps(
            cluster_name=cluster.name, addon_managed=("ebs-csi-driver", "cloudwatch-agent")))
        storage.grant_airflow(identities)
        vault_key.grant(identities, "vault", "AutoUnsealWithKms", ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"])
        vault_storage.grant_snapshot_upload(identities)
        vault_storage.grant_volume_encryption(identities)
        cluster.grant_node_provisioning(identities)
        cluster.grant_target_registration(identities)
        cluster.grant_container_insights(identities)
        cluster.grant_volume_management(identities)
        # The IdP client secret too: Grafana's generic OAuth client reads it from a Secret (docs/access.md).
        sso_secret = (environment.arn("secretsmanager", c.sso.client_secret_arn_pattern),) if c.sso.enabled else ()
        # Not the RDS master secret: External Secrets reads that only by assuming the db-admin-secrets role below.
        grant_secret_delivery(identities, "external-secrets",
                              secret_arns=(cache.auth_token_secret_arn, *sso_secret), kms_key_arns=(cache.kms_key_arn,))
        cluster.bind_addon_identity("aws-ebs-csi-driver", service_account="ebs-csi-controller-sa",
                                    role_arn=identities.role_arns["ebs-csi-driver"])
        cluster.bind_addon_identity("amazon-cloudwatch-observability", service_account="cloudwatch-agent",
                                    role_arn=identities.role_arns["cloudwatch-agent"])
        # Karpenter drains spot workers on the two-minute warning instead of losing their tasks mid-run.
        self.node_interruption = NodeInterruptionQueue(self, "node-interruption", props=NodeInterruptionQueueProps(
            cluster_name=c.cluster_name))
        self.node_interruption.grant_consume(identities)
        self.vault_unseal_key_arn = vault_key.arn
        # Generated in-cluster secrets (Airflow keys, Grafana admin, Alertmanager receivers) that External Secrets
        # delivers; its role may read exactly these and decrypt them only through Secrets Manager.
        self.platform_secrets = PlatformSecrets(self, "platform-secrets", props=PlatformSecretsProps(
            prefix=c.prefix))
        self.platform_secrets.grant_read(identities, "external-secrets")
        # What the database-role Job's namespace receives (its SecretStore names this role; the shared
        # ClusterSecretStore does not serve that namespace): the master secret is readable by this role alone.
        users = self.platform_secrets.airflow_database_users
        self.database_admin_secrets = SecretReaderRole(
            self, "db-admin-secrets", identities=identities, props=SecretReaderRoleProps(
                name=f"{c.prefix}-db-admin-secrets", assumed_by="external-secrets",
                description=f"{c.prefix} database-role Job's secrets (External Secrets assumes it for airflow-db-admin)",
                secret_arns=(database.master_secret_arn, users.arn),
                kms_key_arns=(database.kms_key_arn, self.platform_secrets.kms_key_arn)))
        self._events(c, storage=storage, network=network, cluster=cluster, identities=identities,
                     logs_kms_key_arn=logs_key.arn)

        self.edge = edge = Edge(self, "edge", props=section_props(
            f"environments.{c.name}.edge", lambda: EdgeProps(
            name=c.prefix, cluster_name=c.cluster_name, domain=c.domain, vpc_id=network.vpc_id,
            public_subnet_ids=tuple(network.public_subnet_ids), private_subnet_ids=tuple(network.private_subnet_ids),
            sso=c.sso, target_security_group_id=cluster.node_security_group_id,
            access_log_bucket=storage.access_logs.name, logs_kms_key_arn=logs_key.arn,
            settings=c.edge, log_retention_days=c.log_retention_days, dual_stack=network.public_ipv6,
            deletion_protection=c.deletion_protection)),
            # ELB checks it may write the log bucket when the ALB is created: the bucket policy comes first.
            depends_on=[storage.access_logs.policy])
        for backend in BACKENDS:
            cluster.allow_node_ingress(f"alb-{backend.host}", source_security_group_id=edge.security_group_id,
                                       port=backend.port)
        self._alerting(c)
        self._deploy_path(c)
        # Account-wide audit trail and threat detection; off (with a reason) where another stack covers the account.
        self.guardrails = AccountGuardrails(self, "guardrails", props=section_props(
            f"environments.{c.name}.guardrails", lambda: AccountGuardrailsProps(
            name=c.prefix, bucket_name=c.bucket_name("cloudtrail"), settings=c.guardrails,
            log_retention_days=c.log_retention_days, access_log_bucket=storage.access_logs.bucket_id,
            access_log_policy=storage.access_logs.policy, prevent_destroy=c.deletion_protection)))
        self._outputs()

    def _deploy_path(self, c: EnvironmentConfig) -> None:
        """How CI deploys the platform into the private cluster (docs/design.md §12): the environment's deploy role
        (created by the state stack, named by EnvironmentConfig) gets an access entry, and the deploy workflow's
        platform and vault-config jobs run on an in-VPC runner that may reach the API endpoint."""
        self.ci_runner: CiRunner | None = None
        if not c.state.github_repository:
            return
        self.cluster.grant_deployer(c.deploy_role_arn)
        if c.ci_runner.enabled:
            self.ci_runner = runner = CiRunner(self, "ci-runner", props=section_props(
                f"environments.{c.name}.ci_runner", lambda: CiRunnerProps(
                    name=c.ci_runner_project_name, repository=c.state.github_repository, vpc_id=self.network.vpc_id,
                    subnet_ids=tuple(self.network.private_subnet_ids), settings=c.ci_runner,
                    log_retention_days=c.log_retention_days)))
            self.cluster.allow_api_from("ci-runner", source_security_group_id=runner.security_group_id)

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
            "database-admin-secrets-role-arn": self.database_admin_secrets.role_arn,
            "cache-primary-endpoint": cache.primary_endpoint, "cache-port": cache.port,
            "cache-auth-token-secret-arn": cache.auth_token_secret_arn,
            "dags-bucket-name": s.dags.name, "task-logs-bucket-name": s.task_logs.name,
            "plugins-bucket-name": s.plugins.name, "access-logs-bucket-name": s.access_logs.name,
            "vault-unseal-key-arn": self.vault_unseal_key_arn,
            "vault-data-key-arn": self.vault_storage.kms_key_arn,
            "vault-snapshot-bucket-name": self.vault_storage.snapshot_bucket_name,
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
        if self.guardrails.trail_arn:
            TerraformOutput(self, "cloudtrail-trail-arn", value=self.guardrails.trail_arn)
        if self.guardrails.detector_id:
            TerraformOutput(self, "guardduty-detector-id", value=self.guardrails.detector_id)
        if self.ci_runner:
            TerraformOutput(self, "ci-runner-project-name", value=self.ci_runner.project_name)
        if self.kafka:
            TerraformOutput(self, "kafka-bootstrap-brokers", value=self.kafka.bootstrap_brokers)
            TerraformOutput(self, "kafka-cluster-arn", value=self.kafka.arn)

    def _alerting(self, c: EnvironmentConfig) -> None:
        """CloudWatch alarms -> SNS topic per severity -> PagerDuty / Slack (docs/alerting.md)."""
        self.alerting = alerting = Alerting(self, "alerting", props=section_props(
            f"environments.{c.name}.alarms", lambda: AlertingProps(
            name=c.prefix, settings=c.alarms)))
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
                identities: PlatformIdentities, logs_kms_key_arn: str) -> None:
        """Event-driven DAGs (docs/events.md): rules -> encrypted queues, optional MSK; only the triggerer consumes."""
        e = c.events
        self.events = Events(self, "events", props=section_props(f"environments.{c.name}.events", lambda: EventsProps(
            name=c.prefix, landing_bucket_name=c.bucket_name("landing"),
            landing_kms_key_arn=storage.kms_key_arn, access_log_bucket=storage.access_logs.bucket_id,
            access_log_policy=storage.access_logs.policy, settings=e, prevent_destroy=c.deletion_protection)))
        self.events.grant_consume(identities, "airflow-triggerer")
        self.kafka: Kafka | None = None
        if e.kafka:
            self.kafka = kafka = Kafka(self, "kafka", props=section_props(f"environments.{c.name}.events", lambda: KafkaProps(
                name=f"{c.prefix}-kafka", settings=e, vpc_id=network.vpc_id,
                subnet_ids=broker_subnet_ids(e.kafka_availability_zones, availability_zones=c.availability_zones,
                                             subnet_ids=network.private_subnet_ids),
                log_retention_days=c.log_retention_days, logs_kms_key_arn=logs_kms_key_arn)))
            kafka.allow_from("cluster-nodes", source_security_group_id=cluster.node_security_group_id)
            cluster.allow_node_egress("kafka", destination_security_group_id=kafka.security_group_id, port=Kafka.PORT)
            kafka.grant_read(identities, "airflow-triggerer", topics=e.kafka_topics,
                             consumer_group=e.kafka_consumer_group)
