"""Check the generated single sign-on configuration with real Airflow (run in .venv-airflow by tests/harness.run_in_airflow).

Usage: sso_check.py VALUES.json   (the Helm values of one Airflow release, with `apiServer.apiServerConfig`)

1. The ALB header verifier, with a real ES256 key pair made here (standing in for the ALB's key at
   public-keys.auth.elb.<region>.amazonaws.com): a token shaped like the ALB's (padded base64url, signer/kid/exp/client/
   iss in the header) is accepted; a wrong signer, an expired token, a signature by another key, a changed payload,
   `alg: none` / HS256 and a key id with a path in it are refused. The ALB key cache: a failed fetch (network error,
   HTTP error, an answer that is no EC key) is a refusal (AlbIdentityError), never an exception that would be a 500;
   a key id that is not a UUID is refused before any fetch; a failed key id is not fetched again within the failure
   TTL; the cache stays within its size.
2. The FAB auth manager from the generated settings: the `[core] auth_manager` class imports, `[fab] config_file`
   pointing at the generated webserver_config.py, the FAB app builds with it (SECURITY_MANAGER_CLASS accepted by the
   auth manager), and its /login/ view signs in a user whose IdP group maps to a role (a 302 that sets Airflow's JWT
   cookie; the user holds exactly the mapped role), refuses a user with no mapped group or a forged header (403), and
   password login is refused while local login is off. Roles follow the IdP: the UI's Airflow token lives
   `[api_auth] jwt_expiration_time` (options of this Airflow, at most the ALB session), and a signed-in user coming
   back to /login/ (as the UI does when its token expires) is verified again: moved to an unmapped group, they are
   refused, signed out and lose their roles.
Prints OK/ERROR lines; exit 1 on any ERROR.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import sys
import tempfile
import time

SIGNER = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/airflow-test-edge/50dc6c495c0c9188"
errors: list[str] = []


def report(ok: bool, what: str) -> None:
    line = f"{'OK' if ok else 'ERROR'} {what}"
    print(line)
    if not ok:
        errors.append(line)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()      # padded, as the ALB sends it


def alb_token(key, *, header: dict, claims: dict, alg_override: str | None = None) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def load_config(text: str, path: str):
    with open(path, "w") as handle:
        handle.write(text)
    spec = importlib.util.spec_from_file_location("generated_webserver_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_key_cache(module, alb_key, pem: str, header: dict, claims: dict, kwargs: dict) -> None:
    """The production key fetcher (AlbKeyCache) with its network call replaced: failures are refusals, cached."""
    import urllib.error

    kid = header["kid"]
    clock = [1000.0]
    calls: list[str] = []

    def cache(answer):
        def fetch(region: str, key_id: str) -> str:
            calls.append(key_id)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return module.AlbKeyCache(fetch=fetch, clock=lambda: clock[0], size=4)

    token = alb_token(alb_key, header=header, claims=claims)
    failures = {
        "the key server is unreachable": urllib.error.URLError("timed out"),
        "the key server answers 404": urllib.error.HTTPError("https://x/", 404, "Not Found", {}, None),
        "the connection drops": ConnectionResetError("reset"),
        "the answer is no public key": "<html>nope</html>",
    }
    for what, answer in failures.items():
        calls.clear()
        try:
            module.verify_alb_token(token, **{**kwargs, "public_key": cache(answer)})
            report(False, f"refused when {what}")
        except module.AlbIdentityError:
            report(calls == [kid], f"refused when {what}")
        except Exception as err:     # noqa: BLE001 (an escaping exception is what this checks against)
            report(False, f"refused when {what} (escaped as {type(err).__name__})")

    calls.clear()
    keys = cache(pem)
    for bad_kid in ("../../evil", "not-a-uuid", "5f3b9a3e1c2d4e5f8a9b0c1d2e3f4a5b", kid + "/x"):
        try:
            keys("eu-west-1", bad_kid)
            report(False, f"key id {bad_kid!r} refused before any fetch")
        except module.AlbIdentityError:
            pass
    report(calls == [], "a key id that is not a UUID is refused before any fetch")
    report(keys("eu-west-1", kid) == pem and keys("eu-west-1", kid) == pem and calls == [kid],
           "a fetched key is cached (one fetch for two uses)")

    calls.clear()
    failing = cache(urllib.error.HTTPError("https://x/", 403, "Forbidden", {}, None))
    unknown = "00000000-0000-4000-8000-000000000000"
    for _ in range(5):
        try:
            failing("eu-west-1", unknown)
        except module.AlbIdentityError:
            pass
    report(calls == [unknown], "a failed key id is not fetched again within the failure TTL")
    clock[0] += module.KEY_FAILURE_TTL_SECONDS + 1
    try:
        failing("eu-west-1", unknown)
    except module.AlbIdentityError:
        pass
    report(calls == [unknown, unknown], "a failed key id is fetched again after the failure TTL")

    bounded = cache(urllib.error.URLError("down"))
    for n in range(10):
        try:
            bounded("eu-west-1", f"00000000-0000-4000-8000-{n:012d}")
        except module.AlbIdentityError:
            pass
    report(len(bounded._keys) + len(bounded._failures) <= 4, "the key cache stays within its size")
    report(isinstance(module.alb_public_key, module.AlbKeyCache)
           and module.verify_alb_token.__kwdefaults__["public_key"] is module.alb_public_key,
           "the verifier uses the bounded key cache by default")


def main(values_path: str) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    values = json.loads(open(values_path).read())
    text = values["apiServer"]["apiServerConfig"]
    work = tempfile.mkdtemp()
    config_path = os.path.join(work, "webserver_config.py")
    # What the API server's env carries (Secret airflow-api-server-keys); the config refuses to load without it.
    os.environ["FAB_FLASK_SECRET_KEY"] = "test-only-flask-key"
    # The signer is the infra stack's ALB ARN (a Terraform reference at synth): give it a real value.
    module = load_config(text, config_path)
    sso = dict(module.SSO, signer=SIGNER)
    text = text.replace(json.dumps(module.SSO["signer"]), json.dumps(SIGNER))
    module = load_config(text, config_path)
    report(module.SSO == sso, "generated SSO settings load with the signer filled in")

    alb_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    pem = alb_key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    fetched: list[tuple[str, str]] = []

    def public_key(region: str, kid: str) -> str:
        fetched.append((region, kid))
        return pem

    now = time.time()
    group = next(iter(sso["roles_mapping"]))
    header = {"alg": "ES256", "kid": "5f3b9a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "signer": SIGNER, "iss": sso["issuer"],
              "client": sso["client_id"], "exp": int(now) + 60, "typ": "JWT"}
    claims = {"sub": "00u1abcd", "email": "ada@example.com", sso["groups_claim"]: [group, "unmapped"],
              "exp": int(now) + 60, "iss": sso["issuer"]}
    kwargs = dict(signer=SIGNER, client_id=sso["client_id"], issuer=sso["issuer"], region=sso["region"],
                  public_key=public_key)
    good = alb_token(alb_key, header=header, claims=claims)
    try:
        verified = module.verify_alb_token(good, **kwargs)
        report(verified["email"] == "ada@example.com" and fetched == [(sso["region"], header["kid"])],
               "a valid ALB token is accepted, with the key fetched for the region and key id")
    except module.AlbIdentityError as err:
        report(False, f"a valid ALB token is accepted ({err})")

    forged_payload = good.split(".")
    forged_payload[1] = b64(json.dumps({**claims, sso["groups_claim"]: ["data-platform-admins"]}).encode())
    bad = {
        "wrong signer": alb_token(alb_key, header={**header, "signer": SIGNER.replace("50dc", "ffff")}, claims=claims),
        "expired": alb_token(alb_key, header={**header, "exp": int(now) - 600}, claims={**claims, "exp": int(now) - 600}),
        "signed by another key": alb_token(other_key, header=header, claims=claims),
        "changed payload": ".".join(forged_payload),
        "alg none": f"{b64(json.dumps({**header, 'alg': 'none'}).encode())}.{b64(json.dumps(claims).encode())}.",
        "HS256 with the public key": alb_token(alb_key, header={**header, "alg": "HS256"}, claims=claims),
        "other client": alb_token(alb_key, header={**header, "client": "someone-else"}, claims=claims),
        "key id with a path": alb_token(alb_key, header={**header, "kid": "../../evil"}, claims=claims),
        "not a JWT": "garbage",
    }
    for what, token in bad.items():
        try:
            module.verify_alb_token(token, **kwargs)
            report(False, f"refused: {what}")
        except module.AlbIdentityError:
            report(True, f"refused: {what}")

    check_key_cache(module, alb_key, pem, header, claims, kwargs)

    # ---- the FAB auth manager, built from the generated settings ----
    from airflow.configuration import conf
    from importlib import import_module

    manager_path = values["config"]["core"]["auth_manager"]
    manager_class = getattr(import_module(manager_path.rpartition(".")[0]), manager_path.rpartition(".")[2])
    report(manager_class.__name__ == "FabAuthManager", f"auth manager {manager_path} imports")
    for section in ("fab", "api_auth"):
        for option, value in values["config"][section].items():
            described = conf.configuration_description.get(section, {}).get("options", {})
            report(option in described, f"[{section}] {option} is an option of this Airflow")
            os.environ[f"AIRFLOW__{section.upper()}__{option.upper()}"] = str(value)
    # Environment variables, not conf.set: Airflow's and the task SDK's config objects both read them.
    os.environ.update(AIRFLOW__CORE__AUTH_MANAGER=manager_path, AIRFLOW__FAB__CONFIG_FILE=config_path,
                      AIRFLOW__API__SECRET_KEY="test-only-secret", AIRFLOW__API_AUTH__JWT_SECRET="test-only-jwt-secret")

    from airflow.utils.db import resetdb  # a fresh sqlite metadata DB in the throwaway AIRFLOW_HOME
    resetdb(skip_init=False)
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.providers.fab.www.app import create_app

    app = create_app(enable_plugins=False)
    # FAB signs sessions with the API server's own key, not [api] secret_key (which log servers hold too)
    report(app.secret_key == "test-only-flask-key" != os.environ["AIRFLOW__API__SECRET_KEY"],
           "the Flask session key is the API server's own, not [api] secret_key")
    with app.app_context():
        sm = get_auth_manager().security_manager
        report(type(sm).__name__ == "AlbSecurityManager", "the FAB app runs the generated security manager")
        report(type(sm.auth_view).__name__ == "AlbAuthView", "the login view is the ALB header view")
    client = app.test_client()
    # Flask executed the file as its own namespace: the test's "ALB key" goes in there (no network).
    type(sm).auth_user_alb.__globals__["verify_alb_token"].__kwdefaults__["public_key"] = public_key
    response = client.get("/login/", headers={"x-amzn-oidc-data": good, "X-Forwarded-Proto": "https"})
    cookies = response.headers.getlist("Set-Cookie")
    report(response.status_code == 302 and any(c.startswith("_token=") for c in cookies),
           f"a mapped user signs in and gets Airflow's JWT cookie (status {response.status_code})")
    with app.app_context():
        user = sm.find_user(username="ada@example.com")
        report(user is not None and [r.name for r in user.roles] == sso["roles_mapping"][group],
               f"the user holds exactly the mapped role {sso['roles_mapping'][group]}")
    import jwt
    (cookie,) = [c for c in cookies if c.startswith("_token=")]
    issued = jwt.decode(cookie.split(";", 1)[0].split("=", 1)[1], options={"verify_signature": False})
    lifetime = issued["exp"] - issued["iat"]
    session_seconds = values["config"]["fab"]["session_max_lifetime_minutes"] * 60
    report(lifetime == values["config"]["api_auth"]["jwt_expiration_time"] and lifetime <= min(session_seconds, 3600),
           f"the UI's Airflow token lives {lifetime} s: no longer than the ALB session, at most an hour")

    # The UI comes back to /login/ when its token expires, with its session cookie: the header is verified again.
    moved = alb_token(alb_key, header=header, claims={**claims, sso["groups_claim"]: ["unmapped"]})
    https = {"X-Forwarded-Proto": "https"}
    response = client.get("/login/", headers={"x-amzn-oidc-data": moved, **https})
    report(response.status_code == 403,
           f"a signed-in user whose groups no longer map is refused at /login/ (status {response.status_code})")
    with app.app_context():
        report([r.name for r in sm.find_user(username="ada@example.com").roles] == [],
               "and loses their Airflow roles at once")
    response = client.get("/login/", headers=https)
    report(response.status_code == 403, f"and is signed out: /login/ without a header is refused "
                                        f"(status {response.status_code})")
    response = client.get("/login/", headers={"x-amzn-oidc-data": good, **https})
    with app.app_context():
        report(response.status_code == 302
               and [r.name for r in sm.find_user(username="ada@example.com").roles] == sso["roles_mapping"][group],
               f"mapped again at the IdP, they sign in again with the mapped role (status {response.status_code})")
    unmapped = alb_token(alb_key, header=header, claims={**claims, "email": "eve@example.com",
                                                         sso["groups_claim"]: ["unmapped"]})
    for what, token in (("a user with no mapped group", unmapped),
                        ("a forged header", bad["signed by another key"]), ("no header", "")):
        fresh = app.test_client()
        response = fresh.get("/login/", headers={"x-amzn-oidc-data": token} if token else {})
        report(response.status_code == 403, f"login refused for {what} (status {response.status_code})")
    with app.test_request_context():
        report(sm.find_user(username="eve@example.com") is None, "no user is created for a refused login")
        sm.add_user("breakglass", "b", "g", "bg@example.com", sm.find_role("Admin"), password="correct-horse")
        allowed = sm.auth_user_db("breakglass", "correct-horse") is not None
        report(allowed == bool(sso["local_login"]),
               f"password login {'works' if allowed else 'is refused'} with local_login={sso['local_login']}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
