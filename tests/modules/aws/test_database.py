
import cdktf
import pytest

from tests.conftest import looks_like_secret as _looks_like_secret, make_props, only as _only, strings as _strings, synth

from modules.aws.database import Database, DatabaseProps

BASE = dict(name="af-db", vpc_id="vpc-1", subnet_ids=("subnet-a", "subnet-b"),
            logs_kms_key_arn="arn:aws:kms:eu-west-1:123456789012:key/logs")


def test_storage_insights_and_master_secret_use_the_database_key(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE))
    res = synth(stack)["resource"]
    key_address, key = _only(res, "aws_kms_key")
    _, alias = _only(res, "aws_kms_alias")
    _, instance = _only(res, "aws_db_instance")
    key_ref = f"${{aws_kms_key.{key_address}.arn}}"
    assert (key["enable_key_rotation"], alias["name"]) == (True, "alias/af-db-rds")
    assert (instance["storage_encrypted"], instance["storage_type"]) == (True, "gp3")
    assert {instance["kms_key_id"], instance["performance_insights_kms_key_id"],
            instance["master_user_secret_kms_key_id"]} == {key_ref}
    assert (instance["performance_insights_enabled"], instance["performance_insights_retention_period"]) == (True, 7)


def test_private_and_iam_auth_enabled(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE))
    _, instance = _only(synth(stack)["resource"], "aws_db_instance")
    assert (instance["publicly_accessible"], instance["iam_database_authentication_enabled"],
            instance["ca_cert_identifier"], instance["port"]) == (False, True, "rds-ca-rsa2048-g1", 5432)
    assert (instance["auto_minor_version_upgrade"], instance["apply_immediately"]) == (True, False)


def test_parameter_group_forces_tls_for_the_engine_major(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE, engine_version="16.4"))
    res = synth(stack)["resource"]
    group_address, group = _only(res, "aws_db_parameter_group")
    _, instance = _only(res, "aws_db_instance")
    params = {p["name"]: p["value"] for p in group["parameter"]}
    assert (group["family"], instance["engine"], instance["engine_version"]) == ("postgres16", "postgres", "16.4")
    assert params["rds.force_ssl"] == "1"
    assert (params["log_connections"], params["log_disconnections"], params["log_statement"],
            params["log_min_duration_statement"]) == ("1", "1", "ddl", "1000")
    assert instance["parameter_group_name"] == f"${{aws_db_parameter_group.{group_address}.name}}"


def test_multi_az_by_default(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE))
    _, instance = _only(synth(stack)["resource"], "aws_db_instance")
    assert instance["multi_az"] is True


def test_single_az_when_multi_az_off(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE, multi_az=False))
    _, instance = _only(synth(stack)["resource"], "aws_db_instance")
    assert instance["multi_az"] is False


def test_reachable_only_from_the_named_security_group(stack):
    database = Database(stack, "database", props=make_props(DatabaseProps, **BASE))
    database.allow_from("workers", source_security_group_id="sg-workers")
    res = synth(stack)["resource"]
    group_address, group = _only(res, "aws_security_group")
    _, rule = _only(res, "aws_vpc_security_group_ingress_rule")
    _, instance = _only(res, "aws_db_instance")
    assert "ingress" not in group and "egress" not in group
    assert (rule["security_group_id"], rule["referenced_security_group_id"], rule["ip_protocol"],
            rule["from_port"], rule["to_port"]) == (f"${{aws_security_group.{group_address}.id}}", "sg-workers",
                                                    "tcp", 5432, 5432)
    assert "cidr_ipv4" not in rule and "cidr_ipv6" not in rule
    assert instance["vpc_security_group_ids"] == [f"${{aws_security_group.{group_address}.id}}"]


def test_no_ingress_without_allow_from(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE))
    assert "aws_vpc_security_group_ingress_rule" not in synth(stack)["resource"]


def test_master_password_managed_by_rds_and_never_in_the_json(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE))
    doc = synth(stack)
    _, instance = _only(doc["resource"], "aws_db_instance")
    assert (instance["manage_master_user_password"], instance["username"]) == (True, "airflow_admin")
    assert not {"password", "password_wo"} & set(instance)
    assert [s for s in _strings(instance) if _looks_like_secret(s)] == []
    assert "password" not in cdktf.Testing.synth(stack).lower().replace("manage_master_user_password", "")


def test_secret_detector_flags_a_literal_password():
    assert _looks_like_secret("Xk39fLmQ27pzTr") and not _looks_like_secret("rds-ca-rsa2048-g1")


def test_log_exports_go_to_encrypted_log_groups_with_retention(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE, log_retention_days=90))
    res = synth(stack)["resource"]
    _, instance = _only(res, "aws_db_instance")
    groups = {body["name"]: (address, body) for address, body in res["aws_cloudwatch_log_group"].items()}
    assert set(groups) == {"/aws/rds/instance/af-db/postgresql", "/aws/rds/instance/af-db/upgrade"}
    assert {(b["retention_in_days"], b["kms_key_id"]) for _, b in groups.values()} == {(90, BASE["logs_kms_key_arn"])}
    assert instance["enabled_cloudwatch_logs_exports"] == ["postgresql", "upgrade"]
    assert sorted(instance["depends_on"]) == sorted(f"aws_cloudwatch_log_group.{a}" for a, _ in groups.values())


def test_deletion_protection_keeps_a_final_snapshot_and_backups(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE))
    _, instance = _only(synth(stack)["resource"], "aws_db_instance")
    assert (instance["deletion_protection"], instance["skip_final_snapshot"], instance["final_snapshot_identifier"],
            instance["delete_automated_backups"]) == (True, False, "af-db-final", False)
    assert (instance["backup_retention_period"], instance["copy_tags_to_snapshot"]) == (30, True)
    assert (instance["backup_window"], instance["maintenance_window"]) == ("02:00-03:00", "sun:03:30-sun:04:30")


def test_without_deletion_protection_skips_the_final_snapshot(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE, deletion_protection=False))
    _, instance = _only(synth(stack)["resource"], "aws_db_instance")
    assert (instance["deletion_protection"], instance["skip_final_snapshot"]) == (False, True)
    assert "final_snapshot_identifier" not in instance


def test_enhanced_monitoring_uses_the_rds_monitoring_role(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE))
    res = synth(stack)["resource"]
    role_address, role = _only(res, "aws_iam_role")
    _, attachment = _only(res, "aws_iam_role_policy_attachment")
    _, instance = _only(res, "aws_db_instance")
    assert '"Service": "monitoring.rds.amazonaws.com"' in role["assume_role_policy"]
    assert attachment["policy_arn"] == "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
    assert (instance["monitoring_interval"], instance["monitoring_role_arn"]) == (
        60, f"${{aws_iam_role.{role_address}.arn}}")


def test_no_monitoring_role_when_enhanced_monitoring_off(stack):
    Database(stack, "database", props=make_props(DatabaseProps, **BASE, monitoring_interval_seconds=0))
    res = synth(stack)["resource"]
    _, instance = _only(res, "aws_db_instance")
    assert "aws_iam_role" not in res and "monitoring_role_arn" not in instance and instance["monitoring_interval"] == 0


def test_attributes_reference_the_instance(stack):
    database = Database(stack, "database", props=make_props(DatabaseProps, **BASE))
    cdktf.TerraformOutput(stack, "out", value={"endpoint": database.endpoint, "secret": database.master_secret_arn,
                                               "resource_id": database.resource_id, "sg": database.security_group_id})
    doc = synth(stack)
    instance_address, _ = _only(doc["resource"], "aws_db_instance")
    (output,) = doc["output"].values()
    ref = f"aws_db_instance.{instance_address}"
    assert output["value"]["endpoint"] == f"${{{ref}.endpoint}}"
    assert output["value"]["secret"] == f"${{{ref}.master_user_secret[0].secret_arn}}"
    assert output["value"]["resource_id"] == f"${{{ref}.resource_id}}"
    assert (database.port, database.database_name, database.master_username) == (5432, "airflow", "airflow_admin")


@pytest.mark.parametrize("field, value, message", [
    ("instance_class", "db.z9.large", r"instance_class='db.z9.large' is not an RDS for PostgreSQL instance family.*"
                                      r"fix: use 'db.<family>.<size>'"),
    ("instance_class", "db.t4g.4xlarge", r"size the db.t4g family lacks"),
    ("instance_class", "db.t4g.micro", r"does not support Performance Insights"),
    ("log_retention_days", 45, r"log_retention_days=45 is not a retention period CloudWatch Logs accepts"),
    ("engine_version", "12.19", r"engine_version='12.19' is not a supported RDS PostgreSQL version"),
    ("engine_version", "17", r"engine_version='17' .*fix: use 'MAJOR.MINOR'"),
    ("max_allocated_storage_gib", 50, r"max_allocated_storage_gib=50 is not above allocated_storage_gib=50"),
    ("backup_retention_days", 0, r"backup_retention_days=0 is outside 1-35"),
    ("performance_insights_retention_days", 30, r"performance_insights_retention_days=30 is not a Performance"),
    ("monitoring_interval_seconds", 2, r"monitoring_interval_seconds=2 is not an enhanced-monitoring interval"),
    ("name", "a" * 51, r"is not a valid RDS instance identifier"),
    ("name", "Airflow", r"is not a valid RDS instance identifier"),
    ("subnet_ids", ("subnet-a",), r"subnet_ids=\['subnet-a'\] has fewer than 2 subnets"),
    ("master_username", "rdsadmin", r"master_username='rdsadmin' is not a master user name RDS accepts"),
    ("ca_cert_identifier", "rds-ca-2019", r"ca_cert_identifier='rds-ca-2019' is not an RDS certificate authority"),
])
def test_rejects_bad_input(field, value, message):
    with pytest.raises(ValueError, match=message):
        make_props(DatabaseProps, **{**BASE, field: value})


def test_accepts_long_performance_insights_retention():
    assert make_props(DatabaseProps, **BASE, performance_insights_retention_days=731).settings.performance_insights_retention_days == 731
    assert make_props(DatabaseProps, **BASE, performance_insights_retention_days=93).settings.performance_insights_retention_days == 93


@pytest.mark.parametrize("field,value,match", [
    ("backup_window", "2:00-3:00", r"backup_window='2:00-3:00' is not a daily UTC window; fix: use 'hh:mm-hh:mm'"),
    ("maintenance_window", "sunday:03:30-sun:04:30", r"maintenance_window='sunday:03:30-sun:04:30' is not a weekly UTC window"),
])
def test_malformed_windows_are_refused(field, value, match):
    with pytest.raises(ValueError, match=match):
        make_props(DatabaseProps, **{**BASE, field: value})
