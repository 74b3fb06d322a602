"""Pure helpers for IAM and resource policy documents (deterministic JSON, no data sources)."""
from __future__ import annotations

import json
from typing import Any


def policy_document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=False)


def statement(sid: str, actions: list[str], resources: list[str] | str, *, effect: str = "Allow",
              principal: dict[str, Any] | str | None = None, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    stmt: dict[str, Any] = {"Sid": sid, "Effect": effect}
    if principal is not None:
        stmt["Principal"] = principal
    stmt["Action"] = actions
    stmt["Resource"] = resources
    if condition:
        stmt["Condition"] = condition
    return stmt


def deny_insecure_transport(resources: list[str]) -> dict[str, Any]:
    """Refuse every request that is not made over TLS (aws:SecureTransport=false)."""
    return statement("DenyInsecureTransport", ["s3:*"], resources, effect="Deny", principal="*",
                     condition={"Bool": {"aws:SecureTransport": "false"}})


def service_assume_role_policy(service: str, *, source_account: str | None = None) -> str:
    """Trust policy letting one AWS service assume a role, optionally only on behalf of this account."""
    stmt: dict[str, Any] = {"Sid": "AssumeByService", "Effect": "Allow", "Principal": {"Service": service},
                            "Action": "sts:AssumeRole"}
    if source_account:
        stmt["Condition"] = {"StringEquals": {"aws:SourceAccount": source_account}}
    return policy_document(stmt)
