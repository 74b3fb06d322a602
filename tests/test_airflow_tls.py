"""The API server's TLS as generated (modules/platform/airflow.py), proved with real Airflow (.venv-airflow): the real
`airflow api-server` starts with the generated `[api] ssl_cert`/`ssl_key` env on loopback, an https client that
trusts the CA gets through, plaintext does not, and the task SDK's Execution API client, configured by nothing but
the generated `[core]`/`[api]` settings, verifies the server against the platform CA and refuses a server whose
certificate another CA signed (with public CAs off, nothing else is trusted).

The certificate is a throwaway CA's (tools/local_services.py `make_ca`), for `localhost`, a name the generated API
server certificate covers; the generated file paths are mapped to the throwaway files and the Service host to
localhost:<free port>, and nothing else changes."""
from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modules.platform import airflow as af
from modules.platform import kubernetes as k8s
from modules.platform.airflow_settings import AirflowSettings
from tests.harness import AIRFLOW_VENV
from tools import local_services

CHECK = Path(__file__).resolve().parent / "airflow_checks" / "execution_api_tls.py"
START_TIMEOUT = 120          # seconds; the API server takes ~15 s to import and bind on this machine


def generated() -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The `[core]`/`[api]` TLS settings every process gets and the env only the API server gets, as generated."""
    values = af.airflow_values(settings=AirflowSettings(), domain="data.example.com", region="eu-west-1",
                               dags_bucket="dags", task_logs_bucket="logs", plugins_bucket="plugins")
    config = {section: {k: str(v) for k, v in values["config"][section].items() if k in af.EXECUTION_API_CONFIG[section]}
              for section in af.EXECUTION_API_CONFIG}
    server_env = {e["name"]: e["value"] for e in values["apiServer"]["env"] if e["name"].startswith("AIRFLOW__API__SSL")}
    return config, server_env


def as_env(config: dict[str, dict[str, str]]) -> dict[str, str]:
    return {f"AIRFLOW__{section.upper()}__{key.upper()}": value for section, options in config.items()
            for key, value in options.items()}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-tls")
    return local_services.make_ca(root / "platform"), local_services.make_ca(root / "other"), root


@pytest.fixture(scope="module")
def server(tls):
    """The real API server, started with the generated server env mapped onto the throwaway files."""
    python = AIRFLOW_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(".venv-airflow is not installed (make install)")
    platform, _, root = tls
    config, server_env = generated()
    files = {k8s.AIRFLOW_PLATFORM_CA_FILE: str(platform.ca_cert),
             f"{af.API_SERVER_TLS_DIR}/tls.crt": str(platform.server_cert),
             f"{af.API_SERVER_TLS_DIR}/tls.key": str(platform.server_key)}
    port = local_services.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    config = {section: {k: files.get(v, v) for k, v in options.items()} for section, options in config.items()}
    env.update(as_env(config), AIRFLOW_HOME=str(root / "home"), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               # /execution/health needs no metadata: no `airflow db migrate` for a TLS check
               AIRFLOW__DATABASE__CHECK_MIGRATIONS="False", PYTHONDONTWRITEBYTECODE="1")
    env.update({name: files[value] for name, value in server_env.items()})
    log = (root / "api-server.log").open("wb")
    process = subprocess.Popen([str(AIRFLOW_VENV / "bin" / "airflow"), "api-server", "--host", "127.0.0.1",
                                "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    context = ssl.create_default_context(cafile=str(platform.ca_cert))
    url = f"https://localhost:{port}/execution/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}health", context=context, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"api-server did not serve HTTPS within {START_TIMEOUT}s (exit {process.poll()}):\n"
                            + (root / "api-server.log").read_text()[-3000:])
            time.sleep(1)
        yield {"url": url, "port": port, "files": files, "config": config, "context": context}
    finally:
        _stop(process)
        log.close()


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's own session (it and the workers it forked), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def sdk_call(server, *, ca_file: str) -> dict:
    """The task SDK client in its own process, configured by the generated settings with the CA file given."""
    config = {section: dict(options) for section, options in server["config"].items()}
    config["api"]["ssl_ca_file"] = ca_file
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(as_env(config), AIRFLOW_HOME=str(Path(ca_file).parent / "client-home"),
               AIRFLOW__WORKERS__EXECUTION_API_RETRIES="1", PYTHONDONTWRITEBYTECODE="1")
    url = config["core"]["execution_api_server_url"].replace(
        f"{af.API_SERVER_HOST}:{af.API_SERVER_PORT}", f"localhost:{server['port']}")
    result = subprocess.run([str(AIRFLOW_VENV / "bin" / "python"), str(CHECK), url], env=env, capture_output=True,
                            text=True, timeout=120)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(lines[-1])


def test_the_generated_settings_point_every_client_at_https_verified_by_the_platform_ca_only():
    config, server_env = generated()
    assert config == {"core": {"execution_api_server_url": "https://airflow-api-server.airflow.svc:8080/execution/"},
                      "api": {"ssl_ca_file": k8s.AIRFLOW_PLATFORM_CA_FILE, "client_use_public_certs": "False"}}
    assert server_env == {"AIRFLOW__API__SSL_CERT": f"{af.API_SERVER_TLS_DIR}/tls.crt",
                          "AIRFLOW__API__SSL_KEY": f"{af.API_SERVER_TLS_DIR}/tls.key"}
    # the URL's host is the first name of the certificate the API server serves; localhost (used below) is in it
    (cert,) = [o for o in af.bootstrap_objects(
        prefix="p", region="eu-west-1", database_host="db", database_port=5432, database_name="airflow",
        database_master_secret_arn="a", database_admin_secrets_role_arn="r",
        cache_endpoint="c", cache_port=6379, cache_auth_token_secret_arn="t", settings=AirflowSettings())
        if o["kind"] == "Certificate" and o["metadata"]["name"] == af.API_SERVER_TLS_SECRET]
    assert cert["spec"]["dnsNames"][0] == af.API_SERVER_HOST and "localhost" in cert["spec"]["dnsNames"]


def test_the_real_api_server_serves_https_with_the_generated_settings_and_refuses_plaintext(server):
    with urllib.request.urlopen(f"{server['url']}health", context=server["context"], timeout=10) as response:
        assert (response.status, json.loads(response.read())) == (200, {"status": "healthy"})
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(f"http://localhost:{server['port']}/execution/health", timeout=10)


def test_the_task_sdk_client_verifies_the_server_against_the_platform_ca(server):
    result = sdk_call(server, ca_file=server["files"][k8s.AIRFLOW_PLATFORM_CA_FILE])
    assert (result["ok"], result["status"], result["body"]) == (True, 200, {"status": "healthy"}), result
    assert result["public_certs"] is False


def test_the_task_sdk_client_refuses_a_server_another_ca_signed(server, tls):
    _, other, _ = tls
    result = sdk_call(server, ca_file=str(other.ca_cert))
    assert result["ok"] is False and "CERTIFICATE_VERIFY_FAILED" in result["error"], result
