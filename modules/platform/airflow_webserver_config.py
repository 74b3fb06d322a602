"""webserver_config.py of the Airflow API server (chart `apiServer.apiServerConfig`): single sign-on through the ALB.

Never imported by the CDKTF app: modules/platform/airflow_auth.py reads this file, replaces the `SSO = {}` line with
the environment's settings and hands the text to the chart; it runs inside the Airflow image (Flask-AppBuilder,
PyJWT and cryptography are dependencies of the FAB provider). tests/airflow_checks/sso_check.py runs it with real
Airflow.

The ALB authenticates every request at the IdP (authenticate-oidc) and passes the user's claims in the
`x-amzn-oidc-data` header, a JWT signed with ES256 by the ALB. Airflow trusts that header only after checking it:
the algorithm is ES256 whatever the header says, the signer is this environment's ALB (a token from another ALB, or
an attacker's, is refused), the client and issuer are ours, it has not expired, and the signature verifies against
the ALB's public key for the key id (https://public-keys.auth.elb.<region>.amazonaws.com/<kid>). Then the user's IdP
groups map to Airflow roles at every login (no mapped group: no login). No password login exists unless
`local_login` is on (break-glass, docs/access.md).
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
import time
import urllib.request

from flask import flash, g, request
from flask_appbuilder import expose
from flask_appbuilder.const import AUTH_REMOTE_USER
from flask_appbuilder.security.views import AuthRemoteUserView
from flask_login import login_user

from airflow.providers.fab.auth_manager.security_manager.override import FabAirflowSecurityManagerOverride
from airflow.providers.fab.www.views import get_safe_url, redirect   # redirect sets Airflow's JWT cookie for the UI

log = logging.getLogger(__name__)

SSO = {}   # replaced by airflow_auth.py

HEADER = "x-amzn-oidc-data"
_KID = re.compile(r"[A-Za-z0-9-]{1,128}")
LEEWAY_SECONDS = 30


class AlbIdentityError(Exception):
    """The x-amzn-oidc-data header is missing, malformed, not ours, expired or not signed by the ALB."""


def _segment(part: str) -> bytes:
    # The ALB pads its base64url segments with '='; accept both padded and unpadded.
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@functools.lru_cache(maxsize=16)
def alb_public_key(region: str, kid: str) -> str:
    """The ALB's PEM public key for `kid` (a key id does not change its key: cached for the process)."""
    url = f"https://public-keys.auth.elb.{region}.amazonaws.com/{kid}"
    with urllib.request.urlopen(url, timeout=10) as response:     # noqa: S310 (fixed https host)
        return response.read().decode()


def verify_alb_token(token: str, *, signer: str, client_id: str, issuer: str, region: str, now: float | None = None,
                     public_key=alb_public_key) -> dict:
    """The claims of a verified x-amzn-oidc-data token, else AlbIdentityError."""
    import jwt    # PyJWT, with cryptography for ES256

    if not isinstance(token, str) or token.count(".") != 2:
        raise AlbIdentityError("not a JWT")
    try:
        header = json.loads(_segment(token.split(".", 1)[0]))
    except (ValueError, TypeError) as err:
        raise AlbIdentityError(f"unreadable header ({err})") from None
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        raise AlbIdentityError("not ES256")
    if header.get("signer") != signer:
        raise AlbIdentityError(f"signed by {header.get('signer')!r}, not this environment's ALB")
    if header.get("client") != client_id or header.get("iss") != issuer:
        raise AlbIdentityError("issued for another client or issuer")
    now = time.time() if now is None else now
    if not isinstance(header.get("exp"), (int, float)) or header["exp"] + LEEWAY_SECONDS < now:
        raise AlbIdentityError("expired")
    kid = header.get("kid")
    if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
        raise AlbIdentityError("bad key id")
    try:
        claims = jwt.decode(token, public_key(region, kid), algorithms=["ES256"], leeway=LEEWAY_SECONDS,
                            options={"verify_aud": False, "verify_iat": False, "verify_exp": False})
    except jwt.PyJWTError as err:
        raise AlbIdentityError(f"signature refused ({type(err).__name__})") from None
    if isinstance(claims.get("exp"), (int, float)) and claims["exp"] + LEEWAY_SECONDS < now:
        raise AlbIdentityError("expired")
    return claims


def groups_of(claims: dict, claim: str) -> list[str]:
    groups = claims.get(claim, [])
    return [groups] if isinstance(groups, str) else [g for g in groups if isinstance(g, str)]


class AlbAuthView(AuthRemoteUserView):
    """/auth/login/: signs the user in from the verified ALB header (no form, nothing to type)."""

    @expose("/login/")
    def login(self):
        next_url = request.args.get("next", "")
        if g.user is not None and g.user.is_authenticated:
            return redirect(get_safe_url(next_url))
        user = self.appbuilder.sm.auth_user_alb(request.headers.get(HEADER, ""))
        if user is None:
            flash("Single sign-on did not identify you, or none of your groups has access to Airflow.", "warning")
            return "Forbidden: no verified single sign-on identity with an Airflow role", 403
        login_user(user)
        return redirect(get_safe_url(next_url))


class AlbSecurityManager(FabAirflowSecurityManagerOverride):
    """FAB's security manager with the ALB header as the only login, unless break-glass local login is on."""

    authremoteuserview = AlbAuthView

    def auth_user_alb(self, token: str):
        try:
            claims = verify_alb_token(token, signer=SSO["signer"], client_id=SSO["client_id"], issuer=SSO["issuer"],
                                      region=SSO["region"])
        except AlbIdentityError as err:
            log.warning("Refused single sign-on: %s", err)
            return None
        username = claims.get(SSO["username_claim"])
        roles = list(self.get_roles_from_keys(groups_of(claims, SSO["groups_claim"])))
        if not isinstance(username, str) or not username or not roles:
            log.warning("Refused single sign-on for %r: no username or no group mapped to a role", username)
            return None
        user = self.find_user(username=username)
        if user is None:
            user = self.add_user(username=username, first_name=claims.get("given_name") or username,
                                 last_name=claims.get("family_name") or "-", email=claims.get("email") or username,
                                 role=roles)
        else:
            user.roles = roles            # the IdP's groups decide, at every login
            self.update_user(user)
        if not user or not user.is_active:
            return None
        self._rotate_session_id()
        self.update_user_auth_stat(user)
        return user

    def auth_user_db(self, username, password, rotate_session_id=True):
        # Password login (the /auth/token API too) only while break-glass local login is on.
        if not SSO.get("local_login"):
            log.warning("Refused password login for %r: single sign-on only", username)
            return None
        return super().auth_user_db(username, password, rotate_session_id=rotate_session_id)


AUTH_TYPE = AUTH_REMOTE_USER
SECURITY_MANAGER_CLASS = AlbSecurityManager
AUTH_ROLES_MAPPING = SSO.get("roles_mapping", {})
AUTH_ROLES_SYNC_AT_LOGIN = True
AUTH_USER_REGISTRATION = False       # users are created only by auth_user_alb, with their mapped roles
WTF_CSRF_ENABLED = True
# The Flask session key: the API server's own (env from Secret airflow-api-server-keys, mounted in no other pod), not
# `[api] secret_key`, which FAB would use otherwise and which the workers' and triggerer's log servers also hold: with
# it, a task could sign a session cookie as any user. Missing = the app does not start (fail closed).
SECRET_KEY = os.environ["FAB_FLASK_SECRET_KEY"]
