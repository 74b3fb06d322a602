"""Cross-cutting Aspects: tags on every taggable resource, and a policy pack (in the spirit of cdk-nag)
that refuses insecure configurations at synth.

The policy pack visits each stack once and evaluates its rules on the stack's resolved Terraform
document, so a rule sees final values and can relate resources (a bucket and its encryption
configuration, a security group and the load balancer that uses it). Findings are collected, not
raised from inside the jsii callback; `PolicyPack.raise_for_findings()` turns them into one
`PolicyViolation` whose lines name the rule, the Terraform address and the fix.

Add a rule by decorating a function `(doc) -> Iterable[(address, detail)]` with `@rule(id, message)`.
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator

import jsii
from cdktf import IAspect, TerraformResource, TerraformStack
from constructs import Construct, IConstruct

Document = dict[str, Any]
Check = Callable[[Document], Iterable[tuple[str, str]]]


@jsii.implements(IAspect)
class Tagging:
    """Merge the environment's tags into every resource whose schema takes `tags`. They are governance tags
    (environment, owner, cost centre): they win over a resource's own value for the same key, and other
    own tags (e.g. Name) stay. Applied as an override: one jsii call per resource, no read-back."""

    def __init__(self, tags: dict[str, str]) -> None:
        self._tags = dict(tags)

    def visit(self, node: IConstruct) -> None:
        # `tags_input` exists on exactly the bindings whose Terraform schema has a `tags` argument.
        if isinstance(node, TerraformResource) and hasattr(type(node), "tags_input"):
            node.add_override("tags", self._tags)

    def tag_document(self, doc: Document) -> None:
        """The same merge on a synthesized document, in Python (what `GovernedStack` does at synth): one
        Node->Python callback per stack instead of one override call per resource."""
        overridden = doc.setdefault("//", {}).setdefault("metadata", {}).get("overrides", {})
        for rtype, bodies in (doc.get("resource") or {}).items():
            if not _takes_tags(rtype):
                continue
            for body in bodies.values():
                own = body.get("tags")
                body["tags"] = {**own, **self._tags} if isinstance(own, dict) else dict(self._tags)
                overridden.setdefault(rtype, []).append("tags")   # as cdktf records an add_override
        if overridden:
            doc["//"]["metadata"]["overrides"] = overridden


@jsii.implements(IAspect)
class PermissionsBoundary:
    """Set one permissions boundary on every IAM role (`aws_iam_role`) of a stack: the workload boundary the
    environment's deploy role may create roles only with (modules/aws/ci_roles.py). Done once here, so no construct
    can forget it and a role without it fails at apply (the deploy is denied), not silently."""

    def __init__(self, policy_arn: str) -> None:
        self.policy_arn = policy_arn

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, TerraformResource) and node.terraform_resource_type == "aws_iam_role":
            node.add_override("permissions_boundary", self.policy_arn)

    def apply_document(self, doc: Document) -> None:
        """The same on a synthesized document (what `GovernedStack` does at synth)."""
        roles = (doc.get("resource") or {}).get("aws_iam_role") or {}
        if roles:
            overridden = doc.setdefault("//", {}).setdefault("metadata", {}).setdefault("overrides", {})
            for body in roles.values():
                body["permissions_boundary"] = self.policy_arn
                overridden.setdefault("aws_iam_role", []).append("permissions_boundary")   # as add_override records


@lru_cache(maxsize=None)
def _takes_tags(rtype: str) -> bool:
    """Whether the binding class of a Terraform resource type has a `tags` argument (`tags_input`), looked up
    in the already imported binding module (`aws_s3_bucket` -> cdktf_cdktf_provider_aws.s3_bucket)."""
    provider, _, name = rtype.partition("_")
    module = sys.modules.get(f"cdktf_cdktf_provider_{provider}.{name}")
    return module is not None and any(
        isinstance(cls, type) and issubclass(cls, TerraformResource) and hasattr(cls, "tags_input")
        for cls in vars(module).values())


class GovernedStack(TerraformStack):
    """A TerraformStack that passes its synthesized document through Python once, at synth: tags merged by
    `Tagging.tag_document`, rules evaluated by `PolicyPack.check_document`. Same output as the Aspects, at one
    jsii callback per stack (the Aspects cost one call per resource, and the policy pack a second resolve)."""

    def __init__(self, scope: Construct, id_: str) -> None:
        super().__init__(scope, id_)
        self._stack_name = id_
        self._tagging: list[Tagging] = []
        self._policies: list[PolicyPack] = []
        self._boundaries: list[PermissionsBoundary] = []

    def govern(self, *, tagging: Tagging | None = None, policy: PolicyPack | None = None,
               boundary: PermissionsBoundary | None = None) -> None:
        if tagging is not None:
            self._tagging.append(tagging)
        if policy is not None:
            self._policies.append(policy)
        if boundary is not None:
            self._boundaries.append(boundary)

    def to_terraform(self) -> Any:
        doc = super().to_terraform()
        for boundary in self._boundaries:
            boundary.apply_document(doc)
        for tagging in self._tagging:
            tagging.tag_document(doc)
        for policy in self._policies:
            policy.check_document(doc, self._stack_name)
        return doc


def govern(stack: TerraformStack, *, tagging: Tagging, policy: PolicyPack,
           boundary: PermissionsBoundary | None = None) -> None:
    """Tag, bound and check a finished stack: at synth for a GovernedStack, else now through the Aspects."""
    if isinstance(stack, GovernedStack):
        stack.govern(tagging=tagging, policy=policy, boundary=boundary)
    else:
        apply_now(stack, *([boundary] if boundary else []), tagging, policy)


def apply_now(scope: IConstruct, *aspects: IAspect) -> None:
    """Run aspects over `scope` and all its descendants now, walking the tree from Python.

    Equivalent to `Aspects.of(scope).add(...)` for a finished tree (cdktf invokes aspects at the start of
    synth), but costs one jsii call for the whole tree instead of one Node->Python callback (~1 ms) per
    construct: the app uses it once construction is complete; library users can use either."""
    for node in scope.node.find_all():
        for aspect in aspects:
            aspect.visit(node)


@dataclass(frozen=True)
class Rule:
    id: str
    message: str
    check: Check


@dataclass(frozen=True)
class Finding:
    rule_id: str
    stack: str
    address: str
    message: str

    def __str__(self) -> str:
        return f"policy {self.rule_id}: {self.stack}: {self.address}: {self.message}"


RULES: list[Rule] = []


def rule(rule_id: str, message: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        RULES.append(Rule(rule_id, message, check))
        return check
    return register


class PolicyViolation(ValueError):
    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__("\n".join(map(str, findings)))


@jsii.implements(IAspect)
class PolicyPack:
    def __init__(self, rules: Iterable[Rule] | None = None) -> None:
        self.rules = list(RULES if rules is None else rules)
        self.findings: list[Finding] = []

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, TerraformStack):
            self.check_document(node.to_terraform(), node.node.id)

    def check_document(self, doc: Document, stack: str) -> None:
        self.findings.extend(self.evaluate(doc, stack))

    def evaluate(self, doc: Document, stack: str) -> Iterator[Finding]:
        for r in self.rules:
            for address, detail in r.check(doc):
                yield Finding(r.id, stack, address, f"{r.message} ({detail})" if detail else r.message)

    def raise_for_findings(self) -> None:
        if self.findings:
            raise PolicyViolation(self.findings)


# ---- helpers over a resolved Terraform document ------------------------------------------------

def resources(doc: Document, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for rtype in types:
        for name, body in (doc.get("resource", {}).get(rtype) or {}).items():
            yield f"{rtype}.{name}", body


def referenced(value: Any, rtype: str) -> set[str]:
    """Addresses of `rtype` resources referenced anywhere in `value` (e.g. '${aws_s3_bucket.x.id}')."""
    text = str(value)
    return {f"{rtype}.{m}" for m in re.findall(rf"\$\{{{re.escape(rtype)}\.([A-Za-z0-9_-]+)\.", text)}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _blocks(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    return [v for v in value or [] if isinstance(v, dict)]


# ---- rules -------------------------------------------------------------------------------------

_ENCRYPTED_FLAG = {
    "aws_db_instance": "storage_encrypted", "aws_rds_cluster": "storage_encrypted",
    "aws_elasticache_replication_group": "at_rest_encryption_enabled", "aws_ebs_volume": "encrypted",
    "aws_efs_file_system": "encrypted",
}
_KMS_KEY = {"aws_cloudwatch_log_group": "kms_key_id", "aws_sqs_queue": "kms_master_key_id",
            "aws_sns_topic": "kms_master_key_id", "aws_secretsmanager_secret": "kms_key_id"}
_LOG_BUCKET_SSE_S3 = "AES256"


@rule("AF-ENC-1", "storage must be encrypted at rest (customer KMS key); fix: use the module's encrypted construct")
def unencrypted_storage(doc: Document) -> Iterator[tuple[str, str]]:
    for rtype, flag in _ENCRYPTED_FLAG.items():
        for address, body in resources(doc, rtype):
            if not _truthy(body.get(flag)):
                yield address, f"{flag} is not true"
    for rtype, key in _KMS_KEY.items():
        for address, body in resources(doc, rtype):
            if not body.get(key):
                yield address, f"{key} is not set"
    encrypted: set[str] = set()
    for _, body in resources(doc, "aws_s3_bucket_server_side_encryption_configuration"):
        defaults = [d for r in _blocks(body.get("rule")) for d in _blocks(r.get("apply_server_side_encryption_by_default"))]
        kms = any(d.get("sse_algorithm") in ("aws:kms", "aws:kms:dsse") and d.get("kms_master_key_id") for d in defaults)
        # SSE-S3 is accepted only where AWS log delivery requires it (access-log buckets, see storage.py).
        log_target = any(d.get("sse_algorithm") == _LOG_BUCKET_SSE_S3 for d in defaults) and \
            _is_log_target(doc, body.get("bucket"))
        if kms or log_target:
            encrypted |= referenced(body.get("bucket"), "aws_s3_bucket")
    for address, _ in resources(doc, "aws_s3_bucket"):
        if address not in encrypted:
            yield address, "no SSE-KMS default encryption configuration references it"
    for address, body in resources(doc, "aws_launch_template"):
        for mapping in _blocks(body.get("block_device_mappings")):
            for ebs in _blocks(mapping.get("ebs")):
                if not _truthy(ebs.get("encrypted")):
                    yield address, f"block device {mapping.get('device_name')} is not encrypted"


def _is_log_target(doc: Document, bucket_ref: Any) -> bool:
    buckets = referenced(bucket_ref, "aws_s3_bucket")
    return any(referenced(body.get("target_bucket"), "aws_s3_bucket") & buckets
               for _, body in resources(doc, "aws_s3_bucket_logging"))


@rule("AF-S3-1", "S3 buckets must block all public access; fix: add a public access block with all four settings true")
def public_bucket(doc: Document) -> Iterator[tuple[str, str]]:
    blocked: set[str] = set()
    for _, body in resources(doc, "aws_s3_bucket_public_access_block"):
        if all(_truthy(body.get(k)) for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                              "restrict_public_buckets")):
            blocked |= referenced(body.get("bucket"), "aws_s3_bucket")
    for address, body in resources(doc, "aws_s3_bucket"):
        if address not in blocked:
            yield address, "no complete public access block references it"
    for address, body in resources(doc, "aws_s3_bucket_acl"):
        if str(body.get("acl", "")).startswith("public"):
            yield address, f"acl {body['acl']!r}"


_ANYWHERE = {"0.0.0.0/0", "::/0"}
_ALB_PORTS = {80, 443}


@rule("AF-NET-1", "no security-group ingress from 0.0.0.0/0 or ::/0 except 80/443 on a load balancer's group; "
      "fix: admit a security group or a narrower CIDR")
def open_ingress(doc: Document) -> Iterator[tuple[str, str]]:
    lb_groups: set[str] = set()
    for _, body in resources(doc, "aws_lb", "aws_alb"):
        lb_groups |= referenced(body.get("security_groups"), "aws_security_group")

    def allowed(group_ref: Any, from_port: Any, to_port: Any) -> bool:
        return bool(referenced(group_ref, "aws_security_group") & lb_groups) and from_port == to_port \
            and from_port in _ALB_PORTS

    for address, body in resources(doc, "aws_vpc_security_group_ingress_rule"):
        if {body.get("cidr_ipv4"), body.get("cidr_ipv6")} & _ANYWHERE and \
                not allowed(body.get("security_group_id"), body.get("from_port"), body.get("to_port")):
            yield address, f"ports {body.get('from_port')}-{body.get('to_port')} open to the internet"
    for address, body in resources(doc, "aws_security_group_rule"):
        cidrs = set(body.get("cidr_blocks") or []) | set(body.get("ipv6_cidr_blocks") or [])
        if body.get("type") == "ingress" and cidrs & _ANYWHERE \
                and not allowed(body.get("security_group_id"), body.get("from_port"), body.get("to_port")):
            yield address, f"ports {body.get('from_port')}-{body.get('to_port')} open to the internet"
    for address, body in resources(doc, "aws_security_group", "aws_default_security_group"):
        own = "${" + address + ".id}"
        for block in _blocks(body.get("ingress")):
            cidrs = set(block.get("cidr_blocks") or []) | set(block.get("ipv6_cidr_blocks") or [])
            if cidrs & _ANYWHERE and not allowed(own, block.get("from_port"), block.get("to_port")):
                yield address, f"inline ingress {block.get('from_port')}-{block.get('to_port')} open to the internet"


@rule("AF-LOG-1", "log groups must have a retention period; fix: set retention_in_days from the environment config")
def missing_log_retention(doc: Document) -> Iterator[tuple[str, str]]:
    for address, body in resources(doc, "aws_cloudwatch_log_group"):
        if not body.get("retention_in_days"):
            yield address, "retention_in_days is not set (logs would be kept forever)"


@rule("AF-IAM-1", "IAM role policies must grant something (IAM rejects an empty policy); fix: grant the workload "
                  "what it calls through the resource's grant method (e.g. AirflowBuckets.grant_airflow)")
def empty_role_policy(doc: Document) -> Iterator[tuple[str, str]]:
    for address, body in resources(doc, "aws_iam_role_policy"):
        policy = body.get("policy")
        try:
            statements = json.loads(policy).get("Statement") if isinstance(policy, str) else None
        except json.JSONDecodeError:
            continue                 # a Terraform expression (e.g. jsonencode(...)): Terraform checks it
        if statements == []:
            yield address, "its policy has no statements"
