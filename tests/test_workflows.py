"""The GitHub Actions workflows: valid YAML, only existing make targets, OIDC, approval gates, deploy order, every
action pinned by commit."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

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


@pytest.mark.parametrize("name", ["plan.yml", "deploy.yml"])
def test_workflows_get_aws_credentials_only_through_oidc(name):
    doc = load(name)
    assert doc["permissions"]["id-token"] == "write" and doc["permissions"]["contents"] == "read"
    logins = [s for s in steps(doc) if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert logins and all(set(s["with"]) == {"role-to-assume", "role-session-name", "aws-region"} for s in logins)
    assert all(s["with"]["role-to-assume"].startswith("${{ vars.AWS_") for s in logins)   # no stored keys
    assert "aws-access-key-id" not in (WORKFLOWS / name).read_text()


def test_plan_runs_on_pull_requests_and_reruns_when_labels_change():
    assert set(triggers(load("plan.yml"))) == {"pull_request"}
    assert {"labeled", "unlabeled", "synchronize"} <= set(triggers(load("plan.yml"))["pull_request"]["types"])


def test_plan_reports_per_stack_as_sticky_comment_and_gates_data_at_risk_on_the_label():
    doc = load("plan.yml")
    (plan_step,) = [s for s in steps(doc) if "terraform -chdir" in s.get("run", "")]
    assert all(f"terraform -chdir=\"$dir\" {cmd}" in plan_step["run"] for cmd in ("init", "plan", "show -json"))
    (report,) = [s for s in steps(doc) if "make -s --no-print-directory plan-report" in s.get("run", "")]   # stdout = report
    assert "PLAN=plans" in report["run"] and "STATUS_FILE=" in report["run"]
    (comment,) = [s for s in steps(doc) if s.get("uses", "").startswith("marocchino/sticky-pull-request-comment@")]
    assert comment["with"]["path"] == "plan-report.md"
    (gate,) = [s for s in steps(doc) if "approved-data-risk" in s.get("if", "")]
    assert "steps.report.outputs.status == '3'" in gate["if"] and "exit 1" in gate["run"]
    assert doc["permissions"]["pull-requests"] == "write"


def test_deploy_runs_on_main_through_dev_staging_then_protected_prod():
    doc = load("deploy.yml")
    assert triggers(doc)["push"]["branches"] == ["main"]
    jobs = doc["jobs"]
    assert {name: (job["environment"], job.get("needs")) for name, job in jobs.items()} == {
        "dev": ("dev", None), "staging": ("staging", "dev"), "prod": ("prod", "staging")}
    assert doc["concurrency"]["cancel-in-progress"] is False


def test_each_environment_applies_stacks_in_order_and_skips_missing_ones():
    doc = load("deploy.yml")
    assert doc["env"]["STACK_ORDER"].split() == ["state", "infra", "platform", "vault-config"]
    for name, job in doc["jobs"].items():
        assert job["env"]["DEPLOY_ENV"] == name
        (synth,) = [s for s in job["steps"] if "make synth" in s.get("run", "")]
        assert synth["run"].strip() == f"make synth ENV={name}"
        (apply,) = [s for s in job["steps"] if "terraform -chdir" in s.get("run", "")]
        assert "for layer in $STACK_ORDER" in apply["run"] and '[ -d "$dir" ] || continue' in apply["run"]
        assert "apply -input=false -auto-approve" in apply["run"]


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
    assert unpinned(text.replace(pinned, replacement)) == [replacement]


def test_a_uses_the_line_scan_cannot_see_fails_the_check():
    text = (WORKFLOWS / "plan.yml").read_text()
    n = len(USES_LINE.findall(text))
    text += "  extra:\n    runs-on: ubuntu-latest\n    steps: [{uses: actions/checkout@v4}]\n"   # flow style
    assert unpinned(text) == [f"{n + 1} uses in the YAML, {n} found as `uses:` lines"]
