"""The front door construct: DNS + certificate, ALB listeners and rules, security groups, WAF."""
from __future__ import annotations


import pytest

from modules.aws.edge import Edge, EdgeProps, alb_log_delivery_statements
from modules.aws.sso_settings import SsoSettings
from modules.core.environment import AwsEnvironment
from tests.conftest import make_props, only, synth

IDP = "https://idp.example.com/oauth2/default"
SSO = SsoSettings(issuer_url=IDP, authorization_endpoint=f"{IDP}/v1/authorize", token_endpoint=f"{IDP}/v1/token",
                  user_info_endpoint=f"{IDP}/v1/userinfo", client_id="consoles-dev",
                  client_secret_name="airflow-dev/sso/client-secret", airflow_roles={"admins": "Admin"},
                  grafana_roles={"admins": "Admin"})
BASE = dict(name="airflow-dev", cluster_name="airflow-dev", domain="dev.data.example.com", vpc_id="vpc-1",
            public_subnet_ids=("subnet-a", "subnet-b"), private_subnet_ids=("subnet-p1", "subnet-p2"),
            target_security_group_id="sg-nodes", access_log_bucket="logs-bucket",
            logs_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/logs", sso=SSO)


def build(stack, **overrides):
    Edge(stack, "edge", props=make_props(EdgeProps, **{**BASE, **overrides}))
    return synth(stack)


def test_certificate_covers_both_hosts_and_sans_and_is_dns_validated_in_the_looked_up_zone(stack):
    doc = build(stack, extra_sans=("api.dev.data.example.com",))
    res = doc["resource"]
    (zone,) = doc["data"]["aws_route53_zone"].values()
    assert (zone["name"], zone["private_zone"]) == ("dev.data.example.com", False) and "aws_route53_zone" not in res
    _, cert = only(res, "aws_acm_certificate")
    assert (cert["domain_name"], cert["subject_alternative_names"], cert["validation_method"]) == (
        "airflow.dev.data.example.com", ["grafana.dev.data.example.com", "api.dev.data.example.com"], "DNS")
    _, validation = only(res, "aws_acm_certificate_validation")
    records = {k: r for k, r in res["aws_route53_record"].items() if "_validation-" in k}
    assert len(records) == 3
    by_name = {r["name"].split('["')[1].split('"]')[0]: (k, r) for k, r in records.items()}
    assert set(by_name) == {"airflow.dev.data.example.com", "grafana.dev.data.example.com", "api.dev.data.example.com"}
    for record_id, record in by_name.values():
        assert "domain_validation_options" in record["name"] and record["name"].endswith(".resource_record_name}")
        assert f"${{aws_route53_record.{record_id}.fqdn}}" in validation["validation_record_fqdns"]
    _, https = [(k, v) for k, v in res["aws_lb_listener"].items() if v["port"] == 443][0]
    assert https["certificate_arn"].endswith("certificate_arn}") and "aws_acm_certificate_validation." in https["certificate_arn"]


def test_created_zone_and_alias_records_per_host(stack):
    res = build(stack, zone_mode="create", dual_stack=True)["resource"]
    _, zone = only(res, "aws_route53_zone")
    assert zone["name"] == "dev.data.example.com"
    aliases = sorted((r["name"], r["type"]) for r in res["aws_route53_record"].values() if "alias" in r)
    assert aliases == [("airflow.dev.data.example.com", "A"), ("airflow.dev.data.example.com", "AAAA"),
                       ("grafana.dev.data.example.com", "A"), ("grafana.dev.data.example.com", "AAAA")]
    _, alb = only(res, "aws_lb")
    assert alb["ip_address_type"] == "dualstack"


def test_ipv4_only_alb_gets_only_a_records(stack):
    res = build(stack)["resource"]
    assert sorted(r["type"] for r in res["aws_route53_record"].values() if "alias" in r) == ["A", "A"]


def test_alb_is_public_hardened_and_logs_under_alb_prefix(stack):
    res = build(stack, deletion_protection=False)["resource"]
    _, alb = only(res, "aws_lb")
    assert (alb["internal"], alb["load_balancer_type"], alb["subnets"]) == (False, "application", ["subnet-a", "subnet-b"])
    assert alb["drop_invalid_header_fields"] is True and alb["enable_deletion_protection"] is False
    assert alb["access_logs"] == {"bucket": "logs-bucket", "prefix": "alb", "enabled": True}


def test_listeners_are_https_with_tls13_or_a_301_redirect_and_default_404(stack):
    res = build(stack)["resource"]
    by_port = {l["port"]: l for l in res["aws_lb_listener"].values()}
    assert set(by_port) == {80, 443}
    https, http = by_port[443], by_port[80]
    assert (https["protocol"], https["ssl_policy"]) == ("HTTPS", "ELBSecurityPolicy-TLS13-1-2-2021-06")
    (default,) = https["default_action"]
    assert (default["type"], default["fixed_response"]["status_code"]) == ("fixed-response", "404")
    (redirect,) = http["default_action"]
    assert redirect["type"] == "redirect" and redirect["redirect"] == {"protocol": "HTTPS", "port": "443",
                                                                       "status_code": "HTTP_301"}


def test_host_rules_forward_to_ip_target_groups_named_for_the_cluster(stack):
    res = build(stack)["resource"]
    groups = {f"${{aws_lb_target_group.{k}.arn}}": g for k, g in res["aws_lb_target_group"].items()}
    routes = {}
    for rule in res["aws_lb_listener_rule"].values():
        (cond,) = rule["condition"]
        authenticate, action = sorted(rule["action"], key=lambda a: a["order"])
        assert (authenticate["type"], action["type"]) == ("authenticate-oidc", "forward")
        tg = groups[action["target_group_arn"]]
        routes[tuple(cond["host_header"]["values"])] = (tg["name"], tg["target_type"], tg["port"],
                                                        tg["health_check"]["path"], tg["health_check"]["matcher"])
    assert routes == {
        ("airflow.dev.data.example.com",): ("airflow-dev-airflow", "ip", 8080, "/api/v2/monitor/health", "200"),
        ("grafana.dev.data.example.com",): ("airflow-dev-grafana", "ip", 3000, "/api/health", "200")}


def test_target_groups_and_their_health_checks_reach_the_pods_over_https(stack):
    groups = build(stack)["resource"]["aws_lb_target_group"].values()
    assert sorted((g["name"], g["protocol"], g["health_check"]["protocol"], g["health_check"]["port"])
                  for g in groups) == [("airflow-dev-airflow", "HTTPS", "HTTPS", "traffic-port"),
                                       ("airflow-dev-grafana", "HTTPS", "HTTPS", "traffic-port")]


def test_alb_security_group_admits_only_the_allow_list_and_reaches_only_the_pods(stack):
    res = build(stack, ingress_cidrs=("203.0.113.0/24", "2001:db8::/32"))["resource"]
    ingress = sorted((r.get("cidr_ipv4") or r.get("cidr_ipv6"), r["from_port"])
                     for r in res["aws_vpc_security_group_ingress_rule"].values())
    assert ingress == [("2001:db8::/32", 80), ("2001:db8::/32", 443), ("203.0.113.0/24", 80), ("203.0.113.0/24", 443)]
    egress = sorted((r.get("referenced_security_group_id") or r.get("cidr_ipv4"), r["from_port"])
                    for r in res["aws_vpc_security_group_egress_rule"].values())
    # 443 anywhere: the ALB calls the IdP's token and user-info endpoints itself (authenticate-oidc).
    assert egress == [("0.0.0.0/0", 443), ("sg-nodes", 3000), ("sg-nodes", 8080)]


def test_waf_has_managed_groups_rate_limit_association_and_logging(stack):
    res = build(stack, waf_rate_limit=500, log_retention_days=90)["resource"]
    _, acl = only(res, "aws_wafv2_web_acl")
    assert acl["scope"] == "REGIONAL"
    managed = [r["statement"]["managed_rule_group_statement"]["name"] for r in acl["rule"]
               if "managed_rule_group_statement" in r["statement"]]
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
            "AWSManagedRulesAmazonIpReputationList"} <= set(managed)
    (rate,) = [r for r in acl["rule"] if "rate_based_statement" in r["statement"]]
    assert (rate["statement"]["rate_based_statement"]["limit"], rate["action"]) == (500, {"block": {}})
    (acl_id,) = res["aws_wafv2_web_acl"]
    _, assoc = only(res, "aws_wafv2_web_acl_association")
    assert assoc["web_acl_arn"] == f"${{aws_wafv2_web_acl.{acl_id}.arn}}" and "aws_lb." in assoc["resource_arn"]
    (group_id, group), = res["aws_cloudwatch_log_group"].items()
    assert (group["name"], group["retention_in_days"], group["kms_key_id"]) == (
        "aws-waf-logs-airflow-dev", 90, BASE["logs_kms_key_arn"])
    _, logging = only(res, "aws_wafv2_web_acl_logging_configuration")
    assert logging["log_destination_configs"] == [f"${{aws_cloudwatch_log_group.{group_id}.arn}}"]


def test_alb_log_delivery_statements_are_scoped_to_the_prefix_and_account():
    service, regional = alb_log_delivery_statements(AwsEnvironment(account_id="123456789012", region="eu-west-1"))
    assert service["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}
    assert service["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
    # eu-west-1 predates the service principal: its ELB account delivers the logs.
    assert regional["Principal"] == {"AWS": "arn:aws:iam::156460612806:root"}
    for stmt in (service, regional):
        assert stmt["Resource"] == ["BUCKET_ARN/alb/AWSLogs/123456789012/*"] and stmt["Action"] == ["s3:PutObject"]


def test_newer_regions_use_only_the_log_delivery_service_principal():
    (only,) = alb_log_delivery_statements(AwsEnvironment(account_id="123456789012", region="ap-southeast-5"))
    assert only["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}


@pytest.mark.parametrize("overrides,match", [
    ({"domain": "bad..example.com"}, r"domain='bad\.\.example\.com' is not a valid DNS"),
    ({"extra_sans": ("api.example.org",)}, r"extra_sans\[0\]='api\.example\.org' is outside the zone"),
    ({"ingress_cidrs": ("203.0.113.0/24", "")}, r"ingress_cidrs\[1\]='' is empty"),
    ({"ingress_cidrs": ()}, r"ingress_cidrs=\[\] is empty"),
    ({"ingress_cidrs": ("10.0.0.1/8",)}, r"ingress_cidrs\[0\]='10\.0\.0\.1/8' is not a valid"),
    ({"waf_rate_limit": 9}, r"waf_rate_limit=9 is outside"),
    ({"tls_policy": "ELBSecurityPolicy-2016-08"}, r"is not a TLS 1\.3 ELB security policy"),
    ({"zone_mode": "import"}, r"zone_mode='import' is not a hosted-zone mode"),
    ({"cluster_name": "a-very-long-cluster-name-over-24"}, r"makes target group name"),
])
def test_bad_props_fail_fast_naming_value_and_fix(overrides, match):
    with pytest.raises(ValueError, match=match):
        make_props(EdgeProps, **{**BASE, **overrides})


def test_every_host_rule_authenticates_at_the_idp_before_forwarding_with_the_secret_from_secrets_manager(stack):
    doc = build(stack, sso=SsoSettings(**{**SSO.__dict__, "scopes": ("openid", "email", "groups"),
                                          "session_timeout_seconds": 3600}))
    (secret_id, secret), = doc["data"]["aws_secretsmanager_secret_version"].items()
    assert secret["secret_id"] == "airflow-dev/sso/client-secret"
    rules = doc["resource"]["aws_lb_listener_rule"].values()
    assert len(rules) == 2
    for rule in rules:
        first, second = sorted(rule["action"], key=lambda a: a["order"])
        assert (first["order"], first["type"], second["order"], second["type"]) == (1, "authenticate-oidc", 2, "forward")
        assert first["authenticate_oidc"] == {
            "issuer": IDP, "authorization_endpoint": f"{IDP}/v1/authorize", "token_endpoint": f"{IDP}/v1/token",
            "user_info_endpoint": f"{IDP}/v1/userinfo", "client_id": "consoles-dev",
            "client_secret": f"${{data.aws_secretsmanager_secret_version.{secret_id}.secret_string}}",
            "scope": "openid email groups", "session_timeout": 3600, "session_cookie_name": "AWSELBAuthSessionCookie",
            "on_unauthenticated_request": "authenticate"}


def test_sso_off_with_a_reason_forwards_directly_and_opens_no_egress_to_the_internet(stack):
    doc = build(stack, sso=SsoSettings(enabled=False, off_reason="emulator rehearsal: no IdP"))
    assert "aws_secretsmanager_secret_version" not in doc.get("data", {})
    assert [[a["type"] for a in r["action"]] for r in doc["resource"]["aws_lb_listener_rule"].values()] == [
        ["forward"], ["forward"]]
    assert all("cidr_ipv4" not in r for r in doc["resource"]["aws_vpc_security_group_egress_rule"].values())


def test_internal_alb_lives_in_the_private_subnets_with_ipv4_records_only(stack):
    res = build(stack, internal=True, dual_stack=True)["resource"]
    _, alb = only(res, "aws_lb")
    assert (alb["internal"], alb["subnets"], alb["ip_address_type"]) == (True, ["subnet-p1", "subnet-p2"], "ipv4")
    assert sorted(r["type"] for r in res["aws_route53_record"].values() if "alias" in r) == ["A", "A"]


def test_internal_alb_needs_two_private_subnets():
    with pytest.raises(ValueError, match=r"private_subnet_ids=\['subnet-p1'\] has fewer than 2 subnets"):
        make_props(EdgeProps, **{**BASE, "private_subnet_ids": ("subnet-p1",)}, internal=True)
