"""What an environment sets for each AWS construct: one frozen settings type per concern, each field with its default,
its validation and a one-line doc, defined once. `environments/<env>.py` builds them as its sections
(`environments.<env>.<section>`); the constructs' props embed them whole (`DatabaseProps(settings=...)`).

No cdktf import here (nor in what it imports): environments/ loads and validates these before jsii starts, so bad
input is reported in about a second. Errors name the field as the user writes it (`database.instance_class`)."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from ..core import validation
from ..core.tokens import is_unresolved
from ..core.validation import require, section
from .event_patterns import DEFAULT_RULE_NAMES, EventRule, event_rules

# ---- network ------------------------------------------------------------------------------------------------

TIERS = ("public", "private", "database")
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "sts", "logs", "sqs", "kms", "secretsmanager", "ec2", "elasticloadbalancing",
                       "autoscaling", "eks", "eks-auth", "ssm", "monitoring")
MAX_AZS = 4


def plan_subnets(vpc_cidr: str, az_count: int) -> dict[str, tuple[str, ...]]:
    """Default subnet layout: the VPC's first half as one /N+3 private subnet per AZ (room for pod IPs),
    public and database subnets as /N+6 blocks from the second half (the rest stays free)."""
    vpc = validation.ipv4_network("vpc_cidr", vpc_cidr)
    private = list(vpc.subnets(new_prefix=vpc.prefixlen + 3))
    small = list(list(vpc.subnets(new_prefix=vpc.prefixlen + 1))[1].subnets(new_prefix=vpc.prefixlen + 6))
    return {"private": tuple(map(str, private[:az_count])), "public": tuple(map(str, small[:az_count])),
            "database": tuple(map(str, small[8:8 + az_count]))}


@dataclass(frozen=True, kw_only=True)
class NetworkSettings:
    vpc_cidr: str
    az_count: int = 3
    nat_gateways: Literal["single", "per_az"] = "per_az"   # one NAT is cheaper; one per AZ survives an AZ outage
    public_subnet_cidrs: tuple[str, ...] = ()              # empty = plan_subnets() default
    private_subnet_cidrs: tuple[str, ...] = ()
    database_subnet_cidrs: tuple[str, ...] = ()
    interface_endpoints: tuple[str, ...] = ("ecr.api", "ecr.dkr", "sts", "logs", "sqs", "kms", "secretsmanager")
    availability_zones: tuple[str, ...] = ()               # empty = the region's first az_count zones (a, b, c, d)

    def __post_init__(self) -> None:
        with section("network"):
            vpc = validation.ipv4_network("vpc_cidr", self.vpc_cidr)
            require(16 <= vpc.prefixlen <= 20, "vpc_cidr", self.vpc_cidr, "must have a prefix between /16 and /20",
                    "use a /16 to /20 block so every AZ gets private, public and database subnets")
            require(isinstance(self.az_count, int) and 2 <= self.az_count <= MAX_AZS, "az_count", self.az_count,
                    f"must be between 2 and {MAX_AZS}",
                    "use at least 2 AZs (3 for production) so subnets span failure domains")
            require(self.nat_gateways in ("single", "per_az"), "nat_gateways", self.nat_gateways,
                    "is not a NAT strategy", "use 'single' (one shared NAT) or 'per_az' (one NAT per AZ)")
            zones = self.availability_zones
            require(not zones or (len(zones) == self.az_count and len(set(zones)) == len(zones)), "availability_zones",
                    list(zones), f"does not list {self.az_count} distinct zones (az_count={self.az_count})",
                    "list one zone per AZ, e.g. ['eu-west-1a', 'eu-west-1b'], or leave it empty for the default")
            named: dict = {}
            for tier, cidrs in self.subnets.items():
                attr = f"{tier}_subnet_cidrs"
                require(len(cidrs) == self.az_count, attr, list(cidrs), f"has {len(cidrs)} entries for "
                        f"az_count={self.az_count}", "list exactly one CIDR per AZ, or leave it empty for the default layout")
                for i, cidr in enumerate(cidrs):
                    net = validation.ipv4_network(f"{attr}[{i}]", cidr)
                    require(net.subnet_of(vpc), f"{attr}[{i}]", cidr, f"is outside vpc_cidr {self.vpc_cidr!r}",
                            "choose a range inside the VPC's CIDR block")
                    named[f"network.{attr}[{i}]"] = net
        validation.no_overlaps(named)       # its message names both fields in full
        with section("network"):
            unknown = sorted(set(self.interface_endpoints) - set(INTERFACE_ENDPOINTS))
            require(not unknown, "interface_endpoints", unknown, "names unsupported endpoint services",
                    f"use services from {', '.join(INTERFACE_ENDPOINTS)}")

    @property
    def subnets(self) -> dict[str, tuple[str, ...]]:
        """CIDRs per tier ('public', 'private', 'database'): the configured ones, else the default layout."""
        defaults = plan_subnets(self.vpc_cidr, self.az_count)
        return {tier: tuple(getattr(self, f"{tier}_subnet_cidrs")) or defaults[tier] for tier in defaults}

    def zones(self, region: str) -> tuple[str, ...]:
        """Pinned zone names: a fixed set, so a zone AWS adds later never silently changes the layout."""
        return self.availability_zones or tuple(f"{region}{letter}" for letter in "abcd"[:self.az_count])


# ---- EKS ----------------------------------------------------------------------------------------------------

# Instance families EKS managed node groups and Karpenter may use here, by CPU architecture.
INSTANCE_FAMILIES: dict[str, str] = {
    **{f: "x86_64" for f in ("t3", "t3a", "m5", "m5a", "m6i", "m6a", "m7i", "m7i-flex", "m7a", "m8i",
                             "c5", "c5a", "c6i", "c6a", "c7i", "c7i-flex", "c7a", "r5", "r6i", "r6a", "r7i", "r7a")},
    **{f: "arm64" for f in ("t4g", "m6g", "m7g", "m8g", "c6g", "c7g", "c8g", "r6g", "r7g", "r8g")},  # Graviton
}
# Of those, the families whose Nitro cards encrypt traffic between instances automatically (AWS EC2 User Guide,
# "Encryption in transit": AES-256 between supported instances in the same or a peered VPC, when no load balancer
# or gateway sits between). Pod-to-pod traffic across nodes that no protocol of its own encrypts (the Airflow log
# servers, metrics scrapes, Grafana -> Prometheus) relies on it, so every node must come from one of these
# (docs/tls.md). t3/t3a/t4g, m5/m5a, c5, r5 and the Graviton2 m6g/c6g/r6g are not; m8i is left out until the guide's
# list names it: add a family here only from that list.
IN_TRANSIT_ENCRYPTION_FAMILIES = frozenset((
    "m6i", "m6a", "m7i", "m7i-flex", "m7a", "c5a", "c6i", "c6a", "c7i", "c7i-flex", "c7a", "r6i", "r6a", "r7i", "r7a",
    "m7g", "m8g", "c7g", "c8g", "r7g", "r8g"))
# The Karpenter well-known label that selects them (karpenter.k8s.aws/v1 instance type labels).
IN_TRANSIT_ENCRYPTION_LABEL = "karpenter.k8s.aws/instance-encryption-in-transit-supported"
# Pinned EKS add-on versions for Kubernetes 1.34. Bump them deliberately (e.g. after
# `aws eks describe-addon-versions --kubernetes-version 1.34 --addon-name <name>`), never float.
DEFAULT_ADDON_VERSIONS: dict[str, str] = {
    # AWS EKS User Guide, "Amazon VPC CNI versions" table (managing-vpc-cni), row 1.34.
    "vpc-cni": "v1.20.4-eksbuild.1",
    # AWS EKS User Guide, "kube-proxy versions" table (managing-kube-proxy), row 1.34.
    "kube-proxy": "v1.34.1-eksbuild.2",
    # Public Terraform/CDK configurations pinning add-ons for EKS 1.34 clusters (coredns next to
    # kube-proxy v1.34.1-eksbuild.2, commented "for EKS 1.34"); CoreDNS 1.12 is the kubeadm 1.34 line.
    "coredns": "v1.12.4-eksbuild.1",
    # Same public EKS 1.34 add-on pin sets (ebs_csi / pod_identity_agent next to kube-proxy v1.34.1).
    "aws-ebs-csi-driver": "v1.54.0-eksbuild.1",
    "eks-pod-identity-agent": "v1.3.10-eksbuild.2",
    # Public EKS 1.34 Terraform configuration pinning amazon-cloudwatch-observability with
    # kube-proxy v1.34.1-eksbuild.2, vpc-cni v1.21.1 and aws-ebs-csi-driver v1.54.0.
    "amazon-cloudwatch-observability": "v4.8.0-eksbuild.1",
}
ADDONS = tuple(DEFAULT_ADDON_VERSIONS)
# Configuration values per add-on (`aws eks describe-addon-configuration` schema, which for vpc-cni mirrors the
# aws-vpc-cni chart's values.yaml at the same tag). vpc-cni: the network policy agent (the aws-eks-nodeagent
# container, present but passive by default) enforces NetworkPolicy objects; without `enableNetworkPolicy` they are
# stored and ignored (modules/platform/network_policy.py relies on it). Its nodeAgent defaults stay: metrics on
# :8162, health on :8163, policy event logs off. NETWORK_POLICY_ENFORCING_MODE stays "standard": "strict" would
# start every pod of the cluster, kube-system's included, deny-all until a policy admits its traffic.
ADDON_CONFIGURATION: dict[str, dict[str, object]] = {"vpc-cni": {"enableNetworkPolicy": "true"}}
# The first VPC CNI release with the network policy agent (EKS User Guide, cni-network-policy-configure).
NETWORK_POLICY_MIN_VPC_CNI = (1, 14, 0)
_K8S_VERSION = re.compile(r"1\.\d{2}")
_ADDON_VERSION = re.compile(r"v(\d+)\.(\d+)\.(\d+)-eksbuild\.\d+")
_INSTANCE_TYPE = re.compile(r"([a-z][a-z0-9-]*)\.([a-z0-9]+)")
_PRINCIPAL_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}")


def architecture(instance_type: str) -> str:
    return INSTANCE_FAMILIES[instance_type.split(".", 1)[0]]


def check_node_group(instance_types: tuple[str, ...], min_size: int, desired_size: int, max_size: int,
                     disk_size_gib: int, *, prefix: str = "") -> None:
    """A managed node group's sizing; fields are named `<prefix>instance_types`, ... ."""
    require(len(instance_types) >= 1, f"{prefix}instance_types", instance_types, "is empty",
            "list at least one instance type, e.g. ('m7i.large',)")
    for instance_type in instance_types:
        match = _INSTANCE_TYPE.fullmatch(instance_type) if isinstance(instance_type, str) else None
        require(match is not None and match.group(1) in INSTANCE_FAMILIES, f"{prefix}instance_types",
                instance_type, "is not an instance type of a known family",
                f"use '<family>.<size>' with a family from {', '.join(sorted(INSTANCE_FAMILIES))}")
    for instance_type in instance_types:
        require(instance_type.split(".", 1)[0] in IN_TRANSIT_ENCRYPTION_FAMILIES, f"{prefix}instance_types",
                instance_type, "does not encrypt traffic between instances (no Nitro in-transit encryption)",
                f"use a family from {', '.join(sorted(IN_TRANSIT_ENCRYPTION_FAMILIES))}, e.g. 'm6a.large'")
    require(len({architecture(t) for t in instance_types}) == 1, f"{prefix}instance_types", instance_types,
            "mixes x86_64 and Graviton (arm64) families",
            "use one architecture per node group: one AMI type serves the whole group")
    require(1 <= min_size <= desired_size <= max_size, f"{prefix}min_size/desired_size/max_size",
            (min_size, desired_size, max_size), "must satisfy 1 <= min_size <= desired_size <= max_size",
            "raise max_size or lower min_size/desired_size (system pods need at least one node)")
    require(20 <= disk_size_gib <= 16384, f"{prefix}disk_size_gib", disk_size_gib,
            "is outside what a gp3 root volume for AL2023 accepts", "use 20-16384 GiB")


@dataclass(frozen=True, kw_only=True)
class ClusterSettings:
    """EKS: who administers it, how its API is reached, the system node group and the add-on versions."""
    admin_role_arns: tuple[str, ...]                 # IAM roles (or users) given cluster-admin access entries
    kubernetes_version: str = "1.34"
    public_access_cidrs: tuple[str, ...] = ()        # () = private API endpoint only
    system_instance_types: tuple[str, ...] = ("m7i.large",)
    system_min_size: int = 2
    system_desired_size: int = 2
    system_max_size: int = 4
    system_disk_size_gib: int = 50
    addon_versions: dict[str, str] = field(default_factory=dict)   # {} = DEFAULT_ADDON_VERSIONS

    def __post_init__(self) -> None:
        with section("cluster"):
            require(isinstance(self.kubernetes_version, str) and _K8S_VERSION.fullmatch(self.kubernetes_version)
                    is not None, "kubernetes_version", self.kubernetes_version, "is not a Kubernetes minor version",
                    "use the '1.NN' form EKS expects, e.g. '1.34'")
            for cidr in self.public_access_cidrs:
                if is_unresolved(cidr):
                    continue
                network = validation.ipv4_network("public_access_cidrs", cidr)
                require(network.prefixlen > 0, "public_access_cidrs", cidr,
                        "would expose the Kubernetes API endpoint to the whole internet",
                        "list the operator/CI egress CIDRs, or leave it empty for a private endpoint")
            require(len(self.admin_role_arns) >= 1, "admin_role_arns", self.admin_role_arns,
                    "is empty, and the cluster creator gets no admin access",
                    "name at least one IAM role ARN to administer the cluster")
            for arn in self.admin_role_arns:
                require(is_unresolved(arn) or _PRINCIPAL_ARN.fullmatch(arn) is not None, "admin_role_arns", arn,
                        "is not an IAM role or user ARN",
                        "use arn:<partition>:iam::<12-digit account>:role/<name> (or user/<name>)")
            check_node_group(self.system_instance_types, self.system_min_size, self.system_desired_size,
                             self.system_max_size, self.system_disk_size_gib, prefix="system_")
            versions = self.effective_addon_versions
            require(set(versions) == set(ADDONS), "addon_versions", sorted(versions),
                    "does not name exactly the managed add-ons", f"give a version for each of {list(ADDONS)}")
            for addon, version in versions.items():
                require(isinstance(version, str) and _ADDON_VERSION.fullmatch(version) is not None,
                        f"addon_versions.{addon}", version, "is not an EKS add-on version",
                        "pin the exact 'vX.Y.Z-eksbuild.N' from aws eks describe-addon-versions")
            cni = _ADDON_VERSION.fullmatch(versions.get("vpc-cni", ""))
            require(cni is None or tuple(map(int, cni.group(1, 2, 3))) >= NETWORK_POLICY_MIN_VPC_CNI,
                    "addon_versions.vpc-cni", versions.get("vpc-cni"), "has no network policy agent",
                    "pin v1.14.0-eksbuild.3 or later (NetworkPolicy enforcement is not optional)")

    @property
    def effective_addon_versions(self) -> dict[str, str]:
        return dict(self.addon_versions) if self.addon_versions else dict(DEFAULT_ADDON_VERSIONS)


# ---- RDS PostgreSQL -----------------------------------------------------------------------------------------

# RDS for PostgreSQL instance families (current generation, single-AZ / Multi-AZ instance deployments).
DATABASE_INSTANCE_FAMILIES = ("t3", "t4g", "m5", "m5d", "m6g", "m6gd", "m6i", "m6id", "m6idn", "m6in", "m7g", "m7i",
                              "m8g", "r5", "r5b", "r5d", "r6g", "r6gd", "r6i", "r6id", "r6idn", "r6in", "r7g", "r7i",
                              "r8g", "x2g", "x2idn", "x2iedn")
_DB_BURSTABLE_SIZES = ("micro", "small", "medium", "large", "xlarge", "2xlarge")
_DB_SIZES = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "32xlarge",
             "48xlarge", "metal")
_NO_PERFORMANCE_INSIGHTS = ("micro", "small")     # not available on the smallest burstable classes
MONITORING_INTERVALS = (0, 1, 5, 10, 15, 30, 60)
PERFORMANCE_INSIGHTS_RETENTION_DAYS = (7, *(31 * month for month in range(1, 24)), 731)
CA_CERTIFICATES = ("rds-ca-rsa2048-g1", "rds-ca-rsa4096-g1", "rds-ca-ecc384-g1")
_PG_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,62}")


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    """The Airflow metadata database: RDS PostgreSQL size, availability, backups and maintenance."""
    instance_class: str = "db.t4g.medium"
    engine_version: str = "17.6"
    allocated_storage_gib: int = 50
    max_allocated_storage_gib: int = 200         # storage autoscaling ceiling
    multi_az: bool = True
    backup_retention_days: int = 30
    backup_window: str = "02:00-03:00"           # UTC, must not overlap the maintenance window
    maintenance_window: str = "sun:03:30-sun:04:30"
    performance_insights_retention_days: int = 7
    monitoring_interval_seconds: int = 60        # enhanced monitoring; 0 turns it off
    database_name: str = "airflow"
    master_username: str = "airflow_admin"
    ca_cert_identifier: str = "rds-ca-rsa2048-g1"

    def __post_init__(self) -> None:
        with section("database"):
            version = re.fullmatch(r"(\d+)\.(\d+)", self.engine_version or "")
            require(version is not None and 13 <= int(version.group(1)) <= 17, "engine_version", self.engine_version,
                    "is not a supported RDS PostgreSQL version", "use 'MAJOR.MINOR' with major 13-17, e.g. '17.6'")
            match = re.fullmatch(r"db\.([a-z0-9]+)\.([a-z0-9]+)", self.instance_class or "")
            family, size = match.groups() if match else ("", "")
            require(family in DATABASE_INSTANCE_FAMILIES, "instance_class", self.instance_class,
                    "is not an RDS for PostgreSQL instance family", f"use 'db.<family>.<size>' with a family among "
                    f"{', '.join(DATABASE_INSTANCE_FAMILIES)}, e.g. 'db.t4g.medium'")
            sizes = _DB_BURSTABLE_SIZES if family.startswith("t") else _DB_SIZES
            require(size in sizes, "instance_class", self.instance_class, f"has a size the db.{family} family lacks",
                    f"use one of {', '.join(sizes)}")
            require(size not in _NO_PERFORMANCE_INSIGHTS, "instance_class", self.instance_class,
                    "does not support Performance Insights", "use db.t4g.medium or larger")
            require(20 <= self.allocated_storage_gib <= 65536, "allocated_storage_gib", self.allocated_storage_gib,
                    "is outside what gp3 storage accepts", "use 20-65536 GiB")
            require(self.max_allocated_storage_gib > self.allocated_storage_gib, "max_allocated_storage_gib",
                    self.max_allocated_storage_gib, f"is not above allocated_storage_gib={self.allocated_storage_gib}",
                    "set a storage-autoscaling ceiling larger than the allocated storage")
            require(self.max_allocated_storage_gib <= 65536, "max_allocated_storage_gib",
                    self.max_allocated_storage_gib, "is above the gp3 maximum", "use at most 65536 GiB")
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
            require(_PG_NAME.fullmatch(self.database_name or "") is not None, "database_name", self.database_name,
                    "is not a valid PostgreSQL database name",
                    "use 1-63 letters, digits or '_', starting with a letter")
            require(_PG_NAME.fullmatch(self.master_username or "") is not None
                    and not self.master_username.lower().startswith(("rds", "pg_")), "master_username",
                    self.master_username, "is not a master user name RDS accepts",
                    "use 1-63 letters, digits or '_', starting with a letter and not with 'rds' or 'pg_'")
            require(self.ca_cert_identifier in CA_CERTIFICATES, "ca_cert_identifier", self.ca_cert_identifier,
                    "is not an RDS certificate authority", f"use one of {', '.join(CA_CERTIFICATES)}")

    @property
    def engine_major(self) -> str:
        return self.engine_version.split(".")[0]


# ---- ElastiCache (the Celery broker) ------------------------------------------------------------------------

CACHE_NODE_FAMILIES = ("t3", "t4g", "m5", "m6g", "m7g", "r5", "r6g", "r7g", "c7gn")
_CACHE_BURSTABLE_SIZES = ("micro", "small", "medium")
_CACHE_SIZES = ("large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge")
DEFAULT_ENGINE_VERSION = {"redis": "7.1", "valkey": "8.0"}
_ENGINE_VERSION = {"redis": (re.compile(r"7\.[01]"), "'7.0' or '7.1'"),
                   "valkey": (re.compile(r"[78]\.\d"), "'7.x' or '8.x', e.g. '8.0'")}


@dataclass(frozen=True, kw_only=True)
class CacheSettings:
    """The Celery broker: engine, node size, replicas and snapshots of a cluster-mode-disabled group."""
    engine: Literal["redis", "valkey"] = "redis"
    engine_version: str | None = None            # None: 7.1 for redis, 8.0 for valkey
    node_type: str = "cache.t4g.small"
    num_nodes: int = 2                           # primary + replicas, all in one shard
    multi_az: bool = True
    snapshot_retention_days: int = 7             # 0 turns automatic snapshots off
    snapshot_window: str = "01:00-02:00"         # UTC, must not overlap the maintenance window
    maintenance_window: str = "sun:05:00-sun:06:00"

    def __post_init__(self) -> None:
        with section("cache"):
            require(self.engine in _ENGINE_VERSION, "engine", self.engine, "is not a supported engine",
                    "use 'redis' or 'valkey'")
            if self.engine_version is None:
                object.__setattr__(self, "engine_version", DEFAULT_ENGINE_VERSION[self.engine])
            pattern, allowed = _ENGINE_VERSION[self.engine]
            require(isinstance(self.engine_version, str) and pattern.fullmatch(self.engine_version) is not None,
                    "engine_version", self.engine_version, f"is not a supported {self.engine} version",
                    f"use {allowed} (TLS-required mode and engine logs need these)")
            match = re.fullmatch(r"cache\.([a-z0-9]+)\.([a-z0-9]+)", self.node_type or "")
            family, size = match.groups() if match else ("", "")
            require(family in CACHE_NODE_FAMILIES, "node_type", self.node_type, "is not an ElastiCache node family",
                    f"use 'cache.<family>.<size>' with a family among {', '.join(CACHE_NODE_FAMILIES)}, "
                    "e.g. 'cache.t4g.small'")
            sizes = _CACHE_BURSTABLE_SIZES if family.startswith("t") else _CACHE_SIZES
            require(size in sizes, "node_type", self.node_type, f"has a size the cache.{family} family lacks",
                    f"use one of {', '.join(sizes)}")
            require(1 <= self.num_nodes <= 6, "num_nodes", self.num_nodes, "is outside 1-6",
                    "use one primary plus up to 5 replicas")
            require(not self.multi_az or self.num_nodes >= 2, "num_nodes", self.num_nodes,
                    "is below 2 with multi_az=True (failover needs a replica in another AZ)",
                    "set num_nodes >= 2, or multi_az=False for dev")
            require(0 <= self.snapshot_retention_days <= 35, "snapshot_retention_days", self.snapshot_retention_days,
                    "is outside 0-35", "use 0-35 days (0 turns snapshots off)")
            validation.daily_window("snapshot_window", self.snapshot_window)
            validation.weekly_window("maintenance_window", self.maintenance_window)

    @property
    def parameter_group_family(self) -> str:
        return f"{self.engine}{str(self.engine_version).split('.')[0]}"


# ---- S3 -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    bucket_prefix: str = ""                          # "" = '<project>-<env>-<account id>'
    task_log_expiration_days: int = 90
    access_log_expiration_days: int = 365

    def __post_init__(self) -> None:
        with section("storage"):
            for name in ("task_log_expiration_days", "access_log_expiration_days"):
                days = getattr(self, name)
                require(isinstance(days, int) and 1 <= days <= 36500, name, days,
                        "is not a number of days S3 lifecycle accepts", "use 1-36500")


# ---- account guardrails (CloudTrail, GuardDuty) -------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class GuardrailsSettings:
    """Account-level audit and threat detection (modules/aws/guardrails.py). On by default; turning one off needs a
    reason, because what covers the account instead (an organization trail, a delegated GuardDuty administrator,
    another environment in the same account) lives outside this config."""
    cloudtrail: bool = True                      # multi-region trail, KMS, log-file validation, its own bucket
    guardduty: bool = True                       # detector with EKS audit logs, runtime monitoring, S3 protection
    off_reason: str = ""                         # why a guardrail is off: required when either is False
    trail_archive_after_days: int = 90           # trail log files move to Glacier Instant Retrieval after this
    trail_expiration_days: int = 2557            # and are deleted after this (7 years, a common audit retention)

    def __post_init__(self) -> None:
        with section("guardrails"):
            for name in ("cloudtrail", "guardduty"):
                value = getattr(self, name)
                require(isinstance(value, bool), name, value, "is not true or false", f"set {name}=True or False")
                require(value or (isinstance(self.off_reason, str) and self.off_reason.strip() != ""), name, value,
                        "turns an account guardrail off without a reason",
                        "keep it on, or say in off_reason what covers the account instead (e.g. 'organization "
                        "trail in the management account')")
            for name in ("trail_archive_after_days", "trail_expiration_days"):
                days = getattr(self, name)
                require(isinstance(days, int) and not isinstance(days, bool) and 1 <= days <= 36500, name, days,
                        "is not a number of days S3 lifecycle accepts", "use 1-36500")
            require(self.trail_archive_after_days < self.trail_expiration_days, "trail_archive_after_days",
                    self.trail_archive_after_days, f"is not before trail_expiration_days={self.trail_expiration_days}",
                    "archive trail logs before they expire")


# ---- KMS key administration ----------------------------------------------------------------------------------

def key_admin_arns(field_: str, arns: tuple[str, ...], *, required: bool) -> None:
    """Key administrators (modules/aws/encryption.py): IAM roles or users named as principals of every key policy, so
    each must exist when a key policy is written (KMS refuses a policy naming an unknown principal)."""
    require(isinstance(arns, tuple), field_, arns, "is not a tuple of ARNs", "write ('arn:aws:iam::<account>:role/<name>',)")
    require(not required or len(arns) >= 1, field_, arns, "is empty, so nobody is named to administer the keys",
            "name at least one IAM role ARN (e.g. the platform's admin role)")
    for arn in arns:
        require(is_unresolved(arn) or (isinstance(arn, str) and _PRINCIPAL_ARN.fullmatch(arn) is not None), field_, arn,
                "is not an IAM role or user ARN",
                "use arn:<partition>:iam::<12-digit account>:role/<name> (or user/<name>); no wildcards, and not the "
                "account root, which the key policy's IAM statement already covers")
    require(len(set(arns)) == len(arns), field_, list(arns), "names an administrator twice", "list each ARN once")


@dataclass(frozen=True, kw_only=True)
class EncryptionSettings:
    """Who administers the environment's KMS keys: key management only, never encrypt or decrypt (the key policy
    denies them that; docs/design.md §10)."""
    key_admin_arns: tuple[str, ...] = ()         # () = the cluster's admin_role_arns plus the deploy role (CI on)

    def __post_init__(self) -> None:
        with section("encryption"):
            key_admin_arns("key_admin_arns", self.key_admin_arns, required=False)


# ---- front door ---------------------------------------------------------------------------------------------

DEFAULT_TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
WAF_MIN_RATE_LIMIT = 10             # AWS WAF's minimum for a rate-based rule (requests per 5 minutes)


def ip_network(field_: str, value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=True)
    except (ValueError, TypeError) as err:
        raise validation.ConfigError(
            field_, value, f"is not a valid IPv4 or IPv6 CIDR block ({err})",
            "use a network address with its prefix, e.g. '203.0.113.0/24' or '2001:db8::/32'") from None


def whole_internet(cidr: str) -> bool:
    """0.0.0.0/0 or ::/0 (or any /0): every address of the family."""
    return ip_network("ingress_cidrs", cidr).prefixlen == 0


@dataclass(frozen=True, kw_only=True)
class EdgeSettings:
    """Front door: Route 53 zone, ACM certificate, ALB and WAF."""
    zone_mode: Literal["lookup", "create"] = "lookup"     # create = a new zone you must delegate (README)
    extra_sans: tuple[str, ...] = ()                      # more certificate names, each inside `domain`
    ingress_cidrs: tuple[str, ...] = ("0.0.0.0/0", "::/0")  # who may reach 443/80; narrow it to restrict access
    # True: an internal ALB in the private subnets, reached only over VPN / Direct Connect / peering (its DNS names
    # still resolve publicly, to private addresses). Production refuses internet-wide ingress without SSO.
    internal: bool = False
    waf_rate_limit: int = 2000                            # requests per 5 minutes per client IP (AWS minimum 10)
    tls_policy: str = DEFAULT_TLS_POLICY

    def __post_init__(self) -> None:
        with section("edge"):
            require(self.zone_mode in ("lookup", "create"), "zone_mode", self.zone_mode, "is not a hosted-zone mode",
                    "use 'lookup' (the zone exists) or 'create' (then delegate it, see README 'Front door')")
            for i, san in enumerate(self.extra_sans):
                validation.dns_name(f"extra_sans[{i}]", san.removeprefix("*.") if isinstance(san, str) else san)
            require(len(self.ingress_cidrs) > 0, "ingress_cidrs", list(self.ingress_cidrs), "is empty",
                    "list at least one CIDR (the default is ('0.0.0.0/0', '::/0'))")
            for i, cidr in enumerate(self.ingress_cidrs):
                require(isinstance(cidr, str) and cidr.strip() != "", f"ingress_cidrs[{i}]", cidr, "is empty",
                        "remove the empty entry or give a CIDR such as '203.0.113.0/24'")
                ip_network(f"ingress_cidrs[{i}]", cidr)
            require(isinstance(self.internal, bool), "internal", self.internal, "is not true or false",
                    "set internal=True (private ALB, reached over VPN/Direct Connect) or False (internet-facing)")
            require(isinstance(self.waf_rate_limit, int) and not isinstance(self.waf_rate_limit, bool)
                    and WAF_MIN_RATE_LIMIT <= self.waf_rate_limit <= 2_000_000_000, "waf_rate_limit",
                    self.waf_rate_limit, "is outside AWS WAF's rate-based rule range",
                    f"use {WAF_MIN_RATE_LIMIT}-2000000000 requests per 5 minutes")
            require(isinstance(self.tls_policy, str) and self.tls_policy.startswith("ELBSecurityPolicy-TLS13-"),
                    "tls_policy", self.tls_policy, "is not a TLS 1.3 ELB security policy",
                    f"use '{DEFAULT_TLS_POLICY}' or a stricter ELBSecurityPolicy-TLS13-* policy")


# ---- events (EventBridge -> SQS, optional MSK) --------------------------------------------------------------

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_GROUP = re.compile(r"[A-Za-z0-9._-]{1,255}")
_KAFKA_VERSION = re.compile(r"\d+\.\d+\.(\d+|x)")
_BROKER_TYPE = re.compile(r"kafka\.(t3|m5|m7g)\.[a-z0-9]+")


@dataclass(frozen=True, kw_only=True)
class EventsSettings:
    # Rules beyond the two every environment has (objects created in the landing bucket, and application
    # events whose source starts with `application_source_prefix` on the environment's bus).
    rules: tuple[EventRule, ...] = ()
    application_source_prefix: str = "app."
    max_receive_count: int = 5                   # receives before SQS moves a message to the dead-letter queue
    retry_attempts: int = 8                      # EventBridge delivery retries before the target DLQ (0-185)
    max_event_age_seconds: int = 3600            # EventBridge gives up delivering after this (60-86400)
    message_retention_seconds: int = 345600      # 4 days on the queues (DLQs keep 14 days, SQS's maximum)
    visibility_timeout_seconds: int = 300
    landing_expiration_days: int = 30            # landing objects are inputs; DAGs copy what they keep
    # Optional MSK (modules/aws/kafka.py). Provisioned is the secure default: serverless cannot use a customer
    # KMS key or ship broker logs, so production refuses it.
    kafka: bool = False
    kafka_mode: Literal["provisioned", "serverless"] = "provisioned"
    kafka_availability_zones: tuple[str, ...] = ()   # broker subnets: the private subnet of each zone (2 or 3)
    kafka_version: str = "3.8.x"
    kafka_broker_instance_type: str = "kafka.m7g.large"
    kafka_brokers_per_zone: int = 1
    kafka_volume_size_gib: int = 100
    kafka_topics: tuple[str, ...] = ("airflow-events",)   # the only topics Airflow's triggerer may read
    kafka_consumer_group: str = "airflow"

    def __post_init__(self) -> None:
        with section("events"):
            object.__setattr__(self, "rules", event_rules("rules", self.rules))
            require(isinstance(self.application_source_prefix, str) and 0 < len(self.application_source_prefix) <= 200
                    and not self.application_source_prefix.startswith("aws."), "application_source_prefix",
                    self.application_source_prefix, "is empty, too long or an AWS service source",
                    "use the source prefix your applications put events with, e.g. 'app.'")
            for name, low, high in (("max_receive_count", 1, 1000), ("retry_attempts", 0, 185),
                                    ("max_event_age_seconds", 60, 86400), ("message_retention_seconds", 60, 1209600),
                                    ("visibility_timeout_seconds", 0, 43200), ("landing_expiration_days", 1, 36500)):
                value = getattr(self, name)
                require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
                        name, value, f"is outside {low}-{high}", f"use {low}-{high}")
            require(self.kafka_mode in ("provisioned", "serverless"), "kafka_mode", self.kafka_mode,
                    "is not an MSK cluster type", "use 'provisioned' or 'serverless'")
            if self.kafka:
                zones = self.kafka_availability_zones
                high = 3 if self.kafka_mode == "provisioned" else 5
                require(2 <= len(zones) <= high and len(set(zones)) == len(zones), "kafka_availability_zones",
                        list(zones), f"gives {len(zones)} broker subnets while kafka=True (MSK {self.kafka_mode} "
                        f"needs 2-{high} in distinct zones)", "list 2 or 3 of the environment's availability zones "
                        "(one private subnet each), e.g. ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'], or set kafka=False")
            require(_KAFKA_VERSION.fullmatch(self.kafka_version or "") is not None, "kafka_version",
                    self.kafka_version, "is not an MSK Kafka version", "use e.g. '3.8.x' (MSK's recommended version)")
            require(_BROKER_TYPE.fullmatch(self.kafka_broker_instance_type or "") is not None,
                    "kafka_broker_instance_type", self.kafka_broker_instance_type, "is not an MSK broker type",
                    "use 'kafka.<t3|m5|m7g>.<size>', e.g. 'kafka.m7g.large'")
            require(isinstance(self.kafka_brokers_per_zone, int) and 1 <= self.kafka_brokers_per_zone <= 10,
                    "kafka_brokers_per_zone", self.kafka_brokers_per_zone, "is outside 1-10", "use 1-10")
            require(isinstance(self.kafka_volume_size_gib, int) and 1 <= self.kafka_volume_size_gib <= 16384,
                    "kafka_volume_size_gib", self.kafka_volume_size_gib, "is outside 1-16384", "use 1-16384 GiB")
            require(bool(self.kafka_topics) and all(isinstance(t, str) and _TOPIC.fullmatch(t) and t not in (".", "..")
                                                    for t in self.kafka_topics)
                    and len(set(self.kafka_topics)) == len(self.kafka_topics), "kafka_topics",
                    list(self.kafka_topics), "is empty, repeats a topic or names an invalid topic",
                    "list Kafka topic names of letters, digits, '.', '_' and '-'")
            require(isinstance(self.kafka_consumer_group, str)
                    and _GROUP.fullmatch(self.kafka_consumer_group) is not None, "kafka_consumer_group",
                    self.kafka_consumer_group, "is not a Kafka consumer group id", "use letters, digits, '.', '_' and '-'")

    @property
    def rule_names(self) -> tuple[str, ...]:
        """Every rule (the two defaults first), in the order queues and Airflow environment variables are made."""
        return (*DEFAULT_RULE_NAMES, *(r.name for r in self.rules))


# ---- in-VPC CI runner (CodeBuild-hosted GitHub Actions runner) ----------------------------------------------

# A GitHub connection of AWS CodeConnections (or its former name, CodeStar Connections: older connections keep that
# ARN, and IAM actions must use the same prefix as the ARN).
_CONNECTION_ARN = re.compile(
    r"arn:aws(-cn|-us-gov)?:(codeconnections|codestar-connections):[a-z]{2}(-gov)?-[a-z]+-\d:(\d{12}):connection/"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# CodeBuild's curated images only: they come from CodeBuild itself (image_pull_credentials_type CODEBUILD), so the
# service role needs no ECR pull rights; a custom image would add a registry to trust and grant.
_CURATED_IMAGE = re.compile(r"aws/codebuild/[a-z0-9][a-z0-9._-]*:[0-9][0-9a-z._-]*")
CI_RUNNER_COMPUTE_TYPES = ("BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE",
                           "BUILD_GENERAL1_XLARGE", "BUILD_GENERAL1_2XLARGE")
_WORKFLOW_NAME = re.compile(r"[^\x00-\x1f]{1,100}")


def connection_account(connection_arn: str) -> str:
    """The account a CodeConnections ARN belongs to ('' if it is not one)."""
    match = _CONNECTION_ARN.fullmatch(connection_arn or "")
    return match.group(4) if match else ""


@dataclass(frozen=True, kw_only=True)
class CiRunnerSettings:
    """The environment's CodeBuild-hosted GitHub Actions runner in the private subnets (modules/aws/ci_runner.py):
    the deploy workflow's platform and vault-config jobs run there, because the EKS API endpoint is private. Created
    wherever `state.github_repository` is set; off only with a reason."""
    enabled: bool = True
    off_reason: str = ""                         # why there is no runner: required when enabled=False
    # The account's CodeConnections GitHub connection, completed once in the console (docs/design.md §12). No token
    # or secret is configured anywhere: CodeBuild gets short-lived GitHub App tokens from the connection.
    connection_arn: str = ""
    image: str = "aws/codebuild/standard:7.0"    # CodeBuild's Ubuntu image: the runner tools GitHub's jobs expect
    compute_type: str = "BUILD_GENERAL1_MEDIUM"  # 4 vCPU, 7 GB: a full synth (jsii) plus terraform and helm
    build_timeout_minutes: int = 60              # a job running longer is stopped (CodeBuild: 5-2160)
    queued_timeout_minutes: int = 30             # a job waiting longer for capacity is dropped (CodeBuild: 5-480)
    max_concurrent_builds: int = 2               # more queued jobs with the runner's label wait (or fail to start)
    # Only jobs of these workflows start a build (webhook WORKFLOW_NAME filter, the workflow's `name:`). Hygiene,
    # not a trust boundary: credentials come from the deploy role's OIDC trust, not from the runner.
    workflow_names: tuple[str, ...] = ("deploy",)

    def __post_init__(self) -> None:
        with section("ci_runner"):
            require(isinstance(self.enabled, bool), "enabled", self.enabled, "is not true or false",
                    "set enabled=True or False")
            require(self.enabled or (isinstance(self.off_reason, str) and self.off_reason.strip() != ""), "enabled",
                    self.enabled, "turns the in-VPC runner off without a reason",
                    "keep it on, or say in off_reason how the deploy jobs reach the private EKS API instead")
            require(self.connection_arn == "" or _CONNECTION_ARN.fullmatch(self.connection_arn or "") is not None,
                    "connection_arn", self.connection_arn, "is not a CodeConnections connection ARN",
                    "use arn:aws:codeconnections:<region>:<account>:connection/<uuid> of the account's GitHub "
                    "connection (docs/design.md §12)")
            require(isinstance(self.image, str) and _CURATED_IMAGE.fullmatch(self.image) is not None, "image",
                    self.image, "is not a CodeBuild curated image",
                    "use aws/codebuild/<name>:<version>, e.g. 'aws/codebuild/standard:7.0'")
            require(self.compute_type in CI_RUNNER_COMPUTE_TYPES, "compute_type", self.compute_type,
                    "is not a CodeBuild EC2 compute type", f"use one of {', '.join(CI_RUNNER_COMPUTE_TYPES)}")
            for name, low, high in (("build_timeout_minutes", 5, 2160), ("queued_timeout_minutes", 5, 480),
                                    ("max_concurrent_builds", 1, 100)):
                value = getattr(self, name)
                require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
                        name, value, f"is outside {low}-{high}", f"use {low}-{high}")
            require(len(self.workflow_names) >= 1 and all(
                isinstance(n, str) and n.strip() == n and _WORKFLOW_NAME.fullmatch(n) is not None
                for n in self.workflow_names), "workflow_names", list(self.workflow_names),
                "is empty or holds a name that is blank, padded or has control characters",
                "list the `name:` of each workflow whose jobs run on this runner, e.g. ('deploy',)")

    @property
    def environment_type(self) -> str:
        """CodeBuild environment type matching the image's architecture."""
        return "ARM_CONTAINER" if "aarch64" in self.image else "LINUX_CONTAINER"


# ---- CI identities (modules/aws/ci_roles.py creates them; the workflows, the infra stack and environments/config.py
# name them): the naming convention, in one place, importable without starting jsii.

ROLE_NAME_PREFIX = "github-actions"     # CiRolesProps.name's default: the roles the workflows assume


def deploy_role_name(environment: str, name: str = ROLE_NAME_PREFIX) -> str:
    return f"{name}-{environment}-deploy"


def plan_role_name(environment: str, name: str = ROLE_NAME_PREFIX) -> str:
    return f"{name}-{environment}-plan"


def workload_boundary_name(prefix: str) -> str:
    return f"{prefix}-workload-boundary"
