"""The PR plan report on crafted `terraform show -json` edge cases (real emulator plans: test_rehearsal.py)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import plan_report
from tools.plan_report import EXIT_BAD_INPUT, EXIT_DATA_AT_RISK, EXIT_OK

PLANS = Path(__file__).parent / "data" / "plans"
ROOT = Path(__file__).resolve().parent.parent


def report(capsys, path: Path) -> tuple[int, str, str]:
    status = plan_report.main([str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def table_rows(markdown: str, header: str) -> list[list[str]]:
    """Rows of the Markdown table right after the line `header` (cells stripped, separators dropped)."""
    lines = markdown.splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_no_change_plan_reports_zero_counts_and_exits_0(capsys):
    status, out, _ = report(capsys, PLANS / "no_changes.json")
    assert status == EXIT_OK
    assert table_rows(out, "| stack | create | update | replace | delete |") == [["`no_changes`", "0", "0", "0", "0"]]
    assert "None: no stateful resource is deleted or replaced." in out and "No changes." in out


def test_create_only_plan_counts_creates_and_ignores_reads_and_no_ops(capsys):
    status, out, _ = report(capsys, PLANS / "create_only.json")
    assert status == EXIT_OK
    assert table_rows(out, "| stack | create | update | replace | delete |") == [["`create_only`", "3", "0", "0", "0"]]
    assert table_rows(out, "| address | action |") == [
        ["`aws_kms_key.logs-key_key_1A2B3C4D`", "create"], ["`aws_s3_bucket.storage_dags_bucket_5E6F7A8B`", "create"],
        ["`aws_iam_role.identities_vault_role_9C0D1E2F`", "create"]]
    assert "aws_vpc.network_vpc" not in out and "data.aws_iam_policy_document" not in out


def test_replaced_database_is_data_at_risk_with_the_argument_forcing_it(capsys):
    status, out, _ = report(capsys, PLANS / "replace_database.json")
    assert status == EXIT_DATA_AT_RISK
    assert table_rows(out, "| stack | create | update | replace | delete |") == [
        ["`replace_database`", "0", "1", "2", "0"]]
    # the replaced IAM role (create-before-destroy order) counts as a replace but holds no data
    (risk,) = table_rows(out, "| stack | address | action | forced by |")
    assert risk == ["`replace_database`", "`aws_db_instance.database_instance_D7FC2283`", "**replace**", "`identifier`"]


def test_deleted_bucket_is_data_at_risk_but_its_versioning_config_is_not(capsys):
    status, out, _ = report(capsys, PLANS / "delete_bucket.json")
    assert status == EXIT_DATA_AT_RISK
    (risk,) = table_rows(out, "| stack | address | action | forced by |")
    assert risk[1:3] == ["`aws_s3_bucket.storage_plugins_bucket_12345678`", "**delete**"]
    assert table_rows(out, "| stack | create | update | replace | delete |") == [["`delete_bucket`", "0", "0", "0", "2"]]


def test_only_ebs_backed_helm_releases_are_at_risk(capsys):
    status, out, _ = report(capsys, PLANS / "helm_releases.json")
    assert status == EXIT_DATA_AT_RISK
    (risk,) = table_rows(out, "| stack | address | action | forced by |")
    assert risk[1:] == ["`helm_release.vault`", "**replace**", "`namespace`"]   # not the deleted airflow release


def test_directory_reports_one_section_per_stack_named_by_file_stem(capsys, tmp_path):
    shutil.copy(PLANS / "create_only.json", tmp_path / "airflow-dev-infra.json")
    shutil.copy(PLANS / "delete_bucket.json", tmp_path / "airflow-state.json")
    (tmp_path / "notes.txt").write_text("not a plan, not *.json: ignored")
    status, out, _ = report(capsys, tmp_path)
    assert status == EXIT_DATA_AT_RISK
    assert table_rows(out, "| stack | create | update | replace | delete |") == [
        ["`airflow-dev-infra`", "3", "0", "0", "0"], ["`airflow-state`", "0", "0", "0", "2"]]
    (risk,) = table_rows(out, "| stack | address | action | forced by |")
    assert risk[0] == "`airflow-state`"
    assert "### `airflow-dev-infra`" in out and "### `airflow-state`" in out


@pytest.mark.parametrize(("name", "message"), [
    ("not_json.json", r"not_json\.json: not JSON \(Expecting value at line 1\)"),
    ("state_not_plan.json", r"state_not_plan\.json: JSON but not a Terraform plan"),
    ("missing.json", r"missing\.json: no such file"),
])
def test_bad_input_prints_one_line_and_exits_2(capsys, name, message):
    status, out, err = report(capsys, PLANS / name)
    assert status == EXIT_BAD_INPUT and out == ""
    (line,) = err.splitlines()
    assert line.startswith("plan-report: error: ") and re.search(message, line)


def test_empty_directory_is_bad_input(capsys, tmp_path):
    status, _, err = report(capsys, tmp_path)
    assert (status, err.strip()) == (EXIT_BAD_INPUT, f"plan-report: error: {tmp_path}: directory holds no *.json plan files")


def test_json_list_is_not_a_plan(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"format_version": "1.2"}]))
    with pytest.raises(plan_report.PlanError, match="JSON but not a Terraform plan"):
        plan_report.load_plan(path)


@pytest.mark.parametrize(("actions", "expected"), [
    (["create"], "create"), (["update"], "update"), (["delete"], "delete"), (["delete", "create"], "replace"),
    (["create", "delete"], "replace"), (["no-op"], None), (["read"], None), (["forget"], "forget"),
])
def test_action_names(actions, expected):
    assert plan_report.action_of(actions) == expected


def test_oci_chart_reference_is_matched_by_its_last_segment():
    change = {"before": {"chart": "oci://registry.example.com/charts/kube-prometheus-stack"}, "after": None}
    assert plan_report.is_stateful("helm_release", change) is True
    assert plan_report.is_stateful("helm_release", {"before": {"chart": "airflow"}}) is False


def test_command_line_exit_status_and_stderr_without_traceback():
    """`python -m tools.plan_report` as CI runs it: the exit status is the process's."""
    risky = subprocess.run([sys.executable, "-m", "tools.plan_report", str(PLANS / "replace_database.json")],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    bad = subprocess.run([sys.executable, "-m", "tools.plan_report", str(PLANS / "not_json.json")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert risky.returncode == EXIT_DATA_AT_RISK and "### Data at risk" in risky.stdout
    assert bad.returncode == EXIT_BAD_INPUT and len(bad.stderr.splitlines()) == 1 and "Traceback" not in bad.stderr


def test_status_file_carries_the_exit_status_make_would_flatten(capsys, tmp_path):
    status_file = tmp_path / "status"
    assert plan_report.main([str(PLANS / "delete_bucket.json"), "--status-file", str(status_file)]) == EXIT_DATA_AT_RISK
    assert status_file.read_text() == "3\n"
    assert plan_report.main([str(PLANS / "not_json.json"), "--status-file", str(status_file)]) == EXIT_BAD_INPUT
    assert status_file.read_text() == "2\n"
    capsys.readouterr()
