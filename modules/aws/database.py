"""RDS PostgreSQL for the Airflow metadata database: private, KMS-encrypted, TLS-only, master password
managed by RDS in Secrets Manager, logs exported to encrypted log groups with retention."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws import (
    cloudwatch_log_group,
    db_instance,
    db_parameter_group,
    db_subnet_group,
    iam_role,
    iam_role_policy_attachment,
    security_group,
)
from constructs import Construct

from ..core import iam, validation
from .encryption import EncryptionKey, EncryptionKeyProps
from .network import admit_tcp_from
from .settings import DatabaseSettings
from ..core.tokens import is_unresolved
from ..core.validation import require
from ..core.environment import AwsEnvironment

PORT = 5432
LOG_EXPORTS = ("postgresql", "upgrade")

_IDENTIFIER = re.compile(r"[a-z](?!.*--)[a-z0-9-]{0,49}(?<!-)")

# name -> (value, static). Static parameters only take effect after a reboot ("pending-reboot");
# dynamic ones are applied immediately.
_PARAMETERS = {
    "rds.force_ssl": ("1", False),                  # refuse every non-TLS connection, server side
    "ssl_min_protocol_version": ("TLSv1.2", False),
    "log_connections": ("1", False),
    "log_disconnections": ("1", False),
    "log_statement": ("ddl", False),                # schema changes (Airflow migrations), not every query
    "log_min_duration_statement": ("1000", False),  # statements slower than 1 s
}


def log_group_prefix(name: str) -> str:
    """Prefix of the instance's log group names: the logs KMS key's policy must admit it."""
    return f"/aws/rds/instance/{name}/"


@dataclass(frozen=True, kw_only=True)
class DatabaseProps:
    name: str                                    # DB instance identifier, e.g. 'airflow-prod'
    vpc_id: str
    subnet_ids: tuple[str, ...]                  # the database subnets, one per AZ
    logs_kms_key_arn: str                        # key for the exported-log groups (policy admits log_group_prefix)
    settings: DatabaseSettings = field(default_factory=DatabaseSettings)
    deletion_protection: bool = True             # also decides the final snapshot
    log_retention_days: int = 30

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and _IDENTIFIER.fullmatch(self.name) is not None, "name", self.name,
                "is not a valid RDS instance identifier",
                "use 1-50 lowercase letters, digits and single hyphens, starting with a letter, not ending with '-'")
        if not is_unresolved(list(self.subnet_ids)):
            require(len(self.subnet_ids) >= 2, "subnet_ids", list(self.subnet_ids),
                    "has fewer than 2 subnets (an RDS subnet group needs two AZs)",
                    "pass the network's database subnet ids, one per AZ")
        validation.log_retention("log_retention_days", self.log_retention_days)


class Database(Construct):
    """One PostgreSQL instance reachable on 5432 only from security groups admitted with `allow_from`."""

    PORT = PORT

    def __init__(self, scope: Construct, id_: str, *, props: DatabaseProps) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        name, settings = props.name, props.settings
        self.key = EncryptionKey(self, "key", props=EncryptionKeyProps(
            alias=f"{name}-rds", description=f"{name} RDS storage, Performance Insights and master secret"))
        subnets = db_subnet_group.DbSubnetGroup(
            self, "subnet-group", name=name, description=f"{name} database subnets",
            subnet_ids=list(props.subnet_ids))
        # No inline rules (they would fight the separate rule resources); no egress: RDS needs none.
        self.security_group = security_group.SecurityGroup(
            self, "security-group", name=f"{name}-rds", vpc_id=props.vpc_id,
            description=f"{name} PostgreSQL; ingress only from admitted security groups", tags={"Name": f"{name}-rds"})
        family = f"postgres{settings.engine_major}"
        # A new group per major version (created before the old one is dropped) keeps major upgrades possible.
        parameters = db_parameter_group.DbParameterGroup(
            self, "parameter-group", name=f"{name}-{family}", family=family,
            description=f"{name} TLS-only, connection and DDL logging",
            parameter=[db_parameter_group.DbParameterGroupParameter(
                name=key, value=value, apply_method="pending-reboot" if static else "immediate")
                for key, (value, static) in _PARAMETERS.items()],
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True))
        # Created here so RDS does not create them itself, unencrypted and kept forever.
        log_groups = [cloudwatch_log_group.CloudwatchLogGroup(
            self, f"log-group-{export}", name=f"{log_group_prefix(name)}{export}",
            retention_in_days=props.log_retention_days, kms_key_id=props.logs_kms_key_arn) for export in LOG_EXPORTS]
        monitoring_role = None
        if settings.monitoring_interval_seconds:
            monitoring_role = iam_role.IamRole(
                self, "monitoring-role", name=f"{name}-rds-monitor",
                assume_role_policy=iam.service_assume_role_policy("monitoring.rds.amazonaws.com",
                                                                  source_account=env.account_id))
            iam_role_policy_attachment.IamRolePolicyAttachment(
                self, "monitoring-role-policy", role=monitoring_role.name,
                policy_arn=f"arn:{env.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole")
        final_snapshot = props.deletion_protection
        self.resource = db_instance.DbInstance(
            self, "instance", identifier=name, engine="postgres", engine_version=settings.engine_version,
            instance_class=settings.instance_class, db_name=settings.database_name, username=settings.master_username,
            # RDS generates the master password and keeps it in Secrets Manager (encrypted with our key):
            # no password exists in code, in the synthesized JSON or in Terraform state.
            manage_master_user_password=True, master_user_secret_kms_key_id=self.key.arn,
            iam_database_authentication_enabled=True, port=PORT,
            db_subnet_group_name=subnets.name, vpc_security_group_ids=[self.security_group.id],
            publicly_accessible=False, parameter_group_name=parameters.name, ca_cert_identifier=settings.ca_cert_identifier,
            storage_type="gp3", allocated_storage=settings.allocated_storage_gib,
            max_allocated_storage=settings.max_allocated_storage_gib, storage_encrypted=True, kms_key_id=self.key.arn,
            multi_az=settings.multi_az, backup_retention_period=settings.backup_retention_days,
            backup_window=settings.backup_window, maintenance_window=settings.maintenance_window,
            copy_tags_to_snapshot=True, deletion_protection=props.deletion_protection,
            skip_final_snapshot=not final_snapshot,
            final_snapshot_identifier=f"{name}-final" if final_snapshot else None,
            delete_automated_backups=not final_snapshot,
            performance_insights_enabled=True, performance_insights_kms_key_id=self.key.arn,
            performance_insights_retention_period=settings.performance_insights_retention_days,
            monitoring_interval=settings.monitoring_interval_seconds,
            monitoring_role_arn=monitoring_role.arn if monitoring_role else None,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            auto_minor_version_upgrade=True, allow_major_version_upgrade=False,
            apply_immediately=False,                     # changes wait for the maintenance window
            depends_on=[*log_groups], tags={"Name": name})

        self.identifier: str = self.resource.identifier
        self.endpoint: str = self.resource.endpoint      # "host:port"
        self.address: str = self.resource.address
        self.port: int = PORT
        self.security_group_id: str = self.security_group.id
        self.master_secret_arn: str = self.resource.master_user_secret.get(0).secret_arn
        self.kms_key_arn: str = self.key.arn
        self.database_name: str = settings.database_name
        self.master_username: str = settings.master_username
        self.resource_id: str = self.resource.resource_id   # for rds-db:connect (IAM authentication)
        self.log_group_names: list[str] = [group.name for group in log_groups]

    def allow_from(self, id_: str, *, source_security_group_id: str) -> None:
        """Open 5432 to exactly one security group (never to a CIDR)."""
        admit_tcp_from(self, f"ingress-{id_}", security_group_id=self.security_group.id, port=PORT,
                       source_security_group_id=source_security_group_id, description=f"PostgreSQL from {id_}")

