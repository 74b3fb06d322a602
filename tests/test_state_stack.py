"""The bootstrap stack: the state bucket and its key, and the switch to the S3 backend once migrated."""
from __future__ import annotations

import dataclasses
import json

import cdktf

from environments.common import ACCOUNT_ID, STATE
from stacks.state import StateStack


def test_state_bucket_is_protected_versioned_and_encrypted_with_a_rotating_key(stacks):
    res = stacks["airflow-state"]["resource"]
    buckets = {b["bucket"]: b for b in res["aws_s3_bucket"].values()}
    state = buckets["example-airflow-terraform-state"]
    assert state["lifecycle"] == {"prevent_destroy": True} and state["force_destroy"] is False
    (key,) = res["aws_kms_key"].values()
    assert key["enable_key_rotation"] is True
    (alias,) = res["aws_kms_alias"].values()
    assert alias["name"] == "alias/terraform-state"
    kms_rules = [r["rule"][0]["apply_server_side_encryption_by_default"]
                 for r in res["aws_s3_bucket_server_side_encryption_configuration"].values()
                 if r["rule"][0]["apply_server_side_encryption_by_default"]["sse_algorithm"] == "aws:kms"]
    assert len(kms_rules) == 1 and "aws_kms_key" in kms_rules[0]["kms_master_key_id"]
    lifecycle_rules = [c["rule"][0] for c in res["aws_s3_bucket_lifecycle_configuration"].values()]
    assert {"noncurrent_days": 90} in [r["noncurrent_version_expiration"][0] for r in lifecycle_rules]
    assert len(res["aws_s3_bucket_versioning"]) == 2 and len(res["aws_s3_bucket_public_access_block"]) == 2


def test_migrated_state_stack_uses_its_own_bucket_as_s3_backend():
    app = cdktf.Testing.app()
    stack = StateStack(app, "airflow-state", state=dataclasses.replace(STATE, migrated=True), account_id=ACCOUNT_ID)
    backend = json.loads(cdktf.Testing.synth(stack))["terraform"]["backend"]
    assert backend == {"s3": {"bucket": STATE.bucket, "key": "global/state.tfstate", "region": STATE.region,
                              "encrypt": True, "use_lockfile": True,
                              "kms_key_id": f"arn:aws:kms:{STATE.region}:{ACCOUNT_ID}:alias/terraform-state"}}


def test_state_stack_creates_ci_roles_trusted_only_by_the_configured_repository(stacks):
    res = stacks["airflow-state"]["resource"]
    subjects = {}
    for role in res["aws_iam_role"].values():
        (stmt,) = json.loads(role["assume_role_policy"])["Statement"]
        subjects[role["name"]] = stmt["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]
    assert all(s.startswith("repo:example-org/airflow-platform:") for subs in subjects.values()
               for s in ([subs] if isinstance(subs, str) else subs))
    assert {"plan-role-arn", "deploy-role-arn"} <= set(stacks["airflow-state"]["output"])
