"""The front door: Route 53 zone, ACM certificate, ALB (HTTPS only; HTTP redirects; internet-facing, or internal
when `edge.internal`) with host rules to the Airflow API server and Grafana target groups, each authenticating the
request at the organisation's IdP first (`authenticate-oidc`, docs/access.md), and a WAFv2 web ACL in front of it.

Pods are registered in the target groups by the AWS Load Balancer Controller's TargetGroupBinding
(platform stack); this construct creates no Kubernetes objects. TLS terminates at the ALB with a TLS 1.3 policy
and starts again to the pods: the target groups and their health checks are HTTPS (the Airflow API server and
Grafana serve their platform-CA certificates). An ALB does not verify target certificates (AWS documents that it
accepts any, self-signed and expired included), so this hop is encrypted, not authenticated; what admits it is the
ALB's security group, the only source allowed on the two ports. docs/tls.md has every hop.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from cdktf import ITerraformDependable, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws import (
    acm_certificate,
    acm_certificate_validation,
    cloudwatch_log_group,
    data_aws_route53_zone,
    data_aws_secretsmanager_secret_version,
    lb,
    lb_listener,
    lb_listener_rule,
    lb_target_group,
    route53_record,
    route53_zone,
    security_group,
    vpc_security_group_egress_rule as egress,
    vpc_security_group_ingress_rule as ingress,
    wafv2_web_acl,
    wafv2_web_acl_association,
    wafv2_web_acl_logging_configuration,
)
from constructs import Construct

from ..core import iam, validation
from ..core.environment import AwsEnvironment
from ..core.tokens import is_unresolved
from ..core.validation import require
from .settings import DEFAULT_TLS_POLICY, WAF_MIN_RATE_LIMIT, EdgeSettings, ip_network  # noqa: F401
from .sso_settings import SsoSettings

SSO_SESSION_COOKIE = "AWSELBAuthSessionCookie"   # the ALB's default name, said once: docs/access.md names it
WAF_LOG_GROUP_PREFIX = "aws-waf-logs-"  # WAF delivers to CloudWatch Logs only for groups named like this
MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                       "AWSManagedRulesAmazonIpReputationList", "AWSManagedRulesAnonymousIpList")
# Anonymous-IP list: block anonymizers (Tor, VPN exits) but only count cloud-hosting addresses, so CI and
# users behind cloud egress still get in.
_RULE_OVERRIDES = {"AWSManagedRulesAnonymousIpList": [{"name": "HostingProviderIPList", "action_to_use": {"count": {}}}]}
_TG_NAME = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,30}[a-zA-Z0-9])?")


@dataclass(frozen=True)
class Backend:
    """One host behind the ALB: `<host>.<domain>` forwards to pod IPs on `port`."""
    host: str
    port: int
    health_check_path: str


BACKENDS = (Backend("airflow", 8080, "/api/v2/monitor/health"), Backend("grafana", 3000, "/api/health"))


@dataclass(frozen=True, kw_only=True)
class EdgeProps:
    name: str                                   # resource name prefix, e.g. 'airflow-dev'
    cluster_name: str                           # target groups are '<cluster_name>-<host>' (LB controller IAM scope)
    domain: str                                 # hosted zone; hosts are airflow.<domain> and grafana.<domain>
    vpc_id: str
    public_subnet_ids: tuple[str, ...]
    target_security_group_id: str               # the node/pod security group the ALB forwards to
    access_log_bucket: str                      # bucket name; ALB logs go under alb/
    logs_kms_key_arn: str
    sso: SsoSettings                            # the IdP every request is authenticated against (off: with a reason)
    private_subnet_ids: tuple[str, ...] = ()    # where an internal ALB (settings.internal) lives
    settings: EdgeSettings = field(default_factory=EdgeSettings)   # zone mode, names, who may connect, WAF, TLS
    log_retention_days: int = 30
    dual_stack: bool = False                    # only when the VPC and public subnets have IPv6
    deletion_protection: bool = True

    def __post_init__(self) -> None:
        validation.dns_name("domain", self.domain)
        for i, san in enumerate(self.settings.extra_sans):
            require(san.endswith(f".{self.domain}"), f"extra_sans[{i}]", san, f"is outside the zone {self.domain!r}",
                    f"use a name ending in '.{self.domain}' (the certificate is validated in that zone)")
        for backend in BACKENDS:
            tg = f"{self.cluster_name}-{backend.host}"
            require(_TG_NAME.fullmatch(tg) is not None, "cluster_name", self.cluster_name,
                    f"makes target group name {tg!r} invalid", "keep the cluster name at most 24 letters, digits, hyphens")
        validation.log_retention("log_retention_days", self.log_retention_days)
        if not is_unresolved(list(self.public_subnet_ids)):
            require(len(self.public_subnet_ids) >= 2, "public_subnet_ids", list(self.public_subnet_ids),
                    "has fewer than 2 subnets", "give one public subnet per AZ (an ALB needs two AZs)")
        if self.settings.internal and not is_unresolved(list(self.private_subnet_ids)):
            require(len(self.private_subnet_ids) >= 2, "private_subnet_ids", list(self.private_subnet_ids),
                    "has fewer than 2 subnets for an internal ALB", "give one private subnet per AZ")

    @property
    def subnet_ids(self) -> tuple[str, ...]:
        """Where the ALB's nodes are: the private subnets when internal, else the public ones."""
        return self.private_subnet_ids if self.settings.internal else self.public_subnet_ids

    @property
    def hosts(self) -> dict[str, str]:
        return {b.host: f"{b.host}.{self.domain}" for b in BACKENDS}

    @property
    def certificate_names(self) -> tuple[str, ...]:
        return (*self.hosts.values(), *self.settings.extra_sans)


class Edge(Construct):
    """Entry point. Listeners are HTTPS (TLS 1.3 policy) or a 301 to HTTPS; anything not addressed to a known host
    gets a 404; the WAF ACL filters every request first; the IdP authenticates every request to a host."""
    HTTPS, HTTP = 443, 80

    def __init__(self, scope: Construct, id_: str, *, props: EdgeProps,
                 depends_on: Sequence[ITerraformDependable] = ()) -> None:
        super().__init__(scope, id_)
        p = self.props = props
        self._zone(p)
        self._security_group(p)
        self.load_balancer = lb.Lb(
            self, "load-balancer", name=f"{p.name}-edge"[:32], load_balancer_type="application",
            internal=p.settings.internal, ip_address_type="dualstack" if p.dual_stack and not p.settings.internal
            else "ipv4", subnets=list(p.subnet_ids),
            security_groups=[self.security_group.id], drop_invalid_header_fields=True,
            enable_deletion_protection=p.deletion_protection, idle_timeout=60,
            access_logs=lb.LbAccessLogs(bucket=p.access_log_bucket, prefix=ALB_LOG_PREFIX, enabled=True),
            tags={"Name": f"{p.name}-edge"}, depends_on=list(depends_on) or None)
        self.load_balancer_arn: str = self.load_balancer.arn
        self.load_balancer_arn_suffix: str = self.load_balancer.arn_suffix   # CloudWatch 'LoadBalancer' dimension
        self.dns_name: str = self.load_balancer.dns_name
        self._certificate(p)
        self._listeners(p)
        self._records(p)
        self._waf(p)

    # ---- DNS and certificate --------------------------------------------------------------------

    def _zone(self, p: EdgeProps) -> None:
        if p.settings.zone_mode == "create":
            zone = route53_zone.Route53Zone(self, "zone", name=p.domain, comment=f"{p.name} front door",
                                            force_destroy=False)
            self.name_servers: list[str] | None = zone.name_servers
        else:
            zone = data_aws_route53_zone.DataAwsRoute53Zone(self, "zone", name=p.domain, private_zone=False)
            self.name_servers = None
        self.zone_id: str = zone.zone_id

    def _certificate(self, p: EdgeProps) -> None:
        names = p.certificate_names
        self.certificate = acm_certificate.AcmCertificate(
            self, "certificate", domain_name=names[0], subject_alternative_names=list(names[1:]),
            validation_method="DNS", key_algorithm="EC_prime256v1",
            options=acm_certificate.AcmCertificateOptions(certificate_transparency_logging_preference="ENABLED"),
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True), tags={"Name": f"{p.name}-edge"})
        # One record per certificate name, not a for_each over domain_validation_options: addresses stay stable
        # per host and every planned instance is a resource block. (A '*.x' SAN shares x's record: allow_overwrite.)
        options = (f"{{for dvo in aws_acm_certificate.{self.certificate.friendly_unique_id}.domain_validation_options"
                   " : dvo.domain_name => dvo}")
        ids = [*p.hosts, *(f"san-{i}" for i in range(len(p.settings.extra_sans)))]
        records = [route53_record.Route53Record(
            self, f"validation-{record_id}", zone_id=self.zone_id, ttl=60, allow_overwrite=True,
            name=f'${{{options}["{name}"].resource_record_name}}', type=f'${{{options}["{name}"].resource_record_type}}',
            records=[f'${{{options}["{name}"].resource_record_value}}'])
            for record_id, name in zip(ids, names)]
        self.validation = acm_certificate_validation.AcmCertificateValidation(
            self, "certificate-validation", certificate_arn=self.certificate.arn,
            validation_record_fqdns=[r.fqdn for r in records])
        # The listener uses the validated ARN, so it is created only once the certificate is issued.
        self.certificate_arn: str = self.validation.certificate_arn

    def _records(self, p: EdgeProps) -> None:
        types = ("A", "AAAA") if p.dual_stack and not p.settings.internal else ("A",)   # AAAA to an IPv4-only ALB would answer nothing
        for host, fqdn in p.hosts.items():
            for rtype in types:
                route53_record.Route53Record(
                    self, f"{host}-{rtype.lower()}", zone_id=self.zone_id, name=fqdn, type=rtype,
                    alias=route53_record.Route53RecordAlias(name=self.load_balancer.dns_name,
                                                            zone_id=self.load_balancer.zone_id,
                                                            evaluate_target_health=True))

    # ---- security group -------------------------------------------------------------------------

    def _security_group(self, p: EdgeProps) -> None:
        self.security_group = security_group.SecurityGroup(
            self, "security-group", name=f"{p.name}-edge", vpc_id=p.vpc_id,
            description=f"{p.name} ALB: HTTPS/HTTP from the allow-list, to the Airflow and Grafana pods only",
            tags={"Name": f"{p.name}-edge"})
        self.security_group_id: str = self.security_group.id
        for i, cidr in enumerate(p.settings.ingress_cidrs):
            family = "cidr_ipv6" if ip_network("ingress_cidrs", cidr).version == 6 else "cidr_ipv4"
            for port, why in ((self.HTTPS, "HTTPS"), (self.HTTP, "HTTP (redirected to HTTPS)")):
                ingress.VpcSecurityGroupIngressRule(
                    self, f"ingress-{port}-{i}", security_group_id=self.security_group.id, ip_protocol="tcp",
                    from_port=port, to_port=port, description=f"{why} from {cidr}", **{family: cidr})
        for backend in BACKENDS:
            egress.VpcSecurityGroupEgressRule(
                self, f"egress-{backend.host}", security_group_id=self.security_group.id, ip_protocol="tcp",
                referenced_security_group_id=p.target_security_group_id, from_port=backend.port, to_port=backend.port,
                description=f"To {backend.host} pods on {backend.port}")
        if p.sso.enabled:
            # authenticate-oidc: the ALB itself calls the IdP's token and user-info endpoints, whose addresses are
            # the IdP's to change (AWS ELB guide, "Authenticate users": allow outbound 443 to them).
            for family, cidr in (("cidr_ipv4", "0.0.0.0/0"), *((("cidr_ipv6", "::/0"),) if p.dual_stack else ())):
                egress.VpcSecurityGroupEgressRule(
                    self, f"egress-idp-{family.removeprefix('cidr_')}", security_group_id=self.security_group.id,
                    ip_protocol="tcp", from_port=self.HTTPS, to_port=self.HTTPS, **{family: cidr},
                    description="To the identity provider's token and user-info endpoints (HTTPS)")

    # ---- listeners and target groups ------------------------------------------------------------

    def _listeners(self, p: EdgeProps) -> None:
        self.target_groups: dict[str, lb_target_group.LbTargetGroup] = {}
        for backend in BACKENDS:
            self.target_groups[backend.host] = lb_target_group.LbTargetGroup(
                self, f"{backend.host}-target-group", name=f"{p.cluster_name}-{backend.host}", target_type="ip",
                port=backend.port, protocol="HTTPS", vpc_id=p.vpc_id, deregistration_delay="30",
                ip_address_type="ipv4",
                health_check=lb_target_group.LbTargetGroupHealthCheck(
                    enabled=True, path=backend.health_check_path, protocol="HTTPS", port="traffic-port",
                    matcher="200", interval=15, timeout=5, healthy_threshold=2, unhealthy_threshold=3),
                tags={"Name": f"{p.cluster_name}-{backend.host}"})
        self.target_group_arns: dict[str, str] = {host: tg.arn for host, tg in self.target_groups.items()}
        # CloudWatch 'TargetGroup' dimension values, by host
        self.target_group_arn_suffixes: dict[str, str] = {
            host: tg.arn_suffix for host, tg in self.target_groups.items()}
        self.https_listener = lb_listener.LbListener(
            self, "https-listener", load_balancer_arn=self.load_balancer.arn, port=self.HTTPS, protocol="HTTPS",
            ssl_policy=p.settings.tls_policy, certificate_arn=self.certificate_arn,
            default_action=[lb_listener.LbListenerDefaultAction(
                type="fixed-response", fixed_response=lb_listener.LbListenerDefaultActionFixedResponse(
                    content_type="text/plain", message_body="Not found", status_code="404"))])
        lb_listener.LbListener(
            self, "http-listener", load_balancer_arn=self.load_balancer.arn, port=self.HTTP, protocol="HTTP",
            default_action=[lb_listener.LbListenerDefaultAction(
                type="redirect", redirect=lb_listener.LbListenerDefaultActionRedirect(
                    protocol="HTTPS", port=str(self.HTTPS), status_code="HTTP_301"))])
        authenticate = self._authenticate(p)
        for priority, backend in enumerate(BACKENDS, start=1):
            lb_listener_rule.LbListenerRule(
                self, f"{backend.host}-rule", listener_arn=self.https_listener.arn, priority=priority * 10,
                condition=[lb_listener_rule.LbListenerRuleCondition(
                    host_header=lb_listener_rule.LbListenerRuleConditionHostHeader(values=[p.hosts[backend.host]]))],
                action=[*authenticate, lb_listener_rule.LbListenerRuleAction(
                    type="forward", order=len(authenticate) + 1, target_group_arn=self.target_groups[backend.host].arn)])

    def _authenticate(self, p: EdgeProps) -> list[lb_listener_rule.LbListenerRuleAction]:
        """The authenticate-oidc action every host rule runs before forwarding (none when SSO is off, with a reason).

        The client secret is read from Secrets Manager by a data source at plan time, so it is in no code, no
        synthesized JSON and no Helm values. It does land in Terraform state (the data source's result and the
        rule's `client_secret`): hashicorp/aws 5.100.0 gives the listener rule no write-only argument, so an
        ephemeral read could not reach it; Cognito would not help (its user pool client and IdP federation keep
        secrets in state too). The state bucket is KMS-encrypted and readable only by the deploy and plan roles."""
        if not p.sso.enabled:
            return []
        sso = p.sso
        secret = data_aws_secretsmanager_secret_version.DataAwsSecretsmanagerSecretVersion(
            self, "sso-client-secret", secret_id=sso.client_secret_name)
        self.sso_client_secret_name: str = sso.client_secret_name
        return [lb_listener_rule.LbListenerRuleAction(
            type="authenticate-oidc", order=1,
            authenticate_oidc=lb_listener_rule.LbListenerRuleActionAuthenticateOidc(
                issuer=sso.issuer_url, authorization_endpoint=sso.authorization_endpoint,
                token_endpoint=sso.token_endpoint, user_info_endpoint=sso.user_info_endpoint,
                client_id=sso.client_id, client_secret=secret.secret_string, scope=" ".join(sso.scopes),
                session_timeout=sso.session_timeout_seconds, session_cookie_name=SSO_SESSION_COOKIE,
                on_unauthenticated_request="authenticate"))]

    # ---- WAF ------------------------------------------------------------------------------------

    def _waf(self, p: EdgeProps) -> None:
        def visibility(metric: str) -> dict:
            return {"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True}

        rules = [wafv2_web_acl.Wafv2WebAclRule(
            name=group, priority=i, override_action=wafv2_web_acl.Wafv2WebAclRuleOverrideAction(none={}),
            statement={"managed_rule_group_statement": {
                "name": group, "vendor_name": "AWS",
                **({"rule_action_override": _RULE_OVERRIDES[group]} if group in _RULE_OVERRIDES else {})}},
            visibility_config=wafv2_web_acl.Wafv2WebAclRuleVisibilityConfig(**visibility(group)))
            for i, group in enumerate(MANAGED_RULE_GROUPS)]
        rules.append(wafv2_web_acl.Wafv2WebAclRule(
            name="rate-limit-per-ip", priority=len(rules), action=wafv2_web_acl.Wafv2WebAclRuleAction(block={}),
            statement={"rate_based_statement": {"limit": p.settings.waf_rate_limit, "aggregate_key_type": "IP",
                                                "evaluation_window_sec": 300}},
            visibility_config=wafv2_web_acl.Wafv2WebAclRuleVisibilityConfig(**visibility("rate-limit-per-ip"))))
        self.web_acl = wafv2_web_acl.Wafv2WebAcl(
            self, "web-acl", name=f"{p.name}-edge", scope="REGIONAL", description=f"{p.name} front door",
            default_action=wafv2_web_acl.Wafv2WebAclDefaultAction(allow={}), rule=rules,
            visibility_config=wafv2_web_acl.Wafv2WebAclVisibilityConfig(**visibility(f"{p.name}-edge")))
        wafv2_web_acl_association.Wafv2WebAclAssociation(
            self, "web-acl-association", resource_arn=self.load_balancer.arn, web_acl_arn=self.web_acl.arn)
        log_group = cloudwatch_log_group.CloudwatchLogGroup(
            self, "waf-log-group", name=waf_log_group_name(p.name), retention_in_days=p.log_retention_days,
            kms_key_id=p.logs_kms_key_arn)
        wafv2_web_acl_logging_configuration.Wafv2WebAclLoggingConfiguration(
            self, "waf-logging", resource_arn=self.web_acl.arn, log_destination_configs=[log_group.arn],
            redacted_fields=[wafv2_web_acl_logging_configuration.Wafv2WebAclLoggingConfigurationRedactedFields(
                single_header=wafv2_web_acl_logging_configuration.Wafv2WebAclLoggingConfigurationRedactedFieldsSingleHeader(
                    name="authorization"))])
        self.web_acl_arn: str = self.web_acl.arn
        self.waf_log_group_name: str = log_group.name


def waf_log_group_name(name: str) -> str:
    """WAF logs only to log groups whose name starts with 'aws-waf-logs-' (a key policy prefix uses this)."""
    return f"{WAF_LOG_GROUP_PREFIX}{name}"


ALB_LOG_PREFIX = "alb"


# Regions opened before August 2022 deliver ALB logs from a regional Elastic Load Balancing account, not the
# logdelivery service principal (AWS ELB User Guide, "Enable access logs": bucket policy per Region).
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
    "us-west-2": "797873946194", "af-south-1": "098369216593", "ap-east-1": "754344448648",
    "ap-south-1": "718504428378", "ap-northeast-3": "383597477331",
    "ap-northeast-2": "600734575887", "ap-southeast-1": "114774131450", "ap-southeast-2": "783225319266",
    "ap-northeast-1": "582318560864", "ca-central-1": "985666609251", "eu-central-1": "054676820928",
    "eu-west-1": "156460612806", "eu-west-2": "652711504416", "eu-south-1": "635631232127",
    "eu-west-3": "009996457667", "eu-north-1": "897822967062", "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
}


def alb_log_delivery_statements(environment: AwsEnvironment) -> tuple[dict, ...]:
    """Access-log bucket policy statements letting ELB deliver this account's ALB logs under alb/ (the bucket
    construct substitutes BUCKET_ARN): the service principal, plus the Region's ELB account where it has one."""
    resource = [f"BUCKET_ARN/{ALB_LOG_PREFIX}/AWSLogs/{environment.account_id}/*"]
    statements = [iam.statement("AlbAccessLogDelivery", ["s3:PutObject"], resource,
                                principal={"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
                                condition={"StringEquals": {"aws:SourceAccount": environment.account_id}})]
    if environment.region in ELB_LOG_ACCOUNTS:
        statements.append(iam.statement(
            "AlbAccessLogDeliveryRegionalAccount", ["s3:PutObject"], resource,
            principal={"AWS": f"arn:{environment.partition}:iam::{ELB_LOG_ACCOUNTS[environment.region]}:root"}))
    return tuple(statements)
