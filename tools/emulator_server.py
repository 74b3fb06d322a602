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
    # Setting it to "" removes it on AWS (GetQueueAttributes returns none), which is how the provider deletes
    # aws_sqs_queue_redrive_allow_policy and then waits for it to be gone.
    Queue.redrive_allow_policy = property(lambda self: self.__dict__.get("_redrive_allow_policy") or None,
                                          lambda self, value: self.__dict__.__setitem__("_redrive_allow_policy", value))


@patch
def sqs_attributes_kept_and_compact() -> None:
    """SQS: on AWS, SetQueueAttributes changes only the attributes it names, and RedrivePolicy reads back as compact
    JSON ({"deadLetterTargetArn":"...","maxReceiveCount":3}). moto 5.2 resets Policy to none whenever any other
    attribute is set (so a dead-letter queue's aws_sqs_queue_policy vanished once its redrive-allow policy was
    set) and returns RedrivePolicy with spaces, which the provider, normalizing its configuration to compact JSON,
    sees as a change on every plan. Keep Policy unless named; return compact JSON."""
    import json

    from moto.sqs.models import Queue

    original_set = Queue._set_attributes

    def set_attributes(self, attributes, now=None):
        kept = self.__dict__.get("_policy_json")
        original_set(self, attributes, now)
        if "Policy" not in attributes and kept is not None:
            self._policy_json = kept

    original_attributes = Queue.attributes.fget

    def attributes(self):
        result = original_attributes(self)
        if self.redrive_policy:
            result["RedrivePolicy"] = json.dumps(self.redrive_policy, separators=(",", ":"))
        return result

    Queue._set_attributes = set_attributes
    Queue.attributes = property(attributes)


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
            cluster.transit_encryption_mode = group.transit_encryption_mode
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


@patch
def acm_key_algorithm() -> None:
    """ACM: RequestCertificate honours KeyAlgorithm (e.g. EC_prime256v1) on AWS and DescribeCertificate returns
    it; moto 5.2 ignores it and always answers RSA_2048, and since key_algorithm forces a new certificate, every
    plan would replace the certificate, its validation records and the listener's certificate."""
    from moto.acm.models import CertBundle
    from moto.acm.responses import AWSCertificateManagerResponse

    original_request = AWSCertificateManagerResponse.request_certificate
    original_describe = CertBundle.describe

    def request_certificate(self):
        response = original_request(self)
        algorithm = self._get_param("KeyAlgorithm")
        if algorithm:
            arn = response.result["CertificateArn"]
            self.acm_backend._certificates[arn].requested_key_algorithm = algorithm
        return response

    def describe(self):
        result = original_describe(self)
        if getattr(self, "requested_key_algorithm", None):
            result["Certificate"]["KeyAlgorithm"] = self.requested_key_algorithm
        return result

    AWSCertificateManagerResponse.request_certificate = request_certificate
    CertBundle.describe = describe


@patch
def rds_performance_insights_and_user_parameters() -> None:
    """RDS: AWS stores a DB instance's Performance Insights settings (EnablePerformanceInsights, its KMS key and
    retention) and DescribeDBInstances returns them; moto 5.2 drops them. And DescribeDBParameters on AWS gives
    every parameter its Source ("user" for the ones a ModifyDBParameterGroup set); moto 5.2 gives none, and the
    provider skips parameters without a Source, so it reads back no parameters at all. Keep and return both."""
    from moto.core.responses import ActionResult
    from moto.rds.exceptions import DBParameterGroupNotFoundError
    from moto.rds.models import DBInstance
    from moto.rds.responses import RDSResponse

    original_init = DBInstance.__init__
    original_update = DBInstance.update
    fields = {"enable_performance_insights": "performance_insights_enabled",
              "performance_insights_kms_key_id": "performance_insights_kms_key_id",
              "performance_insights_retention_period": "performance_insights_retention_period"}

    def keep(self, kwargs) -> None:
        for given, attribute in fields.items():
            if kwargs.get(given) is not None:
                setattr(self, attribute, kwargs[given])
        if getattr(self, "performance_insights_enabled", False) and not getattr(
                self, "performance_insights_retention_period", None):
            self.performance_insights_retention_period = 7          # AWS's default (the free tier)

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        keep(self, kwargs)

    def update(self, **kwargs):
        original_update(self, **kwargs)
        keep(self, kwargs)

    def describe_db_parameters(self) -> ActionResult:
        name = self.params.get("DBParameterGroupName")
        groups = self.backend.describe_db_parameter_groups({"db_parameter_group_name": name})
        if not groups:
            raise DBParameterGroupNotFoundError(name)
        source = self.params.get("Source")
        parameters = [] if source not in (None, "user") else [
            {**p, "Source": "user", "IsModifiable": True} for p in groups[0].parameters.values()]
        return ActionResult({"Parameters": parameters})

    DBInstance.__init__ = init
    DBInstance.update = update
    RDSResponse.describe_db_parameters = describe_db_parameters


@patch
def eks_cluster_access_config() -> None:
    """EKS: CreateCluster's accessConfig.authenticationMode (API, API_AND_CONFIG_MAP) is kept and DescribeCluster
    returns it on AWS (bootstrapClusterCreatorAdminPermissions is not returned; the provider keeps its configured
    value); moto 5.2 ignores accessConfig, and since bootstrap_cluster_creator_admin_permissions forces a new
    cluster, every plan would replace the cluster."""
    from moto.eks.responses import EKSResponse

    original_create = EKSResponse.create_cluster

    def create_cluster(self):
        response = original_create(self)
        cluster = self.eks_backend.clusters[self._get_param("name")]
        config = self._get_param("accessConfig") or {}
        cluster.access_config = {"authenticationMode": config.get("authenticationMode", "CONFIG_MAP")}
        return response

    EKSResponse.create_cluster = create_cluster


@patch
def kms_rotation_period() -> None:
    """KMS: EnableKeyRotation takes RotationPeriodInDays (90-2560, default 365) and GetKeyRotationStatus returns
    it on AWS; moto 5.2 ignores it, so every plan shows rotation_period_in_days 0 -> 365."""
    import json

    from moto.kms.responses import KmsResponse

    original_enable = KmsResponse.enable_key_rotation
    original_status = KmsResponse.get_key_rotation_status

    def enable_key_rotation(self):
        response = original_enable(self)
        key = self.kms_backend.keys[self.kms_backend.get_key_id(self._get_param("KeyId"))]
        key.rotation_period_in_days = self._get_param("RotationPeriodInDays") or 365
        return response

    def get_key_rotation_status(self):
        status = json.loads(original_status(self))
        key = self.kms_backend.keys[self.kms_backend.get_key_id(self._get_param("KeyId"))]
        if status.get("KeyRotationEnabled"):
            status["RotationPeriodInDays"] = getattr(key, "rotation_period_in_days", 365)
        return json.dumps(status)

    KmsResponse.enable_key_rotation = enable_key_rotation
    KmsResponse.get_key_rotation_status = get_key_rotation_status


@patch
def s3_eventbridge_notification() -> None:
    """S3: GetBucketNotificationConfiguration returns an (empty) EventBridgeConfiguration element when events go
    to EventBridge; moto 5.2 stores it but leaves it out, so aws_s3_bucket_notification's eventbridge reads back
    false on every plan."""
    from moto.s3.responses import S3Response

    original = S3Response.get_bucket_notification

    def get_bucket_notification(self):
        response = original(self)
        config = self.backend.get_bucket_notification_configuration(self.bucket_name)
        if config is None or config.event_bridge is None:
            return response
        status, headers, body = response
        body = body.decode() if isinstance(body, bytes) else body
        element = "<EventBridgeConfiguration></EventBridgeConfiguration>"
        if "</NotificationConfiguration>" in body:
            body = body.replace("</NotificationConfiguration>", element + "</NotificationConfiguration>")
        else:
            body = ('<?xml version="1.0" encoding="UTF-8"?><NotificationConfiguration '
                    'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' + element + "</NotificationConfiguration>")
        return status, headers, body

    S3Response.get_bucket_notification = get_bucket_notification


@patch
def ec2_rule_description_and_launch_template_tags() -> None:
    """EC2: a security group rule that references another group keeps its Description on AWS
    (DescribeSecurityGroupRules); moto 5.2 returns descriptions of CIDR rules only. And CreateLaunchTemplate's
    TagSpecifications (ResourceType launch-template) tag the template itself on AWS; moto 5.2 also copies them
    into the version's LaunchTemplateData.TagSpecifications, where AWS does not even allow that resource type,
    so every plan shows a tag_specifications change and a new template version."""
    from moto.ec2.models.security_groups import SecurityGroupRule
    from moto.ec2.models.launch_templates import LaunchTemplateBackend

    SecurityGroupRule.description = property(
        lambda self: self.ip_range.get("Description") or (self.source_group or {}).get("Description"))

    original_create = LaunchTemplateBackend.create_launch_template

    def create_launch_template(self, name, description, template_data, tag_spec):
        # The template's own tags still arrive through tag_spec; only the copy in the version's data goes.
        specs = [t for t in template_data.get("TagSpecifications") or [] if t.get("ResourceType") != "launch-template"]
        if "TagSpecifications" in template_data:
            template_data = {**template_data, "TagSpecifications": specs}
        return original_create(self, name, description, template_data, tag_spec)

    LaunchTemplateBackend.create_launch_template = create_launch_template


@patch
def ec2_unknown_rule_id_error() -> None:
    """EC2: revoking a security group rule by an ID the group does not have answers
    InvalidSecurityGroupRuleId.NotFound on AWS, which the provider's rule delete treats as already deleted; moto 5.2
    answers InvalidPermission.NotFound, which fails the destroy of a rule that is already gone (a retried revoke
    after a slow first answer, as Terraform's parallel destroy meets it)."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.security_groups import SecurityGroupBackend

    def known_ids(wrapped, rules_of):
        def revoke(self, group_name_or_id, *args, security_rule_ids=None, vpc_id=None, **kwargs):
            if security_rule_ids:
                group = self.get_security_group_by_name_or_id(group_name_or_id, vpc_id)
                if group is not None:
                    ids = {rule.id for rule in rules_of(group)}
                    unknown = [rule_id for rule_id in security_rule_ids if rule_id not in ids]
                    if unknown:
                        raise EC2ClientError("InvalidSecurityGroupRuleId.NotFound",
                                             f"The security group rule ID '{unknown[0]}' does not exist")
            return wrapped(self, group_name_or_id, *args, security_rule_ids=security_rule_ids, vpc_id=vpc_id,
                           **kwargs)
        return revoke

    SecurityGroupBackend.revoke_security_group_ingress = known_ids(
        SecurityGroupBackend.revoke_security_group_ingress, lambda group: group.ingress_rules)
    SecurityGroupBackend.revoke_security_group_egress = known_ids(
        SecurityGroupBackend.revoke_security_group_egress, lambda group: group.egress_rules)


@patch
def eks_addons_pod_identities_and_access_entries() -> None:
    """EKS: AWS has CreateAddon/DescribeAddon/DeleteAddon/ListAddons, Create/Describe/Delete/
    ListPodIdentityAssociations, Create/Describe/Delete/ListAccessEntries and Associate/ListAssociated/
    DisassociateAccessPolicy; moto 5.2 has no route for them at all ("404 Not Found: The requested URL was not
    found on the server"). Keep add-ons (ACTIVE at once: nothing runs in an emulated cluster) and associations per
    cluster, and access entries with their associated access policies, with AWS's ARN shapes, tags and
    ResourceNotFoundException, and let ListTagsForResource/TagResource answer for them and for node groups as AWS
    does (moto 5.2 tags clusters only)."""
    import random
    import string
    from datetime import datetime, timezone

    from moto.core.responses import ActionResult
    from moto.eks import urls
    from moto.eks.exceptions import ResourceNotFoundException
    from moto.eks.models import EKSBackend
    from moto.eks.responses import EKSResponse

    dispatch = urls.response.dispatch
    urls.url_paths.update({
        "{0}/clusters/(?P<name>[^/]+)/addons$": dispatch,
        "{0}/clusters/(?P<name>[^/]+)/addons/(?P<addonName>[^/]+)$": dispatch,
        "{0}/clusters/(?P<name>[^/]+)/pod-identity-associations$": dispatch,
        "{0}/clusters/(?P<name>[^/]+)/pod-identity-associations/(?P<associationId>[^/]+)$": dispatch,
        # The principal's ARN (and a policy's) keep their slashes in these paths; moto's service router picks the
        # operation from the botocore model, so one greedy route serves the entry and its access policies.
        "{0}/clusters/(?P<name>[^/]+)/access-entries$": dispatch,
        "{0}/clusters/(?P<name>[^/]+)/access-entries/(?P<principalArn>.+)$": dispatch,
    })

    ADDON_NAMESPACES = {"amazon-cloudwatch-observability": "amazon-cloudwatch"}    # the rest run in kube-system

    def state(backend: EKSBackend) -> dict:
        return backend.__dict__.setdefault("_emulated", {"addons": {}, "associations": {}, "access_entries": {}})

    def cluster_or_404(self, name: str):
        if name not in self.eks_backend.clusters:
            raise ResourceNotFoundException(clusterName=name, nodegroupName=None, fargateProfileName=None,
                                            addonName=None, message=f"No cluster found for name: {name}.")
        return self.eks_backend.clusters[name]

    def arn(self, kind: str, *parts: str) -> str:
        return f"arn:aws:eks:{self.region}:{self.current_account}:{kind}/{'/'.join(parts)}"

    def create_addon(self):
        cluster, name = self._get_param("name"), self._get_param("addonName")
        cluster_or_404(self, cluster)
        now = datetime.now(timezone.utc)
        addon = {"addonName": name, "clusterName": cluster, "status": "ACTIVE", "health": {"issues": []},
                 "addonVersion": self._get_param("addonVersion"), "createdAt": now, "modifiedAt": now,
                 "addonArn": arn(self, "addon", cluster, name, "".join(random.choices(string.hexdigits.lower(), k=32))),
                 "serviceAccountRoleArn": self._get_param("serviceAccountRoleArn"),
                 "configurationValues": self._get_param("configurationValues"), "tags": self._get_param("tags") or {},
                 "podIdentityAssociations": []}
        # An add-on's own associations (AWS creates them with it, owned by the add-on; DescribeAddon lists ARNs).
        for wanted in self._get_param("podIdentityAssociations") or []:
            association = new_association(self, cluster, namespace=ADDON_NAMESPACES.get(name, "kube-system"),
                                          service_account=wanted["serviceAccount"], role_arn=wanted["roleArn"],
                                          tags={}, owner=addon["addonArn"])
            addon["podIdentityAssociations"].append(association["associationArn"])
        state(self.eks_backend)["addons"][(cluster, name)] = addon
        return ActionResult({"addon": addon})

    def find_addon(self) -> dict:
        cluster, name = self._get_param("name"), self._get_param("addonName")
        found = state(self.eks_backend)["addons"].get((cluster, name))
        if found is None:
            raise ResourceNotFoundException(clusterName=cluster, nodegroupName=None, fargateProfileName=None,
                                            addonName=name, message=f"No addon: {name} found in cluster: {cluster}")
        return found

    def describe_addon(self):
        return ActionResult({"addon": find_addon(self)})

    def delete_addon(self):
        addon = find_addon(self)
        del state(self.eks_backend)["addons"][(addon["clusterName"], addon["addonName"])]
        for association_arn in addon["podIdentityAssociations"]:
            state(self.eks_backend)["associations"].pop(association_arn.rsplit("/", 1)[1], None)
        return ActionResult({"addon": {**addon, "status": "DELETING"}})

    def list_addons(self):
        cluster = self._get_param("name")
        cluster_or_404(self, cluster)
        return ActionResult({"addons": sorted(n for c, n in state(self.eks_backend)["addons"] if c == cluster)})

    def new_association(self, cluster: str, *, namespace: str, service_account: str, role_arn: str, tags: dict,
                        owner: str | None = None) -> dict:
        now = datetime.now(timezone.utc)
        association_id = "a-" + "".join(random.choices(string.ascii_lowercase + string.digits, k=17))
        association = {"clusterName": cluster, "namespace": namespace, "serviceAccount": service_account,
                       "roleArn": role_arn, "associationArn": arn(self, "podidentityassociation", cluster, association_id),
                       "associationId": association_id, "tags": tags, "createdAt": now, "modifiedAt": now,
                       **({"ownerArn": owner} if owner else {})}
        state(self.eks_backend)["associations"][association_id] = association
        return association

    def create_pod_identity_association(self):
        cluster = self._get_param("name")
        cluster_or_404(self, cluster)
        return ActionResult({"association": new_association(
            self, cluster, namespace=self._get_param("namespace"), service_account=self._get_param("serviceAccount"),
            role_arn=self._get_param("roleArn"), tags=self._get_param("tags") or {})})

    def find_association(self) -> dict:
        cluster, association_id = self._get_param("name"), self._get_param("associationId")
        found = state(self.eks_backend)["associations"].get(association_id)
        if found is None or found["clusterName"] != cluster:
            raise ResourceNotFoundException(clusterName=cluster, nodegroupName=None, fargateProfileName=None,
                                            addonName=None, message=f"Association {association_id} not found.")
        return found

    def describe_pod_identity_association(self):
        return ActionResult({"association": find_association(self)})

    def delete_pod_identity_association(self):
        association = find_association(self)
        del state(self.eks_backend)["associations"][association["associationId"]]
        return ActionResult({"association": association})

    def list_pod_identity_associations(self):
        cluster = self._get_param("name")
        cluster_or_404(self, cluster)
        summaries = [{k: a[k] for k in ("clusterName", "namespace", "serviceAccount", "associationArn", "associationId")}
                     for a in state(self.eks_backend)["associations"].values() if a["clusterName"] == cluster]
        return ActionResult({"associations": summaries})

    def find_entry(self) -> dict:
        cluster, principal = self._get_param("name"), self._get_param("principalArn")
        found = state(self.eks_backend)["access_entries"].get((cluster, principal))
        if found is None:
            raise ResourceNotFoundException(clusterName=cluster, nodegroupName=None, fargateProfileName=None,
                                            addonName=None,
                                            message=f"The specified access entry resource is not found: {principal}")
        return found

    def public(entry: dict) -> dict:
        return {k: v for k, v in entry.items() if k != "policies"}

    def create_access_entry(self):
        cluster, principal = self._get_param("name"), self._get_param("principalArn")
        cluster_or_404(self, cluster)
        now = datetime.now(timezone.utc)
        kind, _, name = principal.split(":")[-1].partition("/")          # role/<name> or user/<name>
        entry = {"clusterName": cluster, "principalArn": principal, "type": self._get_param("type") or "STANDARD",
                 "kubernetesGroups": self._get_param("kubernetesGroups") or [], "createdAt": now, "modifiedAt": now,
                 "accessEntryArn": arn(self, "access-entry", cluster, kind, self.current_account, name,
                                       "".join(random.choices(string.hexdigits.lower(), k=32))),
                 "username": self._get_param("username") or (
                     f"arn:aws:sts::{self.current_account}:assumed-role/{name}/{{{{SessionName}}}}" if kind == "role"
                     else principal),
                 "tags": self._get_param("tags") or {}, "policies": {}}
        state(self.eks_backend)["access_entries"][(cluster, principal)] = entry
        return ActionResult({"accessEntry": public(entry)})

    def describe_access_entry(self):
        return ActionResult({"accessEntry": public(find_entry(self))})

    def delete_access_entry(self):
        entry = find_entry(self)
        del state(self.eks_backend)["access_entries"][(entry["clusterName"], entry["principalArn"])]
        return ActionResult({})

    def list_access_entries(self):
        cluster = self._get_param("name")
        cluster_or_404(self, cluster)
        return ActionResult({"accessEntries": sorted(p for c, p in state(self.eks_backend)["access_entries"]
                                                     if c == cluster)})

    def associate_access_policy(self):
        entry, now = find_entry(self), datetime.now(timezone.utc)
        policy = {"policyArn": self._get_param("policyArn"), "accessScope": self._get_param("accessScope"),
                  "associatedAt": now, "modifiedAt": now}
        entry["policies"][policy["policyArn"]] = policy
        return ActionResult({"clusterName": entry["clusterName"], "principalArn": entry["principalArn"],
                             "associatedAccessPolicy": policy})

    def list_associated_access_policies(self):
        entry = find_entry(self)
        return ActionResult({"clusterName": entry["clusterName"], "principalArn": entry["principalArn"],
                             "associatedAccessPolicies": list(entry["policies"].values())})

    def disassociate_access_policy(self):
        entry = find_entry(self)
        if entry["policies"].pop(self._get_param("policyArn"), None) is None:
            raise ResourceNotFoundException(clusterName=entry["clusterName"], nodegroupName=None,
                                            fargateProfileName=None, addonName=None,
                                            message="The specified access policy association is not found")
        return ActionResult({})

    def tagged(backend: EKSBackend, resource_arn: str) -> dict | None:
        """The tag map of an add-on, association, access entry or node group with this ARN (None: none of them)."""
        for item in [*state(backend)["addons"].values(), *state(backend)["associations"].values(),
                     *state(backend)["access_entries"].values()]:
            if resource_arn in (item.get("addonArn"), item.get("associationArn"), item.get("accessEntryArn")):
                return item["tags"]
        for cluster in backend.clusters.values():
            for nodegroup in cluster.nodegroups.values():
                if nodegroup.arn == resource_arn:
                    return nodegroup.tags
        return None

    original_list, original_tag, original_untag = (EKSBackend.list_tags_for_resource, EKSBackend.tag_resource,
                                                   EKSBackend.untag_resource)

    def list_tags_for_resource(self, resource_arn):
        tags = tagged(self, resource_arn)
        return dict(tags) if tags is not None else original_list(self, resource_arn)

    def tag_resource(self, resource_arn, tags):
        found = tagged(self, resource_arn)
        return found.update(tags) if found is not None else original_tag(self, resource_arn, tags)

    def untag_resource(self, resource_arn, tag_keys):
        found = tagged(self, resource_arn)
        if found is None:
            return original_untag(self, resource_arn, tag_keys)
        for key in tag_keys if isinstance(tag_keys, list) else [tag_keys]:
            found.pop(key, None)

    original_create_nodegroup = EKSResponse.create_nodegroup

    def create_nodegroup(self):
        """AWS keeps a node group's updateConfig, and gives it no remoteAccess (SSH) and no diskSize unless asked
        (never diskSize with a launch template); moto 5.2 drops updateConfig and invents remoteAccess
        {"ec2SshKey": "eksKeypair"} and diskSize 20, so every plan would replace the node group."""
        response = original_create_nodegroup(self)
        nodegroup = response.result["nodegroup"]
        nodegroup.update_config = self._get_param("updateConfig")
        if not self._get_param("remoteAccess"):
            nodegroup.remote_access = None
        if self._get_param("launchTemplate") and not self._get_param("diskSize"):
            nodegroup.disk_size = None
        return response

    for func in (create_nodegroup, create_addon, describe_addon, delete_addon, list_addons, create_pod_identity_association,
                 describe_pod_identity_association, delete_pod_identity_association, list_pod_identity_associations,
                 create_access_entry, describe_access_entry, delete_access_entry, list_access_entries,
                 associate_access_policy, list_associated_access_policies, disassociate_access_policy):
        setattr(EKSResponse, func.__name__, func)
    EKSBackend.list_tags_for_resource = list_tags_for_resource
    EKSBackend.tag_resource = tag_resource
    EKSBackend.untag_resource = untag_resource


def apply_patches() -> list[str]:
    """Apply every patch; returns their names (what the server log prints at start-up)."""
    for func in PATCHES:
        func()
    return [func.__name__ for func in PATCHES]


def serialize_requests() -> None:
    """One request at a time. moto's server is threaded but its backends are plain dicts and lists: two requests that
    change one route table or security group at once (Terraform's parallel destroy) can lose one change, and the
    emulator then answers errors AWS never would (seen: DeleteVpcEndpoints -> InvalidRoute.NotFound for the endpoint's
    own prefix-list route; RevokeSecurityGroupEgress -> InvalidPermission.NotFound for a rule never revoked). AWS
    serializes these per resource; a lock around each request does it here, at a few milliseconds per request."""
    import threading

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    lock = threading.Lock()
    call = DomainDispatcherApplication.__call__

    def serialized(self, environ, start_response):
        with lock:
            # moto answers with a list, not a generator: the whole response is made inside the lock.
            return call(self, environ, start_response)

    DomainDispatcherApplication.__call__ = serialized


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
    # One connection per request (HTTP/1.0, no keep-alive). Under load, a request on a kept-alive connection that the
    # dev server is closing can be processed yet lose its response; the SDK then retries it, and a non-idempotent
    # call answers the retry with a false error (seen: InvalidPermission.Duplicate for a rule made once).
    from werkzeug.serving import WSGIRequestHandler
    WSGIRequestHandler.protocol_version = "HTTP/1.0"
    serialize_requests()
    names = apply_patches()
    print(f"emulator_server: moto with {len(names)} patches: {', '.join(names) or '-'}", flush=True)
    from moto.server import main as moto_main
    moto_main(["-H", args.host, "-p", str(args.port)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
