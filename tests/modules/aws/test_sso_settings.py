"""The IdP settings: each bad value fails at synth with one line naming the field, the value and the fix."""
from __future__ import annotations

import pytest

from modules.aws.sso_settings import SsoSettings
from modules.core.validation import ConfigError

IDP = "https://idp.example.com/oauth2/default"
GOOD = dict(issuer_url=IDP, authorization_endpoint=f"{IDP}/v1/authorize", token_endpoint=f"{IDP}/v1/token",
            user_info_endpoint=f"{IDP}/v1/userinfo", client_id="consoles", client_secret_name="airflow-dev/sso/client",
            airflow_roles={"admins": "Admin", "analysts": "Viewer"}, grafana_roles={"admins": "Admin"})


def test_defaults_are_on_with_openid_scopes_an_8_hour_session_and_no_password_login():
    sso = SsoSettings(**GOOD)
    assert (sso.enabled, sso.scopes, sso.session_timeout_seconds, sso.local_login) == (
        True, ("openid", "email", "profile", "groups"), 28800, False)
    assert sso.client_secret_arn_pattern == "secret:airflow-dev/sso/client-??????"


@pytest.mark.parametrize("overrides,message", [
    ({"issuer_url": "http://idp.example.com"}, "sso.issuer_url='http://idp.example.com' is not an https URL; fix: "),
    ({"token_endpoint": ""}, "sso.token_endpoint='' is not an https URL"),
    ({"user_info_endpoint": f"{IDP}/userinfo?x=1"}, "sso.user_info_endpoint="),
    ({"client_id": ""}, "sso.client_id='' is empty or padded; fix: give the client id"),
    ({"client_secret_name": "arn:aws:secretsmanager:eu-west-1:1:secret:x"}, "is not a Secrets Manager secret name"),
    ({"client_secret_name": ""}, "sso.client_secret_name='' is not a Secrets Manager secret name"),
    ({"scopes": ("email", "groups")}, "sso.scopes=['email', 'groups'] lacks 'openid'"),
    ({"airflow_roles": {"admins": "Superuser"}}, "sso.airflow_roles.admins='Superuser' is not a known role; fix: use "
                                                 "one of Admin, Op, User, Viewer"),
    ({"grafana_roles": {"admins": "GrafanaAdmin"}}, "sso.grafana_roles.admins='GrafanaAdmin' is not a known role"),
    ({"airflow_roles": {}}, "sso.airflow_roles={} maps no IdP group to a role"),
    ({"airflow_roles": {"analysts": "Viewer"}}, "gives no group the Admin role"),
    ({"session_timeout_seconds": 604801}, "sso.session_timeout_seconds=604801 is outside 60-604800"),
    ({"groups_claim": "has space"}, "sso.groups_claim='has space' is not a claim name"),
])
def test_bad_values_fail_with_one_line_naming_field_value_and_fix(overrides, message):
    with pytest.raises(ConfigError) as caught:
        SsoSettings(**{**GOOD, **overrides})
    text = str(caught.value)
    assert message in text and "\n" not in text and "; fix: " in text


def test_off_needs_a_reason_and_then_nothing_else():
    with pytest.raises(ConfigError, match=r"sso.enabled=False turns single sign-on off without a reason"):
        SsoSettings(enabled=False)
    assert SsoSettings(enabled=False, off_reason="emulator rehearsal").issuer_url == ""
