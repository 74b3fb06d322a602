"""The command line: one clear line and exit 2 on bad input, cdktf.out untouched; a table on success."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

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
    # front door (modules/edge.py via environments.<env>.edge)
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


@pytest.mark.parametrize("args,message,fix", BAD_INPUT, ids=[" ".join(a) for a, _, _ in BAD_INPUT])
def test_bad_input_is_one_line_exit_2_and_leaves_output_untouched(tmp_path, previous_output, args, message, fix):
    before = tree_digest(previous_output)
    result = run([*args, "--out", str(previous_output)], tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0] and fix in lines[0]
    assert "Traceback" not in result.stderr and "jsii" not in result.stderr.lower()
    assert tree_digest(previous_output) == before
    assert sorted(p.name for p in previous_output.parent.iterdir()) == ["cdktf.out"]   # no temp dir left behind


def test_one_environment_synthesizes_only_its_stacks_and_prints_the_table(tmp_path, previous_output):
    result = run(["--env", "dev", "--out", str(previous_output)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""                # no Node end-of-life or deprecation banner
    rows = dict(line.split() for line in result.stdout.strip().splitlines()[1:])
    assert set(rows) == {"airflow-state", "airflow-dev-infra", "airflow-dev-platform"}
    assert int(rows["airflow-dev-infra"]) > 30
    assert sorted(p.name for p in (previous_output / "stacks").iterdir()) == [
        "airflow-dev-infra", "airflow-dev-platform", "airflow-state"]
    assert '"previous"' not in (previous_output / "stacks" / "airflow-dev-infra" / "cdk.tf.json").read_text()
