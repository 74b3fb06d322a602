"""moto, patched where it differs from AWS in ways the rehearsal meets, served on one loopback host/port.

    python -m tools.emulator_server --host 127.0.0.1 --port 5000

Each patch in PATCHES is narrow (one API, one attribute or filter), says what AWS does, and is applied in this
process only, before moto serves: the installed moto package is never edited. A patch whose target moto no longer
has fails loudly at start-up instead of silently serving unpatched behaviour.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

PATCHES: list[Callable[[], None]] = []


def patch(func: Callable[[], None]) -> Callable[[], None]:
    PATCHES.append(func)
    return func


@patch
def sqs_redrive_allow_policy() -> None:
    """SQS: AWS stores a queue's RedriveAllowPolicy (which source queues may use it as a dead-letter queue) and
    returns it from GetQueueAttributes; moto 5.2 does not know the attribute ("InvalidAttributeName"), so
    aws_sqs_queue_redrive_allow_policy cannot read back what it set. Store and return it like any attribute."""
    from moto.sqs.models import Queue

    if "RedriveAllowPolicy" not in Queue.BASE_ATTRIBUTES:
        Queue.BASE_ATTRIBUTES.append("RedriveAllowPolicy")
    Queue.redrive_allow_policy = None          # a queue without one returns none, as on AWS


@patch
def ec2_subnet_ipv6_association_filters() -> None:
    """EC2: DescribeSubnets on AWS accepts the filters ipv6-cidr-block-association.association-id,
    .ipv6-cidr-block and .state (API reference, DescribeSubnets); moto 5.2 raises FilterNotImplementedError for
    them, so the provider's wait for a subnet's IPv6 block to be associated fails. Answer them from the subnet's
    associations."""
    from moto.ec2.models.subnets import Subnet

    fields = {"ipv6-cidr-block-association.association-id": lambda a: a["associationId"],
              "ipv6-cidr-block-association.ipv6-cidr-block": lambda a: a["ipv6CidrBlock"],
              "ipv6-cidr-block-association.state": lambda a: a["ipv6CidrBlockState"]["State"]}
    original = Subnet.get_filter_value

    def get_filter_value(self, filter_name: str, method_name: str | None = None):
        if filter_name in fields:
            return [fields[filter_name](a) for a in self.ipv6_cidr_block_associations.values()]
        return original(self, filter_name, method_name)

    Subnet.get_filter_value = get_filter_value


@patch
def elasticache_parameter_groups() -> None:
    """ElastiCache: AWS has Create/Describe/Modify/Reset/DeleteCacheParameterGroup and DescribeCacheParameters;
    moto 5.2 has none of them ("NotImplementedError: The create_cache_parameter_group action has not been
    implemented"), so the provider retries the HTTP 500 until it gives up. Keep each group's name, family,
    description, ARN, tags and user-set parameters (what DescribeCacheParameters with Source=user returns on AWS;
    engine defaults are not modelled), with AWS's error codes for a missing or duplicate group."""
    import re

    from moto.core.responses import ActionResult, EmptyResult
    from moto.elasticache.exceptions import ElastiCacheException
    from moto.elasticache.models import ElastiCacheBackend
    from moto.elasticache.responses import ElastiCacheResponse

    class NotFound(ElastiCacheException):
        code = "CacheParameterGroupNotFound"

    class AlreadyExists(ElastiCacheException):
        code = "CacheParameterGroupAlreadyExists"

    original_init = ElastiCacheBackend.__init__

    def init(self, region_name: str, account_id: str) -> None:
        original_init(self, region_name, account_id)
        self.cache_parameter_groups = {}      # name -> (group, {parameter: value})
        # parameter group ARNs can be tagged and listed on AWS, like the ARN kinds moto knows
        self.arn_regex = re.compile(self.arn_regex.pattern.replace("|user)", "|user|parametergroup)"))

    def group(self, name: str) -> tuple[dict, dict]:
        found = self.elasticache_backend.cache_parameter_groups.get(name)
        if found is None:
            raise NotFound(f"CacheParameterGroup {name} not found.")
        return found

    def create(self) -> ActionResult:
        backend, name = self.elasticache_backend, self._get_param("CacheParameterGroupName")
        if name in backend.cache_parameter_groups:
            raise AlreadyExists(f"Parameter group {name} already exists.")
        arn = f"arn:aws:elasticache:{self.region}:{self.current_account}:parametergroup:{name}"
        created = {"CacheParameterGroupName": name, "CacheParameterGroupFamily": self._get_param(
            "CacheParameterGroupFamily"), "Description": self._get_param("Description"), "IsGlobal": False, "ARN": arn}
        backend.cache_parameter_groups[name] = (created, {})
        if self._get_param("Tags"):
            backend.tagging_service.tag_resource(arn, self._get_param("Tags"))
        return ActionResult({"CacheParameterGroup": created})

    def describe_groups(self) -> ActionResult:
        name = self._get_param("CacheParameterGroupName")
        groups = [group(self, name)[0]] if name else [g for g, _ in self.elasticache_backend.cache_parameter_groups.values()]
        return ActionResult({"CacheParameterGroups": groups})

    def modify(self) -> ActionResult:
        name = self._get_param("CacheParameterGroupName")
        _, values = group(self, name)
        values.update({p["ParameterName"]: p["ParameterValue"] for p in self._get_param("ParameterNameValues", [])})
        return ActionResult({"CacheParameterGroupName": name})

    def reset(self) -> ActionResult:
        name = self._get_param("CacheParameterGroupName")
        _, values = group(self, name)
        if self._get_bool_param("ResetAllParameters"):
            values.clear()
        for p in self._get_param("ParameterNameValues", []):
            values.pop(p["ParameterName"], None)
        return ActionResult({"CacheParameterGroupName": name})

    def describe_parameters(self) -> ActionResult:
        _, values = group(self, self._get_param("CacheParameterGroupName"))
        source = self._get_param("Source")
        parameters = [] if source not in (None, "user") else [
            {"ParameterName": k, "ParameterValue": v, "Source": "user", "DataType": "string", "IsModifiable": True}
            for k, v in sorted(values.items())]
        return ActionResult({"Parameters": parameters})

    def delete(self) -> EmptyResult:
        name = self._get_param("CacheParameterGroupName")
        created, _ = group(self, name)
        del self.elasticache_backend.cache_parameter_groups[name]
        self.elasticache_backend.tagging_service.delete_all_tags_for_resource(created["ARN"])
        return EmptyResult()

    ElastiCacheBackend.__init__ = init
    ElastiCacheResponse.create_cache_parameter_group = create
    ElastiCacheResponse.describe_cache_parameter_groups = describe_groups
    ElastiCacheResponse.modify_cache_parameter_group = modify
    ElastiCacheResponse.reset_cache_parameter_group = reset
    ElastiCacheResponse.describe_cache_parameters = describe_parameters
    ElastiCacheResponse.delete_cache_parameter_group = delete


@patch
def elasticache_delete_subnet_group() -> None:
    """ElastiCache: AWS deletes a cache subnet group with DeleteCacheSubnetGroup; moto 5.2 has Create and Describe
    only ("NotImplementedError: The delete_cache_subnet_group action has not been implemented"), so a destroy
    retries until interrupted. Delete it (CacheSubnetGroupNotFoundFault when missing, as AWS)."""
    from moto.core.responses import EmptyResult
    from moto.elasticache.exceptions import CacheSubnetGroupNotFound
    from moto.elasticache.responses import ElastiCacheResponse

    def delete(self) -> EmptyResult:
        backend, name = self.elasticache_backend, self._get_param("CacheSubnetGroupName")
        deleted = backend.cache_subnet_groups.pop(name, None)
        if deleted is None:
            raise CacheSubnetGroupNotFound(name)
        backend.tagging_service.delete_all_tags_for_resource(deleted.arn)
        return EmptyResult()

    ElastiCacheResponse.delete_cache_subnet_group = delete


@patch
def s3_logging_policy_wildcards() -> None:
    """S3: PutBucketLogging is allowed when the target bucket's policy lets logging.s3.amazonaws.com s3:PutObject
    into the log prefix. AWS evaluates the statement's Resource as a wildcard pattern (a list or a string), so
    `arn:aws:s3:::logs/s3/*` covers the prefix `s3/dags/`; moto 5.2 compares it with three exact strings only
    ("InvalidTargetBucketForLogging: You must either provide the necessary permissions to the logging service
    using a bucket policy or give the log-delivery group WRITE and READ_ACP permissions to the target bucket").
    Match the patterns the way IAM does (`*` and `?`)."""
    import fnmatch
    import json

    from moto.s3.models import FakeBucket
    from moto.s3.utils import LOGGING_SERVICE_PRINCIPAL

    def as_list(value) -> list:
        return value if isinstance(value, list) else [value]

    def enabled_by_policy(target_bucket, target_prefix):
        if not target_bucket.policy:
            return False
        wanted = f"arn:{target_bucket.partition}:s3:::{target_bucket.name}/{target_prefix or ''}"
        for stmt in as_list(json.loads(target_bucket.policy.decode()).get("Statement", [])):
            principal = stmt.get("Principal", {})
            services = as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
            if (stmt.get("Effect") == "Allow" and LOGGING_SERVICE_PRINCIPAL in services
                    and any(fnmatch.fnmatchcase("s3:PutObject", a) for a in as_list(stmt.get("Action", [])))
                    and any(fnmatch.fnmatchcase(wanted + "x", r) for r in as_list(stmt.get("Resource", [])))):
                return True      # (+ "x": a log object's key under the prefix, as S3 writes it)
        return False

    FakeBucket._log_permissions_enabled_policy = staticmethod(enabled_by_policy)


@patch
def ec2_subnet_ipv6_association_state() -> None:
    """EC2: AWS returns a subnet's IPv6 association state as Ipv6CidrBlockState.State = "associated"; moto 5.2
    nests the whole state dict there, so the provider waits on "unexpected state '{'State': 'associated'}',
    wanted target 'associated'". Return the state string."""
    from moto.ec2.models.subnets import Subnet

    def ipv6_cidr_block_association_set(self) -> list[dict]:
        return [{"ipv6CidrBlock": a["ipv6CidrBlock"], "associationId": a["associationId"],
                 "ipv6CidrBlockState": {"state": a["ipv6CidrBlockState"]["State"]}}
                for a in self.ipv6_cidr_block_associations.values() if a["ipv6CidrBlockState"]["State"] == "associated"]

    Subnet.ipv6_cidr_block_association_set = property(ipv6_cidr_block_association_set)


@patch
def elasticache_replication_group_members() -> None:
    """ElastiCache: on AWS a replication group's member clusters (<id>-001, ...) are cache clusters that
    DescribeCacheClusters returns, carrying the group's parameter group, subnet group, security groups, engine
    version and maintenance window; moto 5.2 lists them but does not create them ("CacheClusterNotFound: Cache
    cluster airflow-dev-broker-001 not found"), and the provider reads the first one. Also, AWS removes a deleted
    group (status "deleting", then gone); moto keeps it "deleting" forever, so a destroy waits until interrupted.
    Create the member clusters with the group, and remove group and members on delete."""
    from moto.elasticache.models import CacheCluster, ElastiCacheBackend

    class MemberCluster(CacheCluster):
        """What DescribeCacheClusters shows for a member: the structures moto's CacheCluster lacks."""
        __module__ = "moto.elasticache.models"        # moto's model registry keys models by their service module

        @property
        def cache_parameter_group(self) -> dict:
            return {"CacheParameterGroupName": self.cache_parameter_group_name, "ParameterApplyStatus": "in-sync",
                    "CacheNodeIdsToReboot": []}

        @property
        def security_groups(self) -> list[dict]:
            return [{"SecurityGroupId": sg, "Status": "active"} for sg in self.security_group_ids]

    original_create = ElastiCacheBackend.create_replication_group
    original_delete = ElastiCacheBackend.delete_replication_group

    def create(self, **kwargs):
        group = original_create(self, **kwargs)
        for member in group.member_clusters:
            cluster = MemberCluster(
                account_id=self.account_id, region_name=self.region_name, cache_cluster_id=member,
                cache_node_type=group.cache_node_type, replication_group_id=group.replication_group_id, az_mode="single-az",
                preferred_availability_zone=None, num_cache_nodes=1, engine=group.engine,
                engine_version=group.engine_version, cache_parameter_group_name=group.cache_parameter_group_name,
                cache_subnet_group_name=group.cache_subnet_group_name,
                transit_encryption_enabled=group.transit_encryption_enabled, network_type=group.network_type,
                ip_discovery=group.ip_discovery, snapshot_name=None,
                preferred_maintenance_window=group.preferred_maintenance_window, port=kwargs.get("port"),
                notification_topic_arn=group.notification_topic_arn,
                auto_minor_version_upgrade=group.auto_minor_version_upgrade,
                snapshot_retention_limit=kwargs.get("snapshot_retention_limit"), snapshot_window=None,
                auth_token=kwargs.get("auth_token"), outpost_mode=None, preferred_outpost_arn=None,
                preferred_availability_zones=None, cache_security_group_names=None,
                security_group_ids=list(group.security_group_ids or []), tags=None, snapshot_arns=None,
                preferred_outpost_arns=None, log_delivery_configurations=[], cache_node_ids_to_remove=None,
                cache_node_ids_to_reboot=None)
            cluster.at_rest_encryption_enabled = group.at_rest_encryption_enabled
            cluster.replication_group_id = group.replication_group_id    # (moto sets it for engine "redis" only)
            self.cache_clusters[member] = cluster
        return group

    def delete(self, replication_group_id, retain_primary_cluster):
        group = original_delete(self, replication_group_id, retain_primary_cluster)
        self.replication_groups.pop(replication_group_id, None)
        for member_id, cluster in list(self.cache_clusters.items()):
            if getattr(cluster, "replication_group_id", None) == replication_group_id:
                del self.cache_clusters[member_id]
        return group

    ElastiCacheBackend.create_replication_group = create
    ElastiCacheBackend.delete_replication_group = delete


@patch
def rds_default_ca_certificate() -> None:
    """RDS: a DB instance created without CACertificateIdentifier gets AWS's default CA, rds-ca-rsa2048-g1
    (RDS User Guide, "Using SSL/TLS": the default for new DB instances since 2024); moto 5.2 answers
    "rds-ca-default", a CA that does not exist. The provider then calls ModifyDBInstance right after the create to
    set the CA the configuration names and waits for the instance a second time, a wait that never happens on AWS.
    Give new instances AWS's default."""
    from moto.rds.models import DBInstance

    original_init = DBInstance.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if self.ca_certificate_identifier == "rds-ca-default":
            self.ca_certificate_identifier = "rds-ca-rsa2048-g1"

    DBInstance.__init__ = init


def apply_patches() -> list[str]:
    """Apply every patch; returns their names (what the server log prints at start-up)."""
    for func in PATCHES:
        func()
    return [func.__name__ for func in PATCHES]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.emulator_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless you mean otherwise)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # AWS managed policies exist in every account; role policy attachments to them must work as on AWS.
    os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    # ACM issues a DNS-validated certificate once its validation record resolves, which the stack creates in the
    # same apply; moto instead holds every certificate PENDING_VALIDATION for 60 s of wall time (a setting of the
    # emulator, not of AWS) and aws_acm_certificate_validation waits it out. Issue on the first look.
    os.environ.setdefault("MOTO_ACM_VALIDATION_WAIT", "0")
    names = apply_patches()
    print(f"emulator_server: moto with {len(names)} patches: {', '.join(names) or '-'}", flush=True)
    from moto.server import main as moto_main
    moto_main(["-H", args.host, "-p", str(args.port)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
