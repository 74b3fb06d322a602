"""The command line: one clear line and exit 2 on bad input, cdktf.out untouched; a table on success."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import main

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def tree_digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def previous_output(tmp_path: Path) -> Path:
    out = tmp_path / "cdktf.out"
    (out / "stacks" / "airflow-dev-infra").mkdir(parents=True)
    (out / "stacks" / "airflow-dev-infra" / "cdk.tf.json").write_text('{"previous": true}')
    (out / "manifest.json").write_text("{}")
    return out


BAD_INPUT = [
    (["--env", "qa"], "env='qa' is not a known environment", "use one of dev, staging, prod"),
    (["--env", "dev", "--set", "network.vpc_cidr=10.0.0.0/33"], "environments.dev.network.vpc_cidr='10.0.0.0/33'",
     "is not a valid IPv4 CIDR block"),
    (["--env", "dev", "--set", "network.vpc_cidr=10.0.0.300/16"], "network.vpc_cidr='10.0.0.300/16'", "fix:"),
    (["--env", "dev", "--set", 'network.database_subnet_cidrs=["10.10.0.0/24","10.10.164.0/22"]'],
     "network.database_subnet_cidrs[0]='10.10.0.0/24' overlaps network.private_subnet_cidrs[0]", "non-overlapping"),
    (["--env", "dev", "--set", "network.az_count=1"], "environments.dev.network.az_count=1 must be between 2 and 4",
     "use at least 2 AZs"),
    (["--env", "prod", "--set", "network.az_count=2"], "environments.prod.network.az_count=2 is below 3 for a production",
     "use 3 or more AZs in production"),
    (["--env", "prod", "--set", "deletion_protection=false"], "environments.prod.deletion_protection=False is off",
     "set deletion_protection=True"),
    (["--env", "staging", "--set", "domain=data..example.com"], "environments.staging.domain='data..example.com' is not a valid DNS",
     "lowercase labels"),
    (["--env", "dev", "--set", "tags.owner="], "environments.dev.tags.owner='' is empty", "non-empty value"),
    (["--env", "dev", "--set", "tags.extra.team= "], "environments.dev.tags.extra.team=' ' is empty", "non-empty value"),
    (["--env", "dev", "--set", "log_retention_days=10"], "log_retention_days=10 is not a retention period",
     "use one of 1, 3, 5"),
    (["--env", "dev", "--set", "database.instance_class=db.zz9.large"],
     "environments.dev.database.instance_class='db.zz9.large'", "fix:"),
    (["--env", "dev", "--set", "cache.node_type=cache.x9.large"], "environments.dev.cache.node_type='cache.x9.large'",
     "fix: use 'cache.<family>.<size>'"),
    (["--env", "dev", "--set", 'cluster.system_instance_types=["q9.large"]'], "environments.dev.cluster.", "fix:"),
    (["--env", "prod", "--set", "database.multi_az=false"], "environments.prod.database.multi_az=False is off",
     "set database.multi_az=True"),
    (["--env", "prod", "--set", "cache.multi_az=false"], "environments.prod.cache.multi_az=False is off", "fix:"),
    (["--env", "dev", "--set", "storage.bucket_prefix=Bad_Prefix"], "storage.bucket_prefix='Bad_Prefix-dags' is not a "
     "valid S3 bucket name", "lowercase letters"),
    (["--env", "dev", "--set", "nosuchfield=1"], "--set='nosuchfield' names no config field", "use one of"),
    (["--env", "dev", "--set", "network.az_count=three"], "environments.dev.network.az_count='three' is not a whole number",
     "fix: give a whole number"),
    (["--env", "dev", "--set", 'cluster.admin_role_arns=["arn:aws:iam::123:user"]'],
     "environments.dev.cluster.admin_role_arns='arn:aws:iam::123:user' is not an IAM role or user ARN", "fix: use arn:"),
    # front door (modules/aws/edge.py via environments.<env>.edge)
    (["--env", "dev", "--set", "domain=-bad-.example.com"], "environments.dev.domain='-bad-.example.com' is not a valid DNS",
     "lowercase labels"),
    (["--env", "dev", "--set", "edge.extra_sans=api.example.org"],
     "environments.dev.edge.extra_sans[0]='api.example.org' is outside the zone 'dev.data.example.com'",
     "fix: use a name ending in '.dev.data.example.com'"),
    (["--env", "dev", "--set", "edge.ingress_cidrs=203.0.113.0/24,"], "environments.dev.edge.ingress_cidrs[1]='' is empty",
     "fix: remove the empty entry"),
    (["--env", "staging", "--set", "edge.waf_rate_limit=9"], "environments.staging.edge.waf_rate_limit=9 is outside",
     "fix: use 10-2000000000"),
]


def test_one_environment_synthesizes_only_its_stacks_and_prints_the_table(tmp_path, previous_output):
    result = run(["--env", "dev", "--out", str(previous_output)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""                # no Node end-of-life or deprecation banner
    rows = dict(line.split() for line in result.stdout.strip().splitlines()[1:])
    assert set(rows) == {"airflow-state-111111111111", "airflow-dev-infra", "airflow-dev-platform",
                         "airflow-dev-vault-config"}
    assert int(rows["airflow-dev-infra"]) > 30
    assert sorted(p.name for p in (previous_output / "stacks").iterdir()) == [
        "airflow-dev-infra", "airflow-dev-platform", "airflow-dev-vault-config", "airflow-state-111111111111"]
    assert '"previous"' not in (previous_output / "stacks" / "airflow-dev-infra" / "cdk.tf.json").read_text()


# cluster add-ons (environments/sections/addons.py, modules/platform/addons.py via environments.<env>.addons)
ADDONS_BAD_INPUT = [
    (["--env", "dev", "--set", "addons.controller_replicas=0"], "environments.dev.addons.controller_replicas=0 is outside 1-5",
     "fix: use 1 for dev"),
    (["--env", "dev", "--set", "addons.worker_instance_sizes=huge"],
     "environments.dev.addons.worker_instance_sizes=['huge'] is empty or names an unknown instance size", "fix: use sizes"),
    (["--env", "dev", "--set", "addons.worker_instance_families=q9"],
     "environments.dev.addons.worker_instance_families=['q9'] names no known instance family", "fix: use families from"),
    (["--env", "staging", "--set", "addons.worker_instance_families=m7i,m7g"],
     "environments.staging.addons.worker_instance_families=['m7i', 'm7g'] mixes x86_64 and Graviton", "fix: use one"),
    (["--env", "dev", "--set", "addons.worker_disruption_budget=0%"],
     "environments.dev.addons.worker_disruption_budget='0%' is not a node count or percentage above zero", "fix:"),
    (["--env", "dev", "--set", "addons.worker_consolidate_after=5 minutes"],
     "environments.dev.addons.worker_consolidate_after='5 minutes' is not a duration", "fix: use hours/minutes"),
    (["--env", "dev", "--set", "addons.worker_ami_alias=ubuntu@latest"],
     "environments.dev.addons.worker_ami_alias='ubuntu@latest' is not an EC2NodeClass AMI alias", "fix:"),
    (["--env", "prod", "--set", "addons.controller_replicas=1"],
     "environments.prod.addons.controller_replicas=1 is a single point of failure in production", "fix:"),
    (["--env", "prod", "--set", "addons.storage_reclaim_policy=Delete"],
     "environments.prod.addons.storage_reclaim_policy='Delete' lets a deleted claim destroy", "fix: use"),
    (["--env", "prod", "--set", "addons.worker_ami_alias=al2023@latest"],
     "environments.prod.addons.worker_ami_alias='al2023@latest' lets AWS's next AMI release replace every production",
     "fix: pin a release staging has run"),
]


MONITORING_BAD_INPUT = [
    (["--env", "dev", "--set", "monitoring.prometheus_retention=15 days"],
     "environments.dev.monitoring.prometheus_retention='15 days' is not a Prometheus duration",
     "fix: use a number and a unit"),
    (["--env", "dev", "--set", "monitoring.prometheus_retention_size=30GB"],
     "environments.dev.monitoring.prometheus_retention_size='30GB' does not fit 90% of prometheus_storage_gib=20",
     "fix: lower the retention size"),
    (["--env", "staging", "--set", "monitoring.alertmanager_retention=5d"],
     "environments.staging.monitoring.alertmanager_retention='5d' is not an Alertmanager retention", "fix: use"),
    (["--env", "dev", "--set", "monitoring.task_failure_ratio=1.5"],
     "environments.dev.monitoring.task_failure_ratio=1.5 is not a ratio between 0 and 1", "fix: use a share"),
    (["--env", "dev", "--set", "monitoring.grafana_storage_gib=0"],
     "environments.dev.monitoring.grafana_storage_gib=0 is outside 1-1024", "fix: use a whole number"),
    (["--env", "prod", "--set", "monitoring.prometheus_replicas=1"],
     "environments.prod.monitoring.prometheus_replicas=1 is below 2 for a production environment",
     "fix: set monitoring.prometheus_replicas=2 or more"),
]


# Vault release and vault-config stack (environments/sections/vault.py via environments.<env>.vault)
VAULT_BAD_INPUT = [
    (["--env", "dev", "--set", "vault.replicas=2"],
     "environments.dev.vault.replicas=2 is not an odd number of raft voters", "fix: use 1 (dev), 3 or 5"),
    (["--env", "prod", "--set", "vault.replicas=1"],
     "environments.prod.vault.replicas=1 is below 3 for a production environment", "fix: use 3 (or 5) replicas"),
    (["--env", "dev", "--set", "vault.data_storage_size=10GB"],
     "environments.dev.vault.data_storage_size='10GB' is not a volume size", "fix: use a Kubernetes quantity"),
    (["--env", "dev", "--set", "vault.address=http://127.0.0.1:8200"],
     "environments.dev.vault.address='http://127.0.0.1:8200' is not an https URL", "fix: use e.g. 'https://127.0.0.1:8200'"),
    (["--env", "staging", "--set", "vault.ca_cert_file=vault-ca.crt"],
     "environments.staging.vault.ca_cert_file='vault-ca.crt' is not an absolute path", "fix: use an absolute or ~/ path"),
    (["--env", "dev", "--set", "vault.airflow_token_ttl=7200"],
     "environments.dev.vault.airflow_token_ttl=7200 exceeds airflow_token_max_ttl=3600", "fix: keep the TTL"),
    (["--env", "dev", "--set", "vault.memory=lots"], "environments.dev.vault.memory='lots' is not a memory quantity",
     "fix: use Mi or Gi"),
]


# Events and optional MSK (environments/sections/events.py, modules/aws/event_patterns.py, modules/aws/kafka.py)
EVENTS_BAD_INPUT = [
    (["--env", "dev", "--set", 'events.rules=[{"name": "orders", "event_pattern": {"source": ["app.orders"]}'],
     "environments.dev.events.rules='[{\"name\": \"orders\", \"event_pattern\": {\"source\": [\"app.orders\"]}' is not "
     "valid JSON (Expecting ',' delimiter", "fix: pass a JSON list of rules"),
    (["--env", "dev", "--set", 'events.rules=[{"name": "orders", "event_pattern": "{\\"source\\": [\\"a\\"]"}]'],
     "environments.dev.events.rules[0].event_pattern='{\"source\": [\"a\"]' is not valid JSON", "fix: give a JSON object"),
    (["--env", "dev", "--set", 'events.rules=[{"name": "orders", "event_pattern": {"sources": ["a"]}}]'],
     "environments.dev.events.rules[0].event_pattern={'sources': ['a']} matches unknown event fields ['sources']",
     "fix: use only version, id, detail-type, source"),
    (["--env", "dev", "--set", "events.kafka=true"],
     "environments.dev.events.kafka_availability_zones=[] gives 0 broker subnets while kafka=True",
     "fix: list 2 or 3 of the environment's availability zones"),
    (["--env", "staging", "--set", 'events.kafka_availability_zones=["eu-west-1a"]'],
     "environments.staging.events.kafka_availability_zones=['eu-west-1a'] gives 1 broker subnets",
     "fix: list 2 or 3"),
    (["--env", "dev", "--set", 'events.kafka_availability_zones=["eu-west-1a","eu-west-1c"]', "--set", "events.kafka=true"],
     "environments.dev.events.kafka_availability_zones=['eu-west-1a', 'eu-west-1c'] names zones ['eu-west-1c']",
     "fix: use zones from ['eu-west-1a', 'eu-west-1b']"),
    (["--env", "prod", "--set", "events.kafka_mode=serverless"],
     "environments.prod.events.kafka_mode='serverless' cannot use a customer KMS key", "fix: use kafka_mode='provisioned'"),
    (["--env", "dev", "--set", "events.max_receive_count=0"], "environments.dev.events.max_receive_count=0 is outside 1-1000",
     "fix: use 1-1000"),
]


# alerting (modules/aws/alarm_thresholds.py via environments.<env>.alarms)
ALARMS_BAD_INPUT = [
    (["--env", "dev", "--set", "alarms.rds_cpu_percent=150"],
     "environments.dev.alarms.rds_cpu_percent=150 is outside 1-100 percent", "fix: set a threshold in 1-100 percent"),
    (["--env", "prod", "--set", "alarms.rds_free_storage_bytes=0"],
     "environments.prod.alarms.rds_free_storage_bytes=0 is outside 1 or more bytes", "fix: set a threshold"),
    (["--env", "staging", "--set", "alarms.evaluation_periods=0"],
     "environments.staging.alarms.evaluation_periods=0 must be a whole number of periods", "fix: use 1 or more"),
    (["--env", "staging", "--set", "alarms.slack_channel_id=#airflow-alerts"],
     "environments.staging.alarms.slack_channel_id='#airflow-alerts' is not a Slack channel id",
     "fix: copy the id at the end of the channel's link"),
    (["--env", "prod", "--set", "alarms.slack_workspace_id=my-workspace"],
     "environments.prod.alarms.slack_workspace_id='my-workspace' is not a Slack workspace (team) id",
     "fix: copy the workspace id shown in the AWS Chatbot console"),
]


# ---- [airflow] environments.<env>.airflow (modules/platform/airflow_settings.py, environments/sections/airflow.py)
AIRFLOW_BAD_INPUT = [
    (["--env", "dev", "--set", "airflow.image_tag=2.10.5"],
     "environments.dev.airflow.image_tag='2.10.5' is not the tested Airflow 3.3.2", "fix: use '3.3.2-python3.11'"),
    (["--env", "dev", "--set", "airflow.worker_max_replicas=0"],
     "environments.dev.airflow.worker_max_replicas=0 is outside 1-500", "fix:"),
    (["--env", "staging", "--set", "airflow.worker_memory=4GB"],
     "environments.staging.airflow.worker_memory='4GB' is not a memory quantity", "fix: use e.g. '4Gi'"),
    (["--env", "prod", "--set", "airflow.scheduler_replicas=1"],
     "environments.prod.airflow.scheduler_replicas=1 is a single point of failure in production",
     "fix: set airflow.scheduler_replicas >= 2 in production"),
    (["--env", "prod", "--set", "airflow.api_server_replicas=1"],
     "environments.prod.airflow.api_server_replicas=1 is a single point of failure", "fix:"),
]


# ---- accounts and CI identities (environments/__init__.py check_isolation, environments/config.py)
ACCOUNTS_BAD_INPUT = [
    (["--env", "prod", "--set", "account_id=111111111111"],      # dev's account, though only prod is synthesized
     "environments.prod.account_id='111111111111' is shared by production environment prod and non-production "
     "environment dev", "fix: give prod an AWS account of its own"),
    (["--env", "dev", "--set", "account_id=333333333333"],
     "environments.dev.account_id='333333333333' is shared by production environment prod", "fix: give prod"),
    (["--set", "account_id=444444444444"],                        # every environment into one new account
     "environments.dev.account_id='444444444444' is shared by production environment prod", "fix: give prod"),
    (["--env", "prod", "--set", "state.bucket=example-airflow-terraform-state-222222222222"],
     "environments.prod.state.bucket='example-airflow-terraform-state-222222222222' holds the state of production "
     "environment prod and of non-production environment staging", "fix: give prod the state bucket of its own account"),
    (["--env", "prod", "--set", "plan_environment="],
     "environments.prod.plan_environment='' is empty for a production environment", "fix: set plan_environment="),
]


# Every section's bad input goes through the same CLI path: one line, exit 2, previous output untouched.
ALL_BAD_INPUT = [*BAD_INPUT, *ACCOUNTS_BAD_INPUT, *ADDONS_BAD_INPUT, *MONITORING_BAD_INPUT, *VAULT_BAD_INPUT, *EVENTS_BAD_INPUT,
                 *ALARMS_BAD_INPUT, *AIRFLOW_BAD_INPUT]


def assert_one_line_and_untouched(stderr: str, message: str, fix: str, previous_output: Path, before: dict) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert message in lines[0] and fix in lines[0]
    assert "Traceback" not in stderr and "jsii" not in stderr.lower()
    assert tree_digest(previous_output) == before
    assert sorted(p.name for p in previous_output.parent.iterdir()) == ["cdktf.out"]   # no temp dir left behind


# Every case runs main.main in this process (the jsii kernel is already up): a subprocess per case cost a Python
# start, imports and a Node start, ~1.5-5 s each. The real command line is proven by REAL_PROCESS_BAD_INPUT below.
@pytest.mark.parametrize("args,message,fix", ALL_BAD_INPUT, ids=[" ".join(a) for a, _, _ in ALL_BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_leaves_output_untouched(monkeypatch, capsys, tmp_path, previous_output, args,
                                                                  message, fix):
    monkeypatch.chdir(tmp_path)                     # as the subprocess ran: a stray relative write shows up below
    monkeypatch.delenv(main.HCL_SWITCH, raising=False)
    before = tree_digest(previous_output)
    code = main.main([*args, "--out", str(previous_output)])
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert_one_line_and_untouched(err, message, fix, previous_output, before)


# A few cases as a user runs them (`python main.py ...`: fastsynth.exit_now, the kernel's console output copied
# out), one per way bad input is found: (case, stage).
#   config:    environments.load rejects it before jsii starts;
#   --set:     the override names no field (a ConfigError not re-scoped to the environment);
#   construct: the config loads; a construct raises while stacks.build runs, after fastsynth.preload_assemblies()
#              and with a half-built App in Node (a rule across fields of two sections: edge names vs the domain).
REAL_PROCESS_BAD_INPUT = {
    "--env qa": "config",
    "--env dev --set nosuchfield=1": "--set",
    "--env dev --set edge.extra_sans=api.example.org": "construct",
    "--env dev --set network.az_count=three": "--set",
    "--env prod --set account_id=111111111111": "config",      # checked against the other configured environments
}
REAL_PROCESS_CASES = [(*case, REAL_PROCESS_BAD_INPUT[" ".join(case[0])]) for case in ALL_BAD_INPUT
                      if " ".join(case[0]) in REAL_PROCESS_BAD_INPUT]
assert len(REAL_PROCESS_CASES) == len(REAL_PROCESS_BAD_INPUT), "a REAL_PROCESS_BAD_INPUT key is not in ALL_BAD_INPUT"


def _load_fails(args: list[str]) -> bool:
    names = [v for k, v in zip(args, args[1:]) if k == "--env"]
    overrides = [v for k, v in zip(args, args[1:]) if k == "--set"]
    try:
        for name in names:
            main.environments.load(name, overrides)
    except ValueError:
        return True
    return False


@pytest.mark.parametrize("args,message,fix,stage", REAL_PROCESS_CASES,
                         ids=[f"{stage}: {' '.join(a)}" for a, _, _, stage in REAL_PROCESS_CASES])
def test_bad_input_through_a_real_process_is_one_line_exit_2_and_leaves_output_untouched(tmp_path, previous_output,
                                                                                        args, message, fix, stage):
    # The case still fails where its stage says (else it no longer covers that path: pick another from the table).
    assert _load_fails(args) == (stage != "construct"), f"{args} is no longer a {stage}-stage error"
    before = tree_digest(previous_output)
    result = run([*args, "--out", str(previous_output)], tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert_one_line_and_untouched(result.stderr, message, fix, previous_output, before)


@pytest.mark.parametrize("debug", [False, True])
def test_debug_records_token_creation_stacks_and_a_normal_run_does_not(monkeypatch, debug):
    calls = []
    monkeypatch.setattr(main.fastsynth, "install", lambda **options: calls.append(options))
    if debug:
        with pytest.raises(ValueError, match="qa"):     # --debug also shows the traceback instead of one line
            main.main(["--debug", "--env", "qa"])
    else:
        assert main.main(["--env", "qa"]) == 2
    assert calls == [{"token_stack_traces": debug}]


# ---- publishing a synth: generated files only, other stacks and Terraform's files kept ------------------------

def _manifest(*names: str) -> str:
    return json.dumps({"version": "0.21.0", "stacks": {n: {"name": n, "dependencies": []} for n in names}})


def test_publish_replaces_generated_files_only_and_keeps_stacks_it_did_not_synthesize(tmp_path):
    staging, out = tmp_path / ".cdktf.out-x", tmp_path / "cdktf.out"
    (staging / "stacks" / "a" / "assets" / "chart").mkdir(parents=True)
    (staging / "stacks" / "a" / "cdk.tf.json").write_text('{"new": true}')
    (staging / "stacks" / "a" / "assets" / "chart" / "Chart.yaml").write_text("new")
    (staging / "manifest.json").write_text(_manifest("a"))
    a, b = out / "stacks" / "a", out / "stacks" / "b"
    (a / ".terraform").mkdir(parents=True)
    (a / "assets" / "stale").mkdir(parents=True)
    b.mkdir(parents=True)
    (a / "cdk.tf").write_text("old HCL")                      # an earlier --hcl synth: terraform would read both
    (a / "cdk.tf.json").write_text('{"old": true}')
    (a / "terraform.tfstate").write_text("local state")
    (a / ".terraform" / "terraform.tfstate").write_text("backend")
    (b / "cdk.tf.json").write_text('{"b": true}')
    (out / "manifest.json").write_text(_manifest("a", "b", "gone"))   # 'gone' has no folder any more

    main.publish(staging, out)

    assert sorted(p.name for p in a.iterdir()) == [".terraform", "assets", "cdk.tf.json", "terraform.tfstate"]
    assert (a / "cdk.tf.json").read_text() == '{"new": true}' and (a / "terraform.tfstate").read_text() == "local state"
    assert [p.name for p in (a / "assets").iterdir()] == ["chart"]
    assert (b / "cdk.tf.json").read_text() == '{"b": true}'
    assert list(json.loads((out / "manifest.json").read_text())["stacks"]) == ["a", "b"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "stacks"]


def test_publish_keeps_the_synthesized_manifest_bytes_when_nothing_else_is_kept(tmp_path):
    staging, out = tmp_path / ".cdktf.out-x", tmp_path / "cdktf.out"
    (staging / "stacks" / "a").mkdir(parents=True)
    (staging / "stacks" / "a" / "cdk.tf.json").write_text("{}")
    (staging / "manifest.json").write_text(written := _manifest("a") + "\n")
    main.publish(staging, out)
    assert (out / "manifest.json").read_text() == written


def test_main_run_by_a_python_without_the_packages_reruns_itself_in_the_project_virtualenv(tmp_path):
    base = Path(sys.base_prefix) / "bin" / "python3"
    result = subprocess.run([str(base), str(ROOT / "main.py"), "--env", "dev", "--out", str(tmp_path / "cdktf.out")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["stack", "resources"]


def test_main_without_a_virtualenv_says_how_to_make_one(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(main.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(main, "__file__", str(tmp_path / "main.py"))
    with pytest.raises(SystemExit) as exit_:
        main.use_project_python()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {sys.executable} has no cdktf/jsii and {tmp_path}/.venv/bin/python does not exist; "
        f"fix: run `make install` in {tmp_path}, then run main.py again")


def test_publish_over_an_unreadable_manifest_keeps_nothing_from_it(tmp_path):
    staging, out = tmp_path / ".cdktf.out-x", tmp_path / "cdktf.out"
    (staging / "stacks" / "a").mkdir(parents=True)
    (staging / "stacks" / "a" / "cdk.tf.json").write_text("{}")
    (staging / "manifest.json").write_text(_manifest("a"))
    out.mkdir()
    (out / "manifest.json").write_text("not json")
    main.publish(staging, out)
    assert list(json.loads((out / "manifest.json").read_text())["stacks"]) == ["a"]
