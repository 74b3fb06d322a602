"""Run with real Airflow (tests/harness.py run_in_airflow): which Vault role and token file VaultBackend is built with
when [secrets] backend_kwargs comes from the synthesized config and a pod's env adds its per-key variables.
Arguments: the backend_kwargs JSON, then the pod's env as a JSON list of {"name", "value"}. Prints one JSON object
{"server": {...}, "worker": {...}}: the backend of server processes (scheduler, API server, triggerer and
dag-processor supervisors) and of task / DAG-parsing / trigger processes (worker mode)."""
from __future__ import annotations

import json
import os
import sys

os.environ["AIRFLOW__SECRETS__BACKEND"] = "airflow.providers.hashicorp.secrets.vault.VaultBackend"
os.environ["AIRFLOW__SECRETS__BACKEND_KWARGS"] = sys.argv[1]
for item in json.loads(sys.argv[2]):
    if "value" in item:         # entries from Secrets (valueFrom: the database connection, keys) name no Vault setting
        os.environ[item["name"]] = item["value"]

from airflow.configuration import conf  # noqa: E402
from airflow.sdk.configuration import conf as sdk_conf  # noqa: E402


def describe(backend) -> dict:
    client = backend.vault_client
    return {"class": type(backend).__name__, "role": client.kubernetes_role, "jwt_path": client.kubernetes_jwt_path,
            "auth_type": client.auth_type}


print(json.dumps({"server": describe(conf._get_custom_secret_backend(worker_mode=False)),
                  "worker": describe(sdk_conf._get_custom_secret_backend(worker_mode=True))}))
