"""Typed, validated configuration of one environment. Differences between environments are values."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from modules.core import validation
from modules.core.validation import ConfigError, require

from .sections import (AddonsConfig, AirflowConfig, AlarmsConfig, EventsConfig, MonitoringConfig,
                       VaultConfig)

_NAME = re.compile(r"[a-z][a-z0-9-]{0,15}")
_REGION = re.compile(r"(us|eu|ap|sa|ca|me|af|il|mx)(-gov)?-[a-z]+-\d")
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "sts", "logs", "sqs", "kms", "secretsmanager", "ec2", "elasticloadbalancing",
                       "autoscaling", "eks", "eks-auth", "ssm", "monitoring")
MAX_AZS = 4


def plan_subnets(vpc_cidr: str, az_count: int) -> dict[str, tuple[str, ...]]:
    """Default subnet layout: the VPC's first half as one /N+3 private subnet per AZ (room for pod IPs),
    public and database subnets as /N+6 blocks from the second half (the rest stays free)."""
    vpc = validation.ipv4_network("network.vpc_cidr", vpc_cidr)
    private = list(vpc.subnets(new_prefix=vpc.prefixlen + 3))
    small = list(list(vpc.subnets(new_prefix=vpc.prefixlen + 1))[1].subnets(new_prefix=vpc.prefixlen + 6))
    return {"private": tuple(map(str, private[:az_count])), "public": tuple(map(str, small[:az_count])),
            "database": tuple(map(str, small[8:8 + az_count]))}


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    vpc_cidr: str
    az_count: int = 3
    nat_gateways: Literal["single", "per_az"] = "per_az"   # one NAT is cheaper; one per AZ survives an AZ outage
    public_subnet_cidrs: tuple[str, ...] = ()              # empty = plan_subnets() default
    private_subnet_cidrs: tuple[str, ...] = ()
    database_subnet_cidrs: tuple[str, ...] = ()
    interface_endpoints: tuple[str, ...] = ("ecr.api", "ecr.dkr", "sts", "logs", "sqs", "kms", "secretsmanager")
    availability_zones: tuple[str, ...] = ()               # empty = the region's first az_count zones (a, b, c, d)

    def __post_init__(self) -> None:
        vpc = validation.ipv4_network("network.vpc_cidr", self.vpc_cidr)
        require(16 <= vpc.prefixlen <= 20, "network.vpc_cidr", self.vpc_cidr, "must have a prefix between /16 and /20",
                "use a /16 to /20 block so every AZ gets private, public and database subnets")
        require(isinstance(self.az_count, int) and 2 <= self.az_count <= MAX_AZS, "network.az_count", self.az_count,
                f"must be between 2 and {MAX_AZS}", "use at least 2 AZs (3 for production) so subnets span failure domains")
        require(self.nat_gateways in ("single", "per_az"), "network.nat_gateways", self.nat_gateways,
                "is not a NAT strategy", "use 'single' (one shared NAT) or 'per_az' (one NAT per AZ)")
        named: dict = {}
        for tier, cidrs in self.subnets.items():
            attr = f"{tier}_subnet_cidrs"
            require(len(cidrs) == self.az_count, f"network.{attr}", list(cidrs), f"has {len(cidrs)} entries for "
                    f"az_count={self.az_count}", "list exactly one CIDR per AZ, or leave it empty for the default layout")
            for i, cidr in enumerate(cidrs):
                net = validation.ipv4_network(f"network.{attr}[{i}]", cidr)
                require(net.subnet_of(vpc), f"network.{attr}[{i}]", cidr, f"is outside vpc_cidr {self.vpc_cidr!r}",
                        "choose a range inside the VPC's CIDR block")
                named[f"network.{attr}[{i}]"] = net
        validation.no_overlaps(named)
        unknown = sorted(set(self.interface_endpoints) - set(INTERFACE_ENDPOINTS))
        require(not unknown, "network.interface_endpoints", unknown, "names unsupported endpoint services",
                f"use services from {', '.join(INTERFACE_ENDPOINTS)}")


    @property
    def subnets(self) -> dict[str, tuple[str, ...]]:
        """CIDRs per tier ('public', 'private', 'database'): the configured ones, else the default layout."""
        defaults = plan_subnets(self.vpc_cidr, self.az_count)
        return {tier: tuple(getattr(self, f"{tier}_subnet_cidrs")) or defaults[tier] for tier in defaults}


@dataclass(frozen=True, kw_only=True)
class StateConfig:
    """Where Terraform state lives: one bucket per account, created by the `state` stack."""
    bucket: str
    region: str
    kms_key_alias: str = "alias/terraform-state"
    migrated: bool = False   # False: the state stack keeps a local backend until it has created its own bucket
    github_repository: str = ""   # "owner/name" whose GitHub Actions plan/deploy (modules/aws/ci_roles.py); "" = no CI roles
    github_deploy_environments: tuple[str, ...] = ("dev", "staging", "prod")

    def __post_init__(self) -> None:
        validation.bucket_name("state.bucket", self.bucket)
        require(not self.github_repository or re.fullmatch(r"[A-Za-z0-9-]+/[A-Za-z0-9._-]+", self.github_repository)
                is not None, "state.github_repository", self.github_repository, "is not a GitHub 'owner/name'",
                "use the repository whose Actions plan and deploy, e.g. 'example-org/airflow-platform', or '' for none")
        require(_REGION.fullmatch(self.region or "") is not None, "state.region", self.region,
                "is not an AWS region name", "use a region such as 'eu-west-1'")
        require(re.fullmatch(r"alias/[a-zA-Z0-9/_-]{1,250}", self.kms_key_alias or "") is not None
                and not self.kms_key_alias.startswith("alias/aws/"), "state.kms_key_alias", self.kms_key_alias,
                "is not a customer KMS alias", "use 'alias/<name>' (not under alias/aws/)")


@dataclass(frozen=True, kw_only=True)
class TagsConfig:
    owner: str
    cost_centre: str
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validation.tags("tags", {"owner": self.owner, "cost_centre": self.cost_centre})
        validation.tags("tags.extra", self.extra)


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """EKS. Instance families, add-on versions and sizes are validated by modules/aws/cluster.py."""
    admin_role_arns: tuple[str, ...]                 # IAM roles given cluster-admin access entries
    kubernetes_version: str = "1.34"
    public_access_cidrs: tuple[str, ...] = ()        # () = private API endpoint only
    system_instance_types: tuple[str, ...] = ("m7i.large",)
    system_min_size: int = 2
    system_desired_size: int = 2
    system_max_size: int = 4
    system_disk_size_gib: int = 50
    addon_versions: dict[str, str] = field(default_factory=dict)   # {} = modules.aws.cluster.DEFAULT_ADDON_VERSIONS


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    """RDS PostgreSQL for the Airflow metadata DB (validated by modules/aws/database.py)."""
    instance_class: str = "db.t4g.medium"
    engine_version: str = "17.6"
    allocated_storage_gib: int = 50
    max_allocated_storage_gib: int = 200
    multi_az: bool = True
    backup_retention_days: int = 30


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    """ElastiCache broker for Celery (validated by modules/aws/cache.py)."""
    engine: str = "redis"
    node_type: str = "cache.t4g.small"
    num_nodes: int = 2
    multi_az: bool = True
    snapshot_retention_days: int = 7


@dataclass(frozen=True, kw_only=True)
class StorageConfig:
    bucket_prefix: str = ""                          # "" = '<project>-<env>-<account id>'
    task_log_expiration_days: int = 90
    access_log_expiration_days: int = 365

    def __post_init__(self) -> None:
        for name in ("task_log_expiration_days", "access_log_expiration_days"):
            days = getattr(self, name)
            require(isinstance(days, int) and 1 <= days <= 36500, f"storage.{name}", days,
                    "is not a number of days S3 lifecycle accepts", "use 1-36500")


@dataclass(frozen=True, kw_only=True)
class EdgeConfig:
    """Front door: Route 53 zone, ACM certificate, ALB and WAF (validated by modules/aws/edge.py)."""
    zone_mode: Literal["lookup", "create"] = "lookup"     # create = a new zone you must delegate (README)
    extra_sans: tuple[str, ...] = ()                      # more certificate names, each inside `domain`
    ingress_cidrs: tuple[str, ...] = ("0.0.0.0/0", "::/0")  # who may reach 443/80; narrow it to restrict access
    waf_rate_limit: int = 2000                            # requests per 5 minutes per client IP (AWS minimum 10)
    tls_policy: str = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True, kw_only=True)
class EnvironmentConfig:
    name: str
    production: bool                  # production environments must meet the stricter rules below
    account_id: str
    region: str
    domain: str
    network: NetworkConfig
    state: StateConfig
    tags: TagsConfig
    cluster: ClusterConfig
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    edge: EdgeConfig = field(default_factory=EdgeConfig)
    addons: AddonsConfig = field(default_factory=AddonsConfig)
    airflow: AirflowConfig = field(default_factory=AirflowConfig)
    vault: VaultConfig = field(default_factory=VaultConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    project: str = "airflow"
    log_retention_days: int = 30
    deletion_protection: bool = True

    def __post_init__(self) -> None:
        require(_NAME.fullmatch(self.name or "") is not None, "name", self.name, "is not a valid environment name",
                "use 1-16 lowercase letters, digits and hyphens, starting with a letter")
        require(_NAME.fullmatch(self.project or "") is not None, "project", self.project, "is not a valid project name",
                "use 1-16 lowercase letters, digits and hyphens, starting with a letter")
        require(re.fullmatch(r"\d{12}", self.account_id or "") is not None, "account_id", self.account_id,
                "is not an AWS account id", "use the 12-digit id of the account this environment deploys to")
        require(_REGION.fullmatch(self.region or "") is not None, "region", self.region, "is not an AWS region name",
                "use a region such as 'eu-west-1'")
        validation.dns_name("domain", self.domain)
        zones = self.availability_zones
        require(len(zones) == self.network.az_count and all(z.startswith(self.region) and len(z) == len(self.region) + 1
                                                          for z in zones) and len(set(zones)) == len(zones),
                "network.availability_zones", list(zones), f"must be {self.network.az_count} distinct zones of {self.region}",
                f"list zones like '{self.region}a', one per AZ, or leave it empty for the default")
        validation.log_retention("log_retention_days", self.log_retention_days)
        for purpose in ("dags", "task-logs", "plugins", "access-logs"):
            self.bucket_name(purpose)
        if self.production:
            require(self.network.az_count >= 3, "network.az_count", self.network.az_count,
                    "is below 3 for a production environment", "use 3 or more AZs in production")
            require(self.deletion_protection, "deletion_protection", self.deletion_protection,
                    "is off for a production environment", "set deletion_protection=True for production")
            require(self.database.multi_az, "database.multi_az", self.database.multi_az,
                    "is off for a production environment", "set database.multi_az=True in production")
            require(self.cache.multi_az, "cache.multi_az", self.cache.multi_az,
                    "is off for a production environment", "set cache.multi_az=True (and num_nodes >= 2) in production")
            require(self.network.nat_gateways == "per_az", "network.nat_gateways", self.network.nat_gateways,
                    "is a single point of failure in production", "use nat_gateways='per_az' in production")
            for section in (self.addons, self.airflow, self.vault, self.monitoring, self.events, self.alarms):
                section.check_production()

    @property
    def prefix(self) -> str:
        """Name prefix of this environment's AWS resources, e.g. 'airflow-dev'."""
        return f"{self.project}-{self.name}"

    def stack_name(self, layer: str) -> str:
        return f"{self.prefix}-{layer}"

    @property
    def availability_zones(self) -> tuple[str, ...]:
        """Pinned zone names: a fixed set, so a zone AWS adds later never silently changes the layout."""
        return self.network.availability_zones or tuple(f"{self.region}{letter}" for letter in "abcd"[:self.network.az_count])

    def bucket_name(self, purpose: str) -> str:
        """Globally unique, deterministic bucket name, checked against S3's naming rules at synth."""
        name = f"{self.storage.bucket_prefix or f'{self.project}-{self.name}-{self.account_id}'}-{purpose}"
        validation.bucket_name("storage.bucket_prefix", name)
        return name

    @property
    def cluster_name(self) -> str:
        return self.prefix

    @property
    def partition(self) -> str:
        return "aws-cn" if self.region.startswith("cn-") else "aws-us-gov" if "-gov-" in self.region else "aws"

    def resource_tags(self) -> dict[str, str]:
        return {"environment": self.name, "project": self.project, "owner": self.tags.owner,
                "cost-centre": self.tags.cost_centre, "managed-by": "cdktf", **self.tags.extra}


def qualify(error: ConfigError, environment: str) -> ConfigError:
    return error.within(f"environments.{environment}")
