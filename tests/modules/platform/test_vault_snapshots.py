"""Raft snapshots: a CronJob in Vault's namespace that logs in with a snapshot-only role (projected token for Vault's
audience), saves a snapshot into an emptyDir with the server's own image, and uploads it with the AWS CLI under the
Pod Identity of its own service account; pinned images, restricted-style security contexts."""
from __future__ import annotations

import json

import pytest

from modules.aws.identity import WORKLOADS
from modules.aws.vault_storage import SNAPSHOT_PREFIX
from modules.core.validation import ConfigError
from modules.platform import kubernetes as k8s
from modules.platform.vault import VAULT_IMAGE
from modules.platform.vault_settings import VaultSettings
from modules.platform.vault_snapshots import (AWS_CLI_IMAGE, VaultSnapshots, VaultSnapshotsProps, snapshot_objects,
                                              snapshot_policy)
from tests.modules.platform.test_vault import platform_stack
from tests.conftest import synth


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    stack, bootstrap = platform_stack()
    VaultSnapshots(stack, "vault-snapshots", bootstrap=bootstrap, props=VaultSnapshotsProps(
        settings=VaultSettings(snapshot_schedule="15 */4 * * *"), bucket="af-test-vault-snapshots",
        region="eu-west-1"))
    (raw,) = synth(stack)["resource"]["helm_release"]["platform-bootstrap"]["values"]
    return {o["kind"]: o for o in json.loads(raw)["objects"]}


def pod_of(objects) -> dict:
    return objects["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_cronjob_runs_on_the_schedule_one_at_a_time_under_the_pod_identity_service_account(objects):
    cronjob, account = objects["CronJob"], objects["ServiceAccount"]
    namespace, (service_account,) = WORKLOADS["vault-snapshot"]
    assert (cronjob["metadata"]["namespace"], account["metadata"]["namespace"]) == (namespace, namespace) == (
        k8s.VAULT_NAMESPACE, k8s.VAULT_NAMESPACE)
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("15 */4 * * *", "Etc/UTC", "Forbid")
    pod = pod_of(objects)
    assert pod["serviceAccountName"] == account["metadata"]["name"] == service_account
    assert pod["automountServiceAccountToken"] is False and account["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"


def test_snapshot_step_logs_in_with_the_snapshot_role_and_a_token_for_vaults_audience(objects):
    pod = pod_of(objects)
    (snapshot,) = pod["initContainers"]
    assert snapshot["image"] == VAULT_IMAGE
    script = snapshot["command"][-1]
    assert f"auth/kubernetes/login role={k8s.VAULT_SNAPSHOT_ROLE}" in script and f"jwt=@{k8s.VAULT_TOKEN_FILE}" in script
    assert "vault operator raft snapshot save /snapshots/vault.snap" in script
    env = {e["name"]: e["value"] for e in snapshot["env"]}
    assert env["VAULT_ADDR"] == k8s.VAULT_ADDRESS and env["VAULT_CACERT"].endswith("/ca.crt")
    volumes = {v["name"]: v for v in pod["volumes"]}
    ((token,),) = [v["projected"]["sources"] for v in volumes.values()
                   if any("serviceAccountToken" in s for s in v.get("projected", {}).get("sources", []))]
    assert token["serviceAccountToken"]["audience"] == k8s.VAULT_TOKEN_AUDIENCE
    # only the CA of Vault's TLS Secret is mounted, never its private key
    (ca,) = volumes["vault-ca"]["projected"]["sources"]
    assert ca["secret"] == {"name": k8s.VAULT_TLS_SECRET, "items": [{"key": "ca.crt", "path": "ca.crt"}]}


def test_upload_step_copies_under_the_snapshot_prefix_of_the_bucket_with_the_pinned_cli(objects):
    (upload,) = pod_of(objects)["containers"]
    assert upload["image"] == AWS_CLI_IMAGE and ":" in AWS_CLI_IMAGE and not AWS_CLI_IMAGE.endswith(":latest")
    env = {e["name"]: e["value"] for e in upload["env"]}
    assert (env["SNAPSHOT_BUCKET"], env["AWS_REGION"]) == ("af-test-vault-snapshots", "eu-west-1")
    assert f'key="{SNAPSHOT_PREFIX}/' in upload["command"][-1] and '"s3://$SNAPSHOT_BUCKET/$key"' in upload["command"][-1]
    assert not any(e["name"].startswith("AWS_ACCESS_KEY") or e["name"] == "AWS_SECRET_ACCESS_KEY" for e in upload["env"])
    assert {"name": "snapshots", "mountPath": "/snapshots", "readOnly": True} in upload["volumeMounts"]


def test_every_container_runs_non_root_read_only_without_capabilities(objects):
    pod = pod_of(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in [*pod["initContainers"], *pod["containers"]]:
        sc = container["securityContext"]
        assert (sc["allowPrivilegeEscalation"], sc["readOnlyRootFilesystem"], sc["capabilities"]) == (
            False, True, {"drop": ["ALL"]}), container["name"]
        assert container["resources"]["limits"]["memory"], container["name"]


def test_snapshot_policy_reads_the_raft_snapshot_and_nothing_else():
    assert snapshot_policy() == {"path": {"sys/storage/raft/snapshot": {"capabilities": ["read"]}}}


def test_objects_name_the_bucket_given():
    (_, cronjob) = snapshot_objects(bucket="b-x", region="eu-west-1", schedule="0 0 * * *")
    (upload,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "SNAPSHOT_BUCKET", "value": "b-x"} in upload["env"]


@pytest.mark.parametrize("change,field,message", [
    ({"snapshot_schedule": "every 6 hours"}, "vault.snapshot_schedule", "is not a five-field cron schedule"),
    ({"snapshot_schedule": "0 */6 * *"}, "vault.snapshot_schedule", "is not a five-field cron schedule"),
    ({"snapshot_retention_days": 0}, "vault.snapshot_retention_days", "is not between 1 and 3650 days"),
])
def test_settings_refuse_bad_schedules_and_retention(change, field, message):
    with pytest.raises(ConfigError, match=message) as err:
        VaultSettings(**change)
    assert err.value.field == field


def test_props_refuse_a_bad_bucket_name():
    with pytest.raises(ConfigError, match="is not a valid S3 bucket name") as err:
        VaultSnapshotsProps(bucket="Snapshots_Bucket", region="eu-west-1")
    assert err.value.field == "bucket"
