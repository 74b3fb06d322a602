"""Uploaded to the DAG bundle by `make rehearse-airflow` only (not a product DAG): a task that reads a Variable and a
Connection through the configured secrets backend (VaultBackend -> OpenBao), as DAG code on the platform does."""
from __future__ import annotations

from airflow.sdk import BaseHook, Variable, dag, task


@dag(dag_id="rehearsal_vault_read", schedule=None, catchup=False, tags=["rehearsal"])
def rehearsal_vault_read():
    @task
    def read_from_vault() -> dict:
        conn = BaseHook.get_connection("rehearsal_service")
        return {"variable": Variable.get("rehearsal_greeting"), "conn_type": conn.conn_type, "host": conn.host,
                "login": conn.login, "password_length": len(conn.password or "")}

    read_from_vault()


rehearsal_vault_read()
