"""Airflow's sign-in settings (modules/platform/airflow_auth.py): the generated webserver_config.py and chart values."""
from __future__ import annotations

import ast
import dataclasses

import pytest

from modules.aws.sso_settings import SsoSettings
from modules.core.validation import ConfigError
from modules.platform.airflow_auth import FAB_AUTH_MANAGER, auth_values, webserver_config, with_auth

IDP = "https://idp.example.com"
SSO = SsoSettings(issuer_url=IDP, authorization_endpoint=f"{IDP}/authorize", token_endpoint=f"{IDP}/token",
                  user_info_endpoint=f"{IDP}/userinfo", client_id="consoles", client_secret_name="x/sso",
                  airflow_roles={"admins": "Admin", "ops": "Op"}, grafana_roles={"admins": "Admin"},
                  session_timeout_seconds=7200)
ALB = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/airflow-dev-edge/0123456789abcdef"


def generated_settings(text: str) -> dict:
    (assign,) = [n for n in ast.parse(text).body if isinstance(n, ast.Assign) and n.targets[0].id == "SSO"]
    return ast.literal_eval(assign.value)


def test_config_names_this_alb_as_signer_and_maps_groups_to_roles_without_any_secret():
    text = webserver_config(sso=SSO, alb_arn=ALB, region="eu-west-1")
    assert generated_settings(text) == {
        "signer": ALB, "region": "eu-west-1", "client_id": "consoles", "issuer": IDP, "username_claim": "email",
        "groups_claim": "groups", "roles_mapping": {"admins": ["Admin"], "ops": ["Op"]}, "local_login": False}
    assert "AUTH_TYPE = AUTH_REMOTE_USER" in text and "SECURITY_MANAGER_CLASS = AlbSecurityManager" in text
    assert "{{" not in text       # the chart passes apiServerConfig through `tpl`: no Go template may hide in it
    assert "x/sso" not in text    # the client secret's name is not needed here, let alone its value


def test_values_set_the_fab_auth_manager_and_bound_sessions_and_tokens_by_the_albs_session():
    values = auth_values(sso=SSO, alb_arn=ALB, region="eu-west-1")
    assert values["config"] == {
        "core": {"auth_manager": FAB_AUTH_MANAGER},
        "api_auth": {"jwt_expiration_time": 3600, "jwt_cli_expiration_time": 3600},
        "fab": {"session_lifetime_minutes": 120, "session_max_lifetime_minutes": 120, "enable_proxy_fix": "True",
                "cookie_secure": "True"}}


@pytest.mark.parametrize(("session", "token"), [(60, 60), (1800, 1800), (28800, 3600), (604800, 3600)])
def test_airflow_tokens_never_outlive_the_alb_session_nor_an_hour(session, token):
    sso = dataclasses.replace(SSO, session_timeout_seconds=session)
    (api_auth, fab) = (auth_values(sso=sso, alb_arn=ALB, region="eu-west-1")["config"][k] for k in ("api_auth", "fab"))
    assert (api_auth["jwt_expiration_time"], api_auth["jwt_cli_expiration_time"]) == (token, token)
    assert fab["session_max_lifetime_minutes"] == fab["session_lifetime_minutes"] == session // 60


def test_merging_adds_to_the_release_values_and_never_overrides_them():
    merged = with_auth({"apiServer": {"replicas": 2}, "config": {"api": {"base_url": "x"}}}, sso=SSO, alb_arn=ALB,
                       region="eu-west-1")
    assert merged["apiServer"]["replicas"] == 2 and merged["config"]["api"] == {"base_url": "x"}
    assert "apiServerConfig" in merged["apiServer"]
    with pytest.raises(AssertionError, match="would override config.core.auth_manager"):
        with_auth({"config": {"core": {"auth_manager": "other"}}}, sso=SSO, alb_arn=ALB, region="eu-west-1")


def test_there_is_no_airflow_config_without_single_sign_on():
    with pytest.raises(ConfigError, match=r"sso.enabled=False is off"):
        webserver_config(sso=SsoSettings(enabled=False, off_reason="x"), alb_arn=ALB, region="eu-west-1")
