"""Run in .venv-airflow by tests/test_airflow_tls.py: the task SDK's own Execution API client, configured only by
the environment it is given (the generated `[api]` settings), calls GET <url>health against a running API server.

    python execution_api_tls.py <execution api url>

Prints one JSON line: {"ok": true, "status": 200, "body": ...} or {"ok": false, "error": "<type>: <message>"}.
The client reads its TLS settings at import (airflow/sdk/api/client.py: `[api] ssl_ca_file`, `[api] ssl_cert`,
`[api] client_use_public_certs`), which is why this runs as a process of its own per configuration."""
from __future__ import annotations

import json
import sys

from airflow.sdk.api import client as sdk_client

url = sys.argv[1]
try:
    with sdk_client.Client(base_url=url, token="not-a-task-token") as api:
        response = api.get("health")
    print(json.dumps({"ok": True, "status": response.status_code, "body": response.json(),
                      "ca_file": sdk_client.API_SSL_CA_FILE_PATH,
                      "public_certs": sdk_client.API_CLIENT_USE_PUBLIC_CERTS}))
except Exception as exc:   # the failure mode is the finding: report it, the test asserts on it
    print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
