"""Single sign-on at the front door (docs/access.md): the organisation's OpenID Connect identity provider, which the
ALB authenticates every request against (modules/aws/edge.py), and how its groups map to Airflow and Grafana roles
(modules/platform/airflow_auth.py, modules/platform/monitoring.py).

Pure data with no cdktf import (environments/ validates it before jsii starts). The client secret is never a value
here: only the name of the Secrets Manager secret that holds it (created once by hand, README "Single sign-on")."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..core.validation import require, section

# Airflow's FAB auth manager roles (airflow.providers.fab ... security_manager/override.py ROLE_CONFIGS, plus Admin
# and Public) and Grafana's organisation roles (GrafanaAdmin is the server-wide admin flag, not an org role).
AIRFLOW_ROLES = ("Admin", "Op", "User", "Viewer")
GRAFANA_ROLES = ("Admin", "Editor", "Viewer")
DEFAULT_SCOPES = ("openid", "email", "profile", "groups")
# ALB authenticate-oidc session_timeout limits (seconds; AWS default 604800 = 7 days).
MAX_SESSION_SECONDS = 604800
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_CLAIM = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,128}")    # RFC 6749 scope-token characters


def _https_url(field_: str, value: object) -> None:
    parts = urlsplit(value) if isinstance(value, str) else None
    require(parts is not None and parts.scheme == "https" and bool(parts.hostname) and not parts.query
            and not parts.fragment and value == value.strip(), field_, value, "is not an https URL",
            "use the IdP's https URL from its /.well-known/openid-configuration (no query or fragment)")


@dataclass(frozen=True, kw_only=True)
class SsoSettings:
    """The IdP the ALB authenticates against (authenticate-oidc) and the group -> role mappings the consoles use.
    On by default: turning it off needs a reason, and production refuses internet-wide ingress without it."""
    enabled: bool = True
    off_reason: str = ""                          # why there is no SSO: required when enabled=False
    issuer_url: str = ""                          # OIDC issuer, e.g. https://login.example.com/oauth2/default
    authorization_endpoint: str = ""              # the three endpoints of the issuer's discovery document: the
    token_endpoint: str = ""                      # ALB takes them explicitly (it does no discovery)
    user_info_endpoint: str = ""
    client_id: str = ""                           # the confidential client registered for the consoles
    client_secret_name: str = ""                  # Secrets Manager secret holding the client secret (plain string)
    scopes: tuple[str, ...] = DEFAULT_SCOPES      # must include openid; 'groups' for the role mappings
    groups_claim: str = "groups"                  # userinfo / token claim listing the user's groups
    username_claim: str = "email"                 # claim that names the user in Airflow and Grafana
    session_timeout_seconds: int = 28800          # ALB session cookie lifetime (8 h): then the IdP is asked again
    airflow_roles: dict[str, str] = field(default_factory=dict)   # IdP group -> Airflow role (AIRFLOW_ROLES)
    grafana_roles: dict[str, str] = field(default_factory=dict)   # IdP group -> Grafana role (GRAFANA_ROLES)
    # Grafana's admin password form (break-glass, docs/access.md). Airflow has no password login in any environment.
    local_login: bool = False

    def __post_init__(self) -> None:
        with section("sso"):
            self._validate()

    def _validate(self) -> None:
        require(isinstance(self.enabled, bool), "enabled", self.enabled, "is not true or false",
                "set enabled=True or False")
        if not self.enabled:
            require(isinstance(self.off_reason, str) and self.off_reason.strip() != "", "enabled", self.enabled,
                    "turns single sign-on off without a reason",
                    "keep it on, or say in off_reason what protects the consoles instead")
            return
        for name in ("issuer_url", "authorization_endpoint", "token_endpoint", "user_info_endpoint"):
            _https_url(name, getattr(self, name))
        require(isinstance(self.client_id, str) and self.client_id.strip() != "" and self.client_id == self.client_id.strip(),
                "client_id", self.client_id, "is empty or padded", "give the client id your IdP issued for the consoles")
        require(isinstance(self.client_secret_name, str) and _SECRET_NAME.fullmatch(self.client_secret_name) is not None
                and not self.client_secret_name.startswith("arn:"), "client_secret_name", self.client_secret_name,
                "is not a Secrets Manager secret name",
                "give the name (not the ARN or the value) of the secret holding the client secret, e.g. 'airflow-prod/sso/client-secret'")
        require(isinstance(self.scopes, tuple) and "openid" in self.scopes
                and all(isinstance(s, str) and _SCOPE.fullmatch(s) for s in self.scopes)
                and len(set(self.scopes)) == len(self.scopes), "scopes", list(self.scopes),
                "lacks 'openid', repeats a scope or holds an invalid one", f"use e.g. {list(DEFAULT_SCOPES)}")
        for name in ("groups_claim", "username_claim"):
            value = getattr(self, name)
            require(isinstance(value, str) and _CLAIM.fullmatch(value) is not None, name, value,
                    "is not a claim name", "use the claim your IdP puts it in, e.g. 'groups' or 'email'")
        value = self.session_timeout_seconds
        require(isinstance(value, int) and not isinstance(value, bool) and 60 <= value <= MAX_SESSION_SECONDS,
                "session_timeout_seconds", value, f"is outside 60-{MAX_SESSION_SECONDS}",
                "use seconds, e.g. 28800 (8 hours)")
        for name, known in (("airflow_roles", AIRFLOW_ROLES), ("grafana_roles", GRAFANA_ROLES)):
            mapping = getattr(self, name)
            require(isinstance(mapping, dict) and len(mapping) >= 1, name, mapping, "maps no IdP group to a role",
                    f"map at least one group, e.g. {{'platform-admins': '{known[0]}'}}")
            for group, role in mapping.items():
                require(isinstance(group, str) and group.strip() != "" and group == group.strip(), f"{name}", group,
                        "is not an IdP group name", "use the group names your IdP sends in the groups claim")
                require(role in known, f"{name}.{group}", role, "is not a known role", f"use one of {', '.join(known)}")
            require(known[0] in mapping.values(), name, mapping, f"gives no group the {known[0]} role",
                    f"map the administrators' group to '{known[0]}' (no one could manage roles otherwise)")
        require(isinstance(self.local_login, bool), "local_login", self.local_login, "is not true or false",
                "set local_login=False (True only for break-glass or non-production)")

    @property
    def client_secret_arn_pattern(self) -> str:
        """The secret's ARN with Secrets Manager's random suffix wildcarded (IAM resource), after `arn:...:secret:`."""
        return f"secret:{self.client_secret_name}-??????"
