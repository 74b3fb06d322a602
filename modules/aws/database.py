"""RDS PostgreSQL for the Airflow metadata database: private, KMS-encrypted, TLS-only, master password
managed by RDS in Secrets Manager, logs exported to encrypted log groups with retention."""
from __future__ import annotations

import re
from dataclasses import dataclass

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
from ..core.tokens import is_unresolved
from ..core.validation import require
from ..core.environment import AwsEnvironment

PORT = 5432
LOG_EXPORTS = ("postgresql", "upgrade")

# RDS for PostgreSQL instance families (current generation, single-AZ / Multi-AZ instance deployments).
INSTANCE_FAMILIES = ("t3", "t4g", "m5", "m5d", "m6g", "m6gd", "m6i", "m6id", "m6idn", "m6in", "m7g", "m7i", "m8g",
                     "r5", "r5b", "r5d", "r6g", "r6gd", "r6i", "r6id", "r6idn", "r6in", "r7g", "r7i", "r8g",
                     "x2g", "x2idn", "x2iedn")
_BURSTABLE_SIZES = ("micro", "small", "medium", "large", "xlarge", "2xlarge")
_SIZES = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "32xlarge",
          "48xlarge", "metal")
# Performance Insights is not available on the smallest burstable classes.
_NO_PERFORMANCE_INSIGHTS = ("micro", "small")
MONITORING_INTERVALS = (0, 1, 5, 10, 15, 30, 60)
PERFORMANCE_INSIGHTS_RETENTION_DAYS = (7, *(31 * month for month in range(1, 24)), 731)
CA_CERTIFICATES = ("rds-ca-rsa2048-g1", "rds-ca-rsa4096-g1", "rds-ca-ecc384-g1")
_IDENTIFIER = re.compile(r"[a-z](?!.*--)[a-z0-9-]{0,49}(?<!-)")
_PG_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,62}")

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
    engine_version: str = "17.6"
    instance_class: str = "db.t4g.medium"
    allocated_storage_gib: int = 50
    max_allocated_storage_gib: int = 200         # storage autoscaling ceiling
    multi_az: bool = True
    backup_retention_days: int = 30
    backup_window: str = "02:00-03:00"           # UTC, must not overlap the maintenance window
    maintenance_window: str = "sun:03:30-sun:04:30"
    deletion_protection: bool = True             # also decides the final snapshot
    performance_insights_retention_days: int = 7
    monitoring_interval_seconds: int = 60        # enhanced monitoring; 0 turns it off
    log_retention_days: int = 30
    database_name: str = "airflow"
    master_username: str = "airflow_admin"
    ca_cert_identifier: str = "rds-ca-rsa2048-g1"

    def __post_init__(self) -> None:
        require(isinstance(self.name, str) and _IDENTIFIER.fullmatch(self.name) is not None, "name", self.name,
                "is not a valid RDS instance identifier",
                "use 1-50 lowercase letters, digits and single hyphens, starting with a letter, not ending with '-'")
        if not is_unresolved(list(self.subnet_ids)):
            require(len(self.subnet_ids) >= 2, "subnet_ids", list(self.subnet_ids),
                    "has fewer than 2 subnets (an RDS subnet group needs two AZs)",
                    "pass the network's database subnet ids, one per AZ")
        version = re.fullmatch(r"(\d+)\.(\d+)", self.engine_version)
        require(version is not None and 13 <= int(version.group(1)) <= 17, "engine_version", self.engine_version,
                "is not a supported RDS PostgreSQL version", "use 'MAJOR.MINOR' with major 13-17, e.g. '17.6'")
        self._instance_class()
        require(20 <= self.allocated_storage_gib <= 65536, "allocated_storage_gib", self.allocated_storage_gib,
                "is outside what gp3 storage accepts", "use 20-65536 GiB")
        require(self.max_allocated_storage_gib > self.allocated_storage_gib, "max_allocated_storage_gib",
                self.max_allocated_storage_gib, f"is not above allocated_storage_gib={self.allocated_storage_gib}",
                "set a storage-autoscaling ceiling larger than the allocated storage")
        require(self.max_allocated_storage_gib <= 65536, "max_allocated_storage_gib", self.max_allocated_storage_gib,
                "is above the gp3 maximum", "use at most 65536 GiB")
        require(1 <= self.backup_retention_days <= 35, "backup_retention_days", self.backup_retention_days,
                "is outside 1-35 (0 would turn automated backups off)", "use 1-35 days")
        validation.daily_window("backup_window", self.backup_window)
        validation.weekly_window("maintenance_window", self.maintenance_window)
        require(self.performance_insights_retention_days in PERFORMANCE_INSIGHTS_RETENTION_DAYS,
                "performance_insights_retention_days", self.performance_insights_retention_days,
                "is not a Performance Insights retention period", "use 7, a multiple of 31 up to 713, or 731")
        require(self.monitoring_interval_seconds in MONITORING_INTERVALS, "monitoring_interval_seconds",
                self.monitoring_interval_seconds, "is not an enhanced-monitoring interval",
                f"use one of {', '.join(map(str, MONITORING_INTERVALS))}")
        validation.log_retention("log_retention_days", self.log_retention_days)
        require(_PG_NAME.fullmatch(self.database_name) is not None, "database_name", self.database_name,
                "is not a valid PostgreSQL database name", "use 1-63 letters, digits or '_', starting with a letter")
        require(_PG_NAME.fullmatch(self.master_username) is not None
                and not self.master_username.lower().startswith(("rds", "pg_")), "master_username",
                self.master_username, "is not a master user name RDS accepts",
                "use 1-63 letters, digits or '_', starting with a letter and not with 'rds' or 'pg_'")
        require(self.ca_cert_identifier in CA_CERTIFICATES, "ca_cert_identifier", self.ca_cert_identifier,
                "is not an RDS certificate authority", f"use one of {', '.join(CA_CERTIFICATES)}")

    def _instance_class(self) -> None:
        match = re.fullmatch(r"db\.([a-z0-9]+)\.([a-z0-9]+)", self.instance_class)
        family, size = match.groups() if match else ("", "")
        require(family in INSTANCE_FAMILIES, "instance_class", self.instance_class,
                "is not an RDS for PostgreSQL instance family",
                f"use 'db.<family>.<size>' with a family among {', '.join(INSTANCE_FAMILIES)}, e.g. 'db.t4g.medium'")
        sizes = _BURSTABLE_SIZES if family.startswith("t") else _SIZES
        require(size in sizes, "instance_class", self.instance_class, f"has a size the db.{family} family lacks",
                f"use one of {', '.join(sizes)}")
        require(size not in _NO_PERFORMANCE_INSIGHTS, "instance_class", self.instance_class,
                "does not support Performance Insights", "use db.t4g.medium or larger")

    @property
    def engine_major(self) -> str:
        return self.engine_version.split(".")[0]


class Database(Construct):
    """One PostgreSQL instance reachable on 5432 only from security groups admitted with `allow_from`."""

    PORT = PORT

    def __init__(self, scope: Construct, id_: str, *, props: DatabaseProps) -> None:
        super().__init__(scope, id_)
        env = AwsEnvironment.of(self)
        name = props.name
        self.key = EncryptionKey(self, "key", props=EncryptionKeyProps(
            alias=f"{name}-rds", description=f"{name} RDS storage, Performance Insights and master secret"))
        subnets = db_subnet_group.DbSubnetGroup(
            self, "subnet-group", name=name, description=f"{name} database subnets",
            subnet_ids=list(props.subnet_ids))
        # No inline rules (they would fight the separate rule resources); no egress: RDS needs none.
        self.security_group = security_group.SecurityGroup(
            self, "security-group", name=f"{name}-rds", vpc_id=props.vpc_id,
            description=f"{name} PostgreSQL; ingress only from admitted security groups", tags={"Name": f"{name}-rds"})
        family = f"postgres{props.engine_major}"
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
        if props.monitoring_interval_seconds:
            monitoring_role = iam_role.IamRole(
                self, "monitoring-role", name=f"{name}-rds-monitor",
                assume_role_policy=iam.service_assume_role_policy("monitoring.rds.amazonaws.com",
                                                                  source_account=env.account_id))
            iam_role_policy_attachment.IamRolePolicyAttachment(
                self, "monitoring-role-policy", role=monitoring_role.name,
                policy_arn=f"arn:{env.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole")
        final_snapshot = props.deletion_protection
        self.resource = db_instance.DbInstance(
            self, "instance", identifier=name, engine="postgres", engine_version=props.engine_version,
            instance_class=props.instance_class, db_name=props.database_name, username=props.master_username,
            # RDS generates the master password and keeps it in Secrets Manager (encrypted with our key):
            # no password exists in code, in the synthesized JSON or in Terraform state.
            manage_master_user_password=True, master_user_secret_kms_key_id=self.key.arn,
            iam_database_authentication_enabled=True, port=PORT,
            db_subnet_group_name=subnets.name, vpc_security_group_ids=[self.security_group.id],
            publicly_accessible=False, parameter_group_name=parameters.name, ca_cert_identifier=props.ca_cert_identifier,
            storage_type="gp3", allocated_storage=props.allocated_storage_gib,
            max_allocated_storage=props.max_allocated_storage_gib, storage_encrypted=True, kms_key_id=self.key.arn,
            multi_az=props.multi_az, backup_retention_period=props.backup_retention_days,
            backup_window=props.backup_window, maintenance_window=props.maintenance_window,
            copy_tags_to_snapshot=True, deletion_protection=props.deletion_protection,
            skip_final_snapshot=not final_snapshot,
            final_snapshot_identifier=f"{name}-final" if final_snapshot else None,
            delete_automated_backups=not final_snapshot,
            performance_insights_enabled=True, performance_insights_kms_key_id=self.key.arn,
            performance_insights_retention_period=props.performance_insights_retention_days,
            monitoring_interval=props.monitoring_interval_seconds,
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
        self.database_name: str = props.database_name
        self.master_username: str = props.master_username
        self.resource_id: str = self.resource.resource_id   # for rds-db:connect (IAM authentication)
        self.log_group_names: list[str] = [group.name for group in log_groups]

    def allow_from(self, id_: str, *, source_security_group_id: str) -> None:
        """Open 5432 to exactly one security group (never to a CIDR)."""
        admit_tcp_from(self, f"ingress-{id_}", security_group_id=self.security_group.id, port=PORT,
                       source_security_group_id=source_security_group_id, description=f"PostgreSQL from {id_}")

