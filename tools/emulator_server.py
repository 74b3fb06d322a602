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
    names = apply_patches()
    print(f"emulator_server: moto with {len(names)} patches: {', '.join(names) or '-'}", flush=True)
    from moto.server import main as moto_main
    moto_main(["-H", args.host, "-p", str(args.port)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
