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
groups map to Airflow roles at every login, which the UI repeats whenever its Airflow token expires (at most an
hour, airflow_auth.py): no mapped group, no login. No password login exists unless
`local_login` is on (break-glass, docs/access.md).
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import threading
import time
import urllib.request
from typing import NoReturn

from flask import flash, g, request
from flask_appbuilder import expose
from flask_appbuilder.const import AUTH_REMOTE_USER
from flask_appbuilder.security.views import AuthRemoteUserView
from flask_login import login_user, logout_user

from airflow.providers.fab.auth_manager.security_manager.override import FabAirflowSecurityManagerOverride
from airflow.providers.fab.www.views import get_safe_url, redirect   # redirect sets Airflow's JWT cookie for the UI

log = logging.getLogger(__name__)

SSO = {}   # replaced by airflow_auth.py

HEADER = "x-amzn-oidc-data"
# The ALB's key ids are UUIDs (AWS: "Authenticate users using an Application Load Balancer", the `kid` of the
# x-amzn-oidc-data header); anything else is refused before any fetch, so no caller chooses what the URL holds.
_KID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
LEEWAY_SECONDS = 30
KEY_FETCH_TIMEOUT_SECONDS = 5
# Any in-cluster caller that reaches the API server can send headers naming the (public) signer ARN and made-up key
# ids: each unknown id would cost an outbound fetch. A failed id is refused for this long without a fetch, fetches
# run one at a time per process, and the cache holds at most KEY_CACHE_SIZE ids (failures evicted first).
KEY_FAILURE_TTL_SECONDS = 60
KEY_CACHE_SIZE = 64
_MAX_KEY_BYTES = 4096


class AlbIdentityError(Exception):
    """The x-amzn-oidc-data header is missing, malformed, not ours, expired or not signed by the ALB."""


def _segment(part: str) -> bytes:
    # The ALB pads its base64url segments with '='; accept both padded and unpadded.
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class AlbKeyCache:
    """The ALB's public keys by (region, key id). A key id never changes its key, so a key is kept for the process;
    a failed fetch (unknown id, network, a non-key answer) is remembered for KEY_FAILURE_TTL_SECONDS and raised as
    AlbIdentityError, so a bad header ends as a refused login (403), never as a server error."""

    def __init__(self, *, fetch=None, clock=time.monotonic, size: int = KEY_CACHE_SIZE,
                 failure_ttl: float = KEY_FAILURE_TTL_SECONDS) -> None:
        self._fetch = fetch or self._fetch_pem
        self._clock, self._size, self._failure_ttl = clock, size, failure_ttl
        self._keys: dict[tuple[str, str], str] = {}
        self._failures: dict[tuple[str, str], float] = {}      # -> when the failure may be retried
        self._state = threading.Lock()                           # guards the two tables, never held over I/O
        self._fetching = threading.Lock()                        # one outbound fetch at a time per process

    @staticmethod
    def _fetch_pem(region: str, kid: str) -> str:
        url = f"https://public-keys.auth.elb.{region}.amazonaws.com/{kid}"
        with urllib.request.urlopen(url, timeout=KEY_FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310 (fixed host)
            return response.read(_MAX_KEY_BYTES + 1).decode("ascii")

    def _cached(self, key: tuple[str, str]) -> str | None:
        with self._state:
            if key in self._keys:
                return self._keys[key]
            if self._failures.get(key, 0) > self._clock():
                raise AlbIdentityError(f"key id {key[1]} failed within {self._failure_ttl:.0f} s")
            return None

    def __call__(self, region: str, kid: str) -> str:
        if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
            raise AlbIdentityError("bad key id")
        key = (region, kid)
        pem = self._cached(key)                  # a known key never waits behind another caller's fetch
        if pem is not None:
            return pem
        with self._fetching:
            pem = self._cached(key)              # fetched (or failed) while this caller waited
            if pem is not None:
                return pem
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.hazmat.primitives.serialization import load_pem_public_key
            try:
                pem = self._fetch(region, kid)
                public = load_pem_public_key(pem.encode("ascii")) if len(pem) <= _MAX_KEY_BYTES else None
            except (OSError, http.client.HTTPException, ValueError, TypeError) as err:  # URLError is an OSError
                self._refuse(key, type(err).__name__)
            if not isinstance(public, ec.EllipticCurvePublicKey):
                self._refuse(key, "not an EC public key")
            with self._state:
                self._failures.pop(key, None)
                self._remember(self._keys, key, pem)
            return pem

    def _refuse(self, key: tuple[str, str], why: str) -> NoReturn:
        with self._state:
            self._remember(self._failures, key, self._clock() + self._failure_ttl)
        raise AlbIdentityError(f"no public key for key id {key[1]} ({why})") from None

    def _remember(self, table: dict, key, value) -> None:
        table[key] = value
        while len(self._keys) + len(self._failures) > self._size:
            victim = self._failures if self._failures else self._keys
            victim.pop(next(iter(victim)))         # the oldest entry (dicts keep insertion order)


alb_public_key = AlbKeyCache()


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
    if not isinstance(kid, str) or _KID.fullmatch(kid) is None:     # checked here too: no fetcher sees a bad id
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
    if isinstance(groups, str):
        return [groups]
    return [g for g in groups if isinstance(g, str)] if isinstance(groups, list) else []


class AlbAuthView(AuthRemoteUserView):
    """/auth/login/: signs the user in from the verified ALB header (no form, nothing to type)."""

    @expose("/login/")
    def login(self):
        # No shortcut for a user who already has a session: the UI comes here whenever its Airflow token expires,
        # and this is where the IdP's current groups are applied again (a removed group loses its role here).
        next_url = request.args.get("next", "")
        user = self.appbuilder.sm.auth_user_alb(request.headers.get(HEADER, ""))
        if user is None:
            if g.user is not None and g.user.is_authenticated:
                logout_user()
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
        if not isinstance(username, str) or not username:
            log.warning("Refused single sign-on: no username in claim %r", SSO["username_claim"])
            return None
        user = self.find_user(username=username)
        if not roles:
            log.warning("Refused single sign-on for %r: no group mapped to a role", username)
            if user is not None and user.roles:
                # Tokens issued earlier lose their permissions now ([fab] cache_ttl, 30 s), not at their expiry.
                user.roles = []
                self.update_user(user)
            return None
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
