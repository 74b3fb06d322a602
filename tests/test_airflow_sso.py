"""Single sign-on in every environment's synthesized Airflow values, checked by real Airflow
(tests/airflow_checks/sso_check.py in .venv-airflow): the ALB header verifier against a real ES256 key pair, and the
FAB auth manager built from the generated webserver_config.py signing users in by their IdP groups."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import environments
from tests.harness import run_in_airflow

CHECK = Path(__file__).resolve().parent / "airflow_checks" / "sso_check.py"
EXPECTED = ("a valid ALB token is accepted, with the key fetched for the region and key id",
            "refused: wrong signer", "refused: expired", "refused: signed by another key", "refused: changed payload",
            "refused: alg none", "refused: HS256 with the public key", "refused: other client",
            "the FAB app runs the generated security manager", "login refused for a user with no mapped group (status 403)",
            "login refused for a forged header (status 403)", "login refused for no header (status 403)",
            "a mapped user signs in and gets Airflow's JWT cookie (status 302)",
            "the Flask session key is the API server's own, not [api] secret_key",
            # M4: roles follow the IdP within the token lifetime, not 24 h
            "[api_auth] jwt_expiration_time is an option of this Airflow",
            "[api_auth] jwt_cli_expiration_time is an option of this Airflow",
            "[fab] session_max_lifetime_minutes is an option of this Airflow",
            "a signed-in user whose groups no longer map is refused at /login/ (status 403)",
            "and loses their Airflow roles at once",
            "and is signed out: /login/ without a header is refused (status 403)",
            "mapped again at the IdP, they sign in again with the mapped role (status 302)",
            # L5: the key fetch refuses, never fails with a 500, and cannot be driven by made-up key ids
            "refused when the key server is unreachable", "refused when the key server answers 404",
            "refused when the connection drops", "refused when the answer is no public key",
            "a key id that is not a UUID is refused before any fetch",
            "a fetched key is cached (one fetch for two uses)",
            "a failed key id is not fetched again within the failure TTL",
            "a failed key id is fetched again after the failure TTL", "the key cache stays within its size",
            "the verifier uses the bounded key cache by default", "refused: key id with a path")


@pytest.mark.parametrize("name", environments.NAMES)
def test_generated_sso_config_signs_in_mapped_users_and_refuses_forged_identities_in_real_airflow(stacks, name,
                                                                                              tmp_path):
    (raw,) = stacks[f"airflow-{name}-platform"]["resource"]["helm_release"]["airflow"]["values"]
    path = tmp_path / f"{name}.json"
    path.write_text(raw)
    result = run_in_airflow(CHECK, str(path))
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and not [l for l in lines if l.startswith("ERROR")], \
        result.stdout[-3000:] + result.stderr[-3000:]
    ok = {line[3:] for line in lines if line.startswith("OK ")}
    assert set(EXPECTED) <= ok
    local = environments.load(name).sso.local_login
    assert f"password login {'works' if local else 'is refused'} with local_login={local}" in ok
    values = json.loads(raw)
    assert values["config"]["core"]["auth_manager"].endswith("FabAuthManager")
    lifetime = min(environments.load(name).sso.session_timeout_seconds, 3600)
    assert f"the UI's Airflow token lives {lifetime} s: no longer than the ALB session, at most an hour" in ok
