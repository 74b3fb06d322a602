"""Run with real Airflow (tests/harness.py run_in_airflow): which Vault API requests Airflow's VaultBackend (the
hashicorp provider + hvac) makes to look up a connection, a variable and a config option, with the HTTP transport
replaced by a recorder that answers like Vault. Argument: the backend_kwargs as JSON. Prints one JSON object:
{"requests": [{"method", "path", "body"}...], "results": {...}}."""
from __future__ import annotations

import json
import sys
import tempfile
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

calls: list[dict] = []


def send(self, request, **kwargs):   # noqa: ARG001  (HTTPAdapter.send's signature)
    path = urlsplit(request.url).path
    body = json.loads(request.body) if request.body else None
    calls.append({"method": request.method, "path": path, "body": body})
    if path.endswith("/login"):
        payload = {"auth": {"client_token": "recorded", "lease_duration": 900, "renewable": True, "policies": []}}
    else:
        payload = {"data": {"data": {"conn_uri": "kafka://broker.example:9098", "value": "recorded"},
                            "metadata": {"version": 1}}}
    response = requests.Response()
    response.status_code, response.url, response.request = 200, request.url, request
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps(payload).encode()
    return response


HTTPAdapter.send = send

from airflow.providers.hashicorp.secrets.vault import VaultBackend  # noqa: E402

kwargs = json.loads(sys.argv[1])
with tempfile.NamedTemporaryFile("w", suffix=".jwt", delete=False) as jwt:
    jwt.write("recorded.service-account.token")
kwargs["kubernetes_jwt_path"] = jwt.name
backend = VaultBackend(**kwargs)
results = {"connection": backend.get_conn_value("kafka_default"), "variable": backend.get_variable("some_variable"),
           "config": backend.get_config("sql_alchemy_conn")}
print(json.dumps({"requests": calls, "results": results}))
