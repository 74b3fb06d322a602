"""The GitHub Actions workflows: valid YAML, only existing make targets, OIDC, approval gates, deploy order, every
action pinned by commit."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import environments

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
MAKE_CALL = re.compile(r"(?:^|[;&|(]\s*|\s)make\s+((?:-[-\w=]+\s+)*)([A-Za-z][\w-]*)")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(.*?)\s*$", flags=re.M)
# A tag or branch can be moved to other code after review; a commit cannot. The comment names the release the
# commit is, for the reader and for Dependabot/Renovate, which update both together.
PINNED = re.compile(r"(?P<action>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(?P<sha>[0-9a-f]{40}) # (?P<version>v\d+\.\d+\.\d+)")
WORKFLOW_FILES = sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(doc, dict) and doc.get("jobs"), f"{name} has no jobs"
    return doc


def triggers(doc: dict) -> dict:
    return doc.get("on", doc.get(True))      # YAML 1.1 reads a bare `on:` key as the boolean True


def steps(doc: dict) -> list[dict]:
    return [step for job in doc["jobs"].values() for step in job["steps"]]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", (ROOT / "Makefile").read_text(), flags=re.M))


@pytest.mark.parametrize("name", ["plan.yml", "deploy.yml"])
def test_every_make_target_a_workflow_calls_exists(name):
    calls = {m.group(2) for step in steps(load(name)) for m in MAKE_CALL.finditer(step.get("run", ""))}
    assert calls, f"{name} calls no make target"
    assert calls <= makefile_targets(), f"{name} calls missing targets {sorted(calls - makefile_targets())}"


CONFIGS = {name: environments.load(name) for name in environments.NAMES}
LAYERS = ("infra", "platform", "vault-config")


def logins(job: dict) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]


def assumed_roles(job: dict) -> list[str]:
    """The roles a job assumes, `${{ env.X }}` resolved from the job's env."""
    roles = [login["with"]["role-to-assume"] for login in logins(job)]
    return [job["env"][m.group(1)] if (m := re.fullmatch(r"\$\{\{ env\.(\w+) \}\}", r)) else r for r in roles]


def assumed_role(job: dict) -> str:
    (role,) = assumed_roles(job)
    return role


def applied_stacks(job: dict) -> list[str]:
    return [m for step in job["steps"] for m in re.findall(r'dir="cdktf\.out/stacks/([\w-]+)"', step.get("run", ""))
            if "apply -input=false -auto-approve" in step["run"]]


@pytest.mark.parametrize("name", ["plan.yml", "deploy.yml"])
def test_workflows_get_aws_credentials_only_through_oidc_in_the_jobs_that_need_them(name):
    doc = load(name)
    assert doc["permissions"] == {"contents": "read"}          # nothing beyond reading unless a job says so
    text = (WORKFLOWS / name).read_text()
    assert "aws-access-key-id" not in text and "secrets." not in text
    assert re.search(r"^\s*VAULT_TOKEN:", text, flags=re.M) is None        # no stored Vault token either
    for name, job in doc["jobs"].items():
        if not logins(job):      # plan.yml's comment job: no AWS, no OIDC token, no code checked out
            assert "id-token" not in job["permissions"] and not any("run" in s or "checkout@" in s.get("uses", "")
                                                                    for s in job["steps"]), name
            continue
        assert job["permissions"]["id-token"] == "write" and job["permissions"]["contents"] == "read"
        assert all(set(s["with"]) == {"role-to-assume", "role-session-name", "aws-region"} for s in logins(job))
        assert all(re.fullmatch(r"arn:aws:iam::\d{12}:role/github-actions-[a-z-]+", r) for r in assumed_roles(job))
    assert any(logins(job) for job in doc["jobs"].values())


def test_plan_runs_on_pull_requests_and_main_and_reruns_when_labels_change():
    on = triggers(load("plan.yml"))
    assert set(on) == {"pull_request", "push"} and on["push"] == {"branches": ["main"]}
    assert {"labeled", "unlabeled", "synchronize"} <= set(on["pull_request"]["types"])


@pytest.mark.parametrize("job_name", ["plan", "plan-prod"])
def test_plans_take_no_lock_and_report_per_stack(job_name):
    job = load("plan.yml")["jobs"][job_name]
    plan_steps = [s for s in job["steps"] if "terraform -chdir" in s.get("run", "")]
    assert plan_steps and all(f'terraform -chdir="cdktf.out/stacks/$stack" {cmd}' in s["run"]
                              for s in plan_steps for cmd in ("init", "plan", "show -json"))
    # The plan roles may write no object, lock objects included: a plan that tried to lock would fail.
    plans = [line for s in plan_steps for line in s["run"].splitlines() if " plan " in line]
    assert plans and all("-lock=false" in line for line in plans)
    (report,) = [s for s in job["steps"] if "make -s --no-print-directory plan-report" in s.get("run", "")]
    assert "PLAN=plans" in report["run"] and "STATUS_FILE=" in report["run"]


def test_pull_request_plan_is_commented_by_a_job_that_runs_none_of_its_code_and_gated_on_the_label():
    jobs = load("plan.yml")["jobs"]
    plan, comment = jobs["plan"], jobs["comment"]
    (upload,) = [s for s in plan["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"] == "plan-report.md"
    (gate,) = [s for s in plan["steps"] if "approved-data-risk" in s.get("if", "")]
    assert "steps.report.outputs.status == '3'" in gate["if"] and "exit 1" in gate["run"]
    assert comment["needs"] == "plan" and comment["permissions"] == {"pull-requests": "write"}
    assert [s["uses"].split("@")[0] for s in comment["steps"]] == ["actions/download-artifact",
                                                                  "marocchino/sticky-pull-request-comment"]
    assert comment["steps"][1]["with"]["path"] == "plan-report.md"


def runs_code_of_pull_requests(job: dict) -> bool:
    """Whether a plan.yml job may run on a pull_request event and execute anything from the checkout."""
    on_push_only = "github.event_name == 'push'" in job.get("if", "")
    executes = any("run" in s or "checkout@" in s.get("uses", "") for s in job["steps"])
    return not on_push_only and executes


def test_no_job_running_pull_request_code_holds_the_prod_plan_role_or_pull_request_write():
    jobs = load("plan.yml")["jobs"]
    running = {name for name, job in jobs.items() if runs_code_of_pull_requests(job)}
    assert running == {"plan"}
    for name in running:
        assert "pull-requests" not in jobs[name]["permissions"] and "environment" not in jobs[name]
        assert CONFIGS["prod"].plan_role_arn not in assumed_roles(jobs[name])
    writers = {name for name, job in jobs.items() if job["permissions"].get("pull-requests") == "write"}
    assert writers == {"comment"} and not running & writers


def test_pull_requests_plan_only_non_production_with_their_plan_roles_and_prod_only_in_prod_plan():
    jobs = load("plan.yml")["jobs"]
    pr = jobs["plan"]
    assert "environment" not in pr
    assert [s["with"]["role-to-assume"] for s in logins(pr)] == [CONFIGS[n].plan_role_arn for n in ("dev", "staging")]
    assert CONFIGS["prod"].account_id not in str(pr)              # not its roles, buckets, keys: nothing of prod
    prod = jobs["plan-prod"]
    assert (prod["environment"], prod["if"], assumed_role(prod)) == (
        CONFIGS["prod"].plan_environment, "github.event_name == 'push' && github.ref == 'refs/heads/main'",
        CONFIGS["prod"].plan_role_arn)
    assert pr["if"] == "github.event_name == 'pull_request'"
    assert [job for name, job in jobs.items() if CONFIGS["prod"].account_id in str(job)] == [prod]
    plan_layers = load("plan.yml")["env"]["PLAN_LAYERS"].split()
    assert plan_layers == ["infra"]                               # the others need the private cluster and Vault


def test_deploy_runs_on_main_through_dev_staging_then_protected_prod_one_stack_per_job():
    doc = load("deploy.yml")
    assert triggers(doc)["push"]["branches"] == ["main"]
    assert set(triggers(doc)) == {"push", "workflow_dispatch"}
    jobs = doc["jobs"]
    order = [f"{env}-{layer}" for env in environments.NAMES for layer in LAYERS]
    assert list(jobs) == order
    assert {name: job.get("needs") for name, job in jobs.items()} == dict(zip(order, [None, *order[:-1]]))
    for name, job in jobs.items():
        env, layer = name.split("-", 1)
        assert job["environment"] == env and job["if"] == "github.ref == 'refs/heads/main'"   # dispatch: main only
        assert assumed_role(job) == CONFIGS[env].deploy_role_arn
        assert applied_stacks(job) == [CONFIGS[env].stack_name(layer)]
        (synth,) = [s for s in job["steps"] if "make synth" in s.get("run", "")]
        assert synth["run"].strip() == f"make synth ENV={env}"
    assert doc["concurrency"]["cancel-in-progress"] is False


def test_no_workflow_applies_or_plans_a_state_stack():
    for name in WORKFLOW_FILES:
        assert "-state" not in (WORKFLOWS / name).read_text().replace("-state-dir", "")
        assert not any(stack.startswith("airflow-state") for job in load(name)["jobs"].values()
                       for stack in applied_stacks(job))


def test_platform_and_vault_config_jobs_run_on_the_environments_in_vpc_runner():
    for name, job in load("deploy.yml")["jobs"].items():
        env, layer = name.split("-", 1)
        runner = (f"codebuild-{CONFIGS[env].ci_runner_project_name}-${{{{ github.run_id }}}}-"
                  f"${{{{ github.run_attempt }}}}")
        assert job["runs-on"] == ("ubuntu-latest" if layer == "infra" else runner), name


@pytest.mark.parametrize("env", environments.NAMES)
def test_vault_config_logs_in_to_vault_with_the_jobs_oidc_token_through_a_port_forward(env):
    config = CONFIGS[env]
    job = load("deploy.yml")["jobs"][f"{env}-vault-config"]
    script = "\n".join(s.get("run", "") for s in job["steps"])
    ca = f"~/.vault/{config.prefix}-ca.crt"                            # where the vault-config stack's provider looks
    assert f"aws eks update-kubeconfig --name {config.cluster_name} --region {config.region}" in script
    assert "kubectl -n vault port-forward svc/vault-active 8200:8200" in script
    assert f"kubectl -n vault get secret vault-server-tls -o jsonpath='{{.data.ca\\.crt}}' | base64 -d > {ca}" in script
    assert '"$ACTIONS_ID_TOKEN_REQUEST_URL&audience=vault"' in script and "$ACTIONS_ID_TOKEN_REQUEST_TOKEN" in script
    assert "auth/github-actions/login" in script and '"role": "vault-config-deploy"' in script
    assert 'echo "::add-mask::$VAULT_TOKEN"' in script and "export VAULT_TOKEN" in script
    assert script.index("::add-mask::$VAULT_TOKEN") < script.index("terraform -chdir")
    assert "--cacert" in script and "-k " not in script and "--insecure" not in script
    assert ca in (ROOT / "docs" / "vault.md").read_text().replace("airflow-dev", config.prefix)


def uses_of(doc: dict) -> list[str]:
    """Every `uses:` of a workflow: steps' actions and jobs' reusable workflows."""
    return [item["uses"] for job in doc["jobs"].values() for item in (job, *job.get("steps", ())) if "uses" in item]


def unpinned(text: str) -> list[str]:
    """The `uses:` lines of a workflow's text that are not `owner/repo(/path)@<40-hex commit> # v<x.y.z>`, plus a
    note if YAML sees a `uses` the line scan missed (flow style, quoting), so nothing escapes the check."""
    lines = USES_LINE.findall(text)
    bad = [line for line in lines if PINNED.fullmatch(line) is None]
    found = uses_of(yaml.safe_load(text))
    if len(found) != len(lines):
        bad.append(f"{len(found)} uses in the YAML, {len(lines)} found as `uses:` lines")
    return bad


def test_there_are_workflows_to_check():
    assert WORKFLOW_FILES == ["deploy.yml", "plan.yml"]


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_every_action_is_pinned_by_full_commit_sha_with_its_version_in_a_comment(name):
    assert unpinned((WORKFLOWS / name).read_text()) == []


def test_each_action_is_pinned_to_one_commit_and_version_across_workflows():
    pins: dict[str, set[tuple[str, str]]] = {}
    for name in WORKFLOW_FILES:
        for line in USES_LINE.findall((WORKFLOWS / name).read_text()):
            m = PINNED.fullmatch(line)
            pins.setdefault(m["action"], set()).add((m["sha"], m["version"]))
    assert {action: len(shas) for action, shas in pins.items()} == dict.fromkeys(pins, 1)


@pytest.mark.parametrize("replacement", [
    "actions/checkout@v4",                                                           # the tag can move
    "actions/checkout@v4.4.0",
    "actions/checkout@11d5960a326750d5838078e36cf38b85af677262",                     # no version comment
    "actions/checkout@11d5960a # v4.4.0",                                            # short SHA
    "actions/checkout@11d5960a326750d5838078e36cf38b85af677262 # v4",                # not the exact release
    "actions/checkout@main",
])
def test_a_tag_or_loosely_pinned_action_fails_the_check(replacement):
    text = (WORKFLOWS / "plan.yml").read_text()
    (pinned,) = {line for line in USES_LINE.findall(text) if line.startswith("actions/checkout@")}
    assert unpinned(text.replace(pinned, replacement)) == [replacement] * text.count(pinned)   # one per job


def test_a_uses_the_line_scan_cannot_see_fails_the_check():
    text = (WORKFLOWS / "plan.yml").read_text()
    n = len(USES_LINE.findall(text))
    text += "  extra:\n    runs-on: ubuntu-latest\n    steps: [{uses: actions/checkout@v4}]\n"   # flow style
    assert unpinned(text) == [f"{n + 1} uses in the YAML, {n} found as `uses:` lines"]
