"""Deploy rehearsal: apply the dev `infra` stack to a local AWS emulator (moto), plan it again, destroy it.

    python -m tools.rehearse [--env dev] [--parallelism 20] [--timeout 570] [--apply-timeout 240]
                             [--plan-timeout 90] [--destroy-timeout 150] [--stall-timeout 90] [--gap-timeout 45]
                             [--keep DIR]
    make rehearse

Starts the patched emulator (`moto_command`: tools.emulator_server, moto plus narrow fixes where it differs from
AWS) on a free loopback port, synthesizes the environment with `--aws-emulator-endpoint` (test credentials, local
state outside the output: no real account is touched), then:

1. `terraform apply` of the infra stack: per resource type how many applied, every failure with the provider's
   reason;
2. `terraform plan` again, with refresh, as the next pull request's plan would run: it must change nothing
   (idempotency), except what a KNOWN_EMULATOR_GAPS entry explains (each quotes moto and says what AWS does);
   any other change is a perpetual diff every real plan would show;
3. `terraform destroy`, then `terraform state list`: whatever is left is reported with the reason.

A progress line (`apply: 143/282 done, 2 failed, 96s`) is printed at least every 15 s. Every step is bounded: the
apply is interrupted (SIGINT: Terraform stops gracefully and keeps the state of what finished) when only
resources moto cannot create are still in flight for --gap-timeout seconds, when nothing starts or finishes for
--stall-timeout seconds, or after --apply-timeout; what was still in flight is reported as stalled.

Exit status: 0 when every failure, second-plan change and leftover is a known emulator gap; 1 otherwise (or when a
step fails).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness import find_provider_mirror, terraform_cli_config  # noqa: E402

@dataclass(frozen=True, kw_only=True)
class EmulatorGap:
    """Where moto (even patched by tools.emulator_server) differs from AWS for one resource type, quoting moto.
    Without `attributes` moto cannot create, read or delete the type at all: its failures are expected, and so is
    the second plan creating it again. With `attributes` the type applies, but moto echoes exactly these
    attributes back differently from AWS: only an in-place update of them is excused in the second plan."""
    moto_says: str                      # the emulator's own message (NotImplementedError / error text)
    aws_does: str                       # what AWS does instead
    attributes: tuple[str, ...] = ()

    def explains(self, change: "PlannedChange") -> bool:
        if not self.attributes:
            return True
        return change.actions == ("update",) and bool(change.attributes) and set(change.attributes) <= set(self.attributes)


# Resource types moto 5.2 (patched) cannot handle the way the AWS provider 5.100 asks. Everything else must apply,
# plan no changes the second time, and destroy.
KNOWN_EMULATOR_GAPS: dict[str, EmulatorGap] = {
    # Where moto 5.2.5 differed from AWS in ways a small patch fixes, tools.emulator_server makes it answer as AWS
    # does. What is left, each quoting moto and saying what AWS does (issue #16 brought the three types below into
    # dev's infra stack: the in-VPC deploy runner and GuardDuty, on now that dev has an account of its own):
    "aws_codebuild_webhook": EmulatorGap(
        moto_says="The create_webhook action has not been implemented",
        aws_does="CreateWebhook registers the project with the repository's GitHub connection so that queued "
                 "workflow jobs (WORKFLOW_JOB_QUEUED) start a build"),
    "aws_guardduty_detector_feature": EmulatorGap(
        moto_says="GetDetector answers without a `features` list, so the provider reads an empty result",
        aws_does="GetDetector lists each feature (S3_DATA_EVENTS, EKS_AUDIT_LOGS, RUNTIME_MONITORING) and its status"),
    "aws_codebuild_project": EmulatorGap(
        moto_says="BatchGetProjects omits concurrentBuildLimit and encryptionKey it was created with",
        aws_does="BatchGetProjects returns both as set", attributes=("concurrent_build_limit", "encryption_key")),
}
EXIT_OK, EXIT_FAILED = 0, 1
SYNTH_TIMEOUT = 180
INIT_TIMEOUT = 180


# ---- the emulator ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def moto_binary() -> Path | None:
    """Whether moto's server is installed (its console script next to this Python, or on PATH)."""
    candidate = Path(sys.executable).with_name("moto_server")
    found = candidate if candidate.exists() else shutil.which("moto_server")
    return Path(found) if found else None


def moto_command(host: str, port: int) -> list[str]:
    """The argv that serves the patched emulator (tools.emulator_server: moto plus narrow, documented fixes where
    it differs from AWS) on host:port, run with this Python from the project root."""
    return [sys.executable, "-m", "tools.emulator_server", "--host", host, "--port", str(port)]


@contextlib.contextmanager
def moto_server(log_path: Path, *, startup_timeout: float = 30.0, host: str = "127.0.0.1",
                port: int | None = None) -> Iterator[str]:
    """The patched moto (moto_command) on a free loopback port (or `port`) for the duration of the block; yields
    its endpoint URL."""
    port = port or free_port()
    endpoint = f"http://{host}:{port}"
    proc = start_emulator(log_path, host, port)
    try:
        wait_until_serving(endpoint, proc, timeout=startup_timeout, log_path=log_path)
        yield endpoint
    finally:
        stop(proc)


def start_emulator(log_path: Path, host: str, port: int) -> subprocess.Popen:
    """Start the patched moto in its own session, logging to `log_path`. AWS managed policies are loaded so role
    policy attachments to them work as on AWS. The caller stops it (a block: moto_server; tools/emulator: down)."""
    if moto_binary() is None:
        raise RuntimeError("moto_server is not installed (pipenv install: moto[server])")
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    with open(log_path, "ab") as log:
        return subprocess.Popen(moto_command(host, port), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def serving(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def wait_until_serving(endpoint: str, proc: subprocess.Popen, *, timeout: float, log_path: Path) -> None:
    """Bounded wait for the emulator's first answer; raises if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while not serving(endpoint):
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode} (log: {log_path})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"moto_server did not answer on {endpoint} within {timeout:.0f}s (log: {log_path})")
        time.sleep(0.2)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate one process we started (and only it), escalating to kill."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)


def emulator_gaps_seen(log_path: Path) -> list[str]:
    """What moto itself said it cannot do (its NotImplementedError lines), once each."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    return sorted(set(re.findall(r"NotImplementedError: (.+)", text)))


def seed_emulator(endpoint: str, stack_doc: dict, *, region: str = "us-east-1") -> list[str]:
    """Create what a real account already has and the stack only reads: the public Route 53 hosted zones named
    by its `aws_route53_zone` data sources (the domain's zone is delegated by hand, outside Terraform), and the
    Secrets Manager secrets its `aws_secretsmanager_secret_version` data sources read (the operator stores them by
    hand, e.g. the IdP client secret, docs/access.md), with a placeholder value. Returns what was created."""
    import boto3     # installed with moto

    created = _seed_read_secrets(endpoint, stack_doc)

    route53 = boto3.client("route53", endpoint_url=endpoint, region_name=region, aws_access_key_id="test",
                           aws_secret_access_key="test")
    existing = {zone["Name"].rstrip(".") for zone in route53.list_hosted_zones()["HostedZones"]}
    for body in stack_doc.get("data", {}).get("aws_route53_zone", {}).values():
        name = str(body.get("name", "")).rstrip(".")
        if name and not body.get("private_zone") and name not in existing:
            route53.create_hosted_zone(Name=name, CallerReference=f"rehearsal-{name}")
            existing.add(name)
            created.append(f"route53 hosted zone {name}")
    return created


def _seed_read_secrets(endpoint: str, stack_doc: dict) -> list[str]:
    import boto3

    names = [body["secret_id"] for body in stack_doc.get("data", {}).get("aws_secretsmanager_secret_version", {}).values()
             if isinstance(body.get("secret_id"), str) and "${" not in body["secret_id"]]
    if not names:
        return []
    (provider,) = stack_doc.get("provider", {}).get("aws", [{}])[:1] or [{}]
    client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name=provider.get("region", "us-east-1"),
                          aws_access_key_id="test", aws_secret_access_key="test")
    created = []
    for name in names:
        try:
            client.describe_secret(SecretId=name)
        except client.exceptions.ResourceNotFoundException:
            client.create_secret(Name=name, SecretString="emulator-placeholder")
            created.append(f"secretsmanager secret {name}")
    return created


def empty_buckets(endpoint: str, stack_doc: dict, *, region: str = "us-east-1") -> list[str]:
    """Delete every object version in the stack's buckets, as an operator does before destroying: the buckets keep
    force_destroy = false on purpose, and the access-log bucket has received server access logs by then (moto
    delivers them too). Returns "<bucket>: <n> objects" for each bucket that held any."""
    import boto3     # installed with moto

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region, aws_access_key_id="test",
                      aws_secret_access_key="test")
    emptied = []
    for body in stack_doc.get("resource", {}).get("aws_s3_bucket", {}).values():
        name, deleted = body.get("bucket"), 0
        if not isinstance(name, str) or "${" in name:
            continue
        with contextlib.suppress(s3.exceptions.NoSuchBucket):
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
                doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                          for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                if doomed:
                    s3.delete_objects(Bucket=name, Delete={"Objects": doomed, "Quiet": True})
                    deleted += len(doomed)
        if deleted:
            emptied.append(f"{name}: {deleted} objects")
    return emptied


# ---- terraform ------------------------------------------------------------------------------------

def terraform_env(workdir: Path, *, require_mirror: bool = True) -> dict[str, str]:
    """Environment for terraform against the emulator: the provider mirror (TF_CLI_CONFIG_FILE) when the machine has
    one (required unless `require_mirror=False`, which then keeps the user's own Terraform configuration), few SDK
    retries, no update checks."""
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "AWS_MAX_ATTEMPTS": "2",
           "AWS_RETRY_MODE": "standard"}
    mirror = find_provider_mirror()
    if mirror is None:
        if require_mirror:
            raise RuntimeError("the hashicorp/aws 5.100.0 filesystem mirror is missing (set TF_PROVIDER_MIRROR)")
        return env
    cache = workdir / "plugin-cache"
    cache.mkdir(parents=True, exist_ok=True)
    return {**env, "TF_CLI_CONFIG_FILE": str(terraform_cli_config(mirror, workdir)), "TF_PLUGIN_CACHE_DIR": str(cache)}


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float) -> subprocess.CompletedProcess:
    """One bounded subprocess; raises RuntimeError with the tail of its output when it fails or times out."""
    try:
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f}s") from None
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {result.returncode}: {(result.stderr or result.stdout)[-1500:]}")
    return result


def synthesize(environment: str, endpoint: str, out: Path, *, timeout: float = SYNTH_TIMEOUT) -> Path:
    """Synthesize one environment for the emulator; returns cdktf.out/stacks."""
    run([sys.executable, str(ROOT / "main.py"), "--env", environment, "--aws-emulator-endpoint", endpoint,
         "--emulator-state-dir", str(out.parent / "state"), "--out", str(out), "--quiet"], cwd=ROOT,
        timeout=timeout)
    return out / "stacks"


@dataclass(frozen=True, kw_only=True)
class Failure:
    address: str
    type: str
    reason: str
    emulator_race: bool = False         # see spurious_duplicate()

    @property
    def known_gap(self) -> bool:
        gap = KNOWN_EMULATOR_GAPS.get(self.type)
        return self.emulator_race or (gap is not None and not gap.attributes)


SECURITY_GROUP_RULE_TYPES = ("aws_vpc_security_group_ingress_rule", "aws_vpc_security_group_egress_rule")
_RULE_IDENTITY = ("security_group_id", "ip_protocol", "from_port", "to_port", "cidr_ipv4", "cidr_ipv6",
                  "referenced_security_group_id", "prefix_list_id")


def spurious_duplicate(failure: Failure, stack_doc: dict) -> Failure:
    """Under load the emulator now and then answers InvalidPermission.Duplicate for a security group rule created
    once (about 1 apply in 10 on 2 busy cores; no retry or second request is in its log). AWS answers that only
    when the group already holds the same rule, so the failure is the emulator's when the stack defines that rule
    exactly once; a rule the stack defines twice stays a failure (AWS would refuse it too)."""
    if failure.type not in SECURITY_GROUP_RULE_TYPES or "InvalidPermission.Duplicate" not in failure.reason:
        return failure
    rules = stack_doc.get("resource", {}).get(failure.type, {})
    name = failure.address.split(".", 1)[1]
    if name not in rules:
        return failure
    identity = lambda rule: tuple(str(rule.get(key)) for key in _RULE_IDENTITY)  # noqa: E731
    same = [other for other in rules.values() if identity(other) == identity(rules[name])]
    return Failure(address=failure.address, type=failure.type, reason=failure.reason,
                   emulator_race=len(same) == 1)


@dataclass(kw_only=True)
class ApplyResult:
    planned: dict[str, str] = field(default_factory=dict)      # address -> type (every planned create)
    applied: dict[str, str] = field(default_factory=dict)      # address -> type
    failures: list[Failure] = field(default_factory=list)      # errored or stalled, with the reason
    errors: list[str] = field(default_factory=list)          # error diagnostics naming no resource (e.g. plan errors)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def not_attempted(self) -> list[str]:
        """Planned but never finished nor failed: blocked by a failed dependency (or by the interrupt)."""
        failed = {f.address for f in self.failures}
        return sorted(a for a in self.planned if a not in self.applied and a not in failed)

    def applied_by_type(self) -> Counter:
        return Counter(self.applied.values())

    def planned_by_type(self) -> Counter:
        return Counter(self.planned.values())

    @property
    def unexpected_failures(self) -> list[Failure]:
        return [f for f in self.failures if not f.known_gap]


def _type_of(address: str) -> str:
    parts = [p for p in address.split(".") if not p.startswith("module")]
    return parts[1] if parts and parts[0] == "data" and len(parts) > 1 else (parts[0] if parts else address)


APPLY_ACTIONS = ("create", "replace", "update")
DESTROY_ACTIONS = ("delete",)


def parse_apply_events(lines: Iterable[str], *, stalled: Iterable[str] = (),
                       actions: tuple[str, ...] = APPLY_ACTIONS) -> ApplyResult:
    """Read `terraform apply -json` (or `destroy -json`, with actions=DESTROY_ACTIONS) output: what was planned,
    done, and failed (with the error diagnostic's summary as the reason). `stalled` addresses were still in
    flight when the run was interrupted."""
    result = ApplyResult()
    errored: dict[str, str] = {}
    reasons: dict[str, str] = {}
    unnamed: list[str] = []
    stalled = set(stalled)
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = event.get("type")
        if kind == "planned_change":
            change = event.get("change", {})
            resource = change.get("resource", {})
            if change.get("action") in actions:
                result.planned[resource.get("addr", "?")] = resource.get("resource_type", "?")
        elif kind in ("apply_complete", "apply_errored"):
            hook = event.get("hook", {})
            resource = hook.get("resource", {})
            if hook.get("action") not in actions:
                continue
            target = result.applied if kind == "apply_complete" else errored
            target[resource.get("addr", "?")] = resource.get("resource_type") or _type_of(resource.get("addr", "?"))
        elif kind == "diagnostic":
            diag = event.get("diagnostic", {})
            text = " ".join(f"{diag.get('summary', '')} {diag.get('detail', '')}".split())
            if diag.get("severity") != "error":
                continue
            if diag.get("address"):
                reasons.setdefault(diag["address"], text)
            elif text != "execution halted" and not (stalled and "context canceled" in text):
                unnamed.append(text)           # (a cancelled call without address is the interrupt of a stalled one)
    # Terraform does not always name the resource in an error diagnostic (a failed delete, e.g. BucketNotEmpty).
    # One such error and one resource errored without its own: they belong together. Otherwise point at them.
    silent = [a for a in errored if a not in reasons]
    if len(unnamed) == 1 and len(silent) == 1:
        reasons[silent[0]] = unnamed.pop()
    result.errors += unnamed
    # An error naming a resource that never started (its refresh or plan failed: a data source the apply needs,
    # or a resource moto cannot read back) stops the whole run before anything is done; it must be reported,
    # never dropped (how `destroy: 0/0 resources` came out without a reason).
    result.errors += [f"{address}: {text}" for address, text in reasons.items() if address not in errored]
    for address, rtype in errored.items():
        reason = reasons.get(address, "" if not unnamed else "errored; see the errors that name no resource")
        if address in stalled or "context canceled" in reason or "Plugin did not respond" in reason:
            reason = "stalled: still in progress when the rehearsal interrupted terraform" + (f" ({reason})" if reason else "")
        result.failures.append(Failure(address=address, type=rtype, reason=reason or "errored (no diagnostic)"))
    for address in sorted(stalled - set(errored) - set(result.applied)):
        result.failures.append(Failure(address=address, type=_type_of(address), reason=(
            "stalled: still in progress when the rehearsal interrupted terraform")))
    result.failures.sort(key=lambda f: f.address)
    return result


def cannot_apply(rtype: str) -> bool:
    """A type moto cannot create, read or delete at all (a KNOWN_EMULATOR_GAPS entry without attributes)."""
    gap = KNOWN_EMULATOR_GAPS.get(rtype)
    return gap is not None and not gap.attributes


# ---- the second plan: idempotency ---------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class PlannedChange:
    address: str
    type: str
    actions: tuple[str, ...]              # e.g. ("update",), ("delete", "create")
    attributes: tuple[str, ...] = ()      # top-level attributes that differ (updates and replaces)

    @property
    def gap(self) -> EmulatorGap | None:
        gap = KNOWN_EMULATOR_GAPS.get(self.type)
        return gap if gap is not None and gap.explains(self) else None


def _has_unknown(value: object) -> bool:
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return value is True


def _differing(change: dict) -> tuple[str, ...]:
    before, after = change.get("before") or {}, change.get("after") or {}
    unknown = change.get("after_unknown") or {}
    return tuple(sorted(k for k in set(before) | set(after) | set(unknown)
                        if before.get(k) != after.get(k) or _has_unknown(unknown.get(k))))


def planned_changes(plan: dict) -> list[PlannedChange]:
    """The changes in `terraform show -json <planfile>` output: managed resources only, no-ops and reads left out."""
    changes = []
    for rc in plan.get("resource_changes", []):
        actions = tuple(rc.get("change", {}).get("actions", []))
        if rc.get("mode") != "managed" or actions in (("no-op",), ("read",)):
            continue
        changes.append(PlannedChange(address=rc["address"], type=rc["type"], actions=actions,
                                     attributes=_differing(rc["change"]) if "update" in actions or len(actions) > 1 else ()))
    return sorted(changes, key=lambda c: c.address)


@dataclass(kw_only=True)
class PlanCheck:
    """The second plan (with refresh, as a user's next PR plan) after the apply: it must change nothing but what
    a known emulator gap explains. `blocked` are resources the apply could not create because of a known gap
    (address -> why); the second plan creating them again is expected."""
    changes: list[PlannedChange] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def why_expected(self, change: PlannedChange) -> str | None:
        if change.gap is not None:
            return f"moto: {change.gap.moto_says}; AWS: {change.gap.aws_does}"
        if change.actions == ("create",) and change.address in self.blocked:
            return f"not created on the emulator: {self.blocked[change.address]}"
        return None

    @property
    def known(self) -> list[PlannedChange]:
        return [c for c in self.changes if self.why_expected(c) is not None]

    @property
    def unexpected(self) -> list[PlannedChange]:
        return [c for c in self.changes if self.why_expected(c) is None]

    @property
    def ok(self) -> bool:
        return not self.unexpected and not self.errors and not self.interrupted


def blocked_by_gaps(result: ApplyResult) -> dict[str, str]:
    """What the apply left uncreated because of a known gap: the gap's own failures, and (when no failure was
    unexpected) what waited on them."""
    blocked = {f.address: ("the emulator answered InvalidPermission.Duplicate for a rule the stack defines once"
                           if f.emulator_race else f"{f.type} is a known emulator gap")
               for f in result.failures if f.known_gap}
    if not result.unexpected_failures and not result.errors:
        blocked.update({a: "a dependency is a known emulator gap" for a in result.not_attempted})
    return blocked


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of one terraform we started (start_new_session: it and its provider plugins)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _reader(stream: IO[str], sink: queue.Queue) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


PROGRESS_EVERY = 10.0      # seconds between progress lines (at most 15 s of silence, with the 1 s poll below)


def format_progress(phase: str, *, done: int, total: int, failed: int, seconds: float, verb: str = "done") -> str:
    """One progress line, e.g. `apply: 143/282 done, 2 failed, 96s` (total 0: not known yet)."""
    of_total = f"{done}/{total}" if total else f"{done}"
    return f"{phase}: {of_total} {verb}" + (f", {failed} failed" if failed else "") + f", {seconds:.0f}s"


@dataclass(kw_only=True)
class Progress:
    """Counts a `terraform -json` stream for the progress lines: apply/destroy count resources planned and
    finished; a plan (refresh=True) counts resources refreshed out of `total` (the state's size)."""
    phase: str
    actions: tuple[str, ...] = APPLY_ACTIONS + ("delete",)
    refresh: bool = False
    total: int = 0
    done: int = 0
    failed: int = 0

    def observe(self, event: dict) -> None:
        kind = event.get("type")
        if self.refresh:
            self.done += kind == "refresh_complete"
        elif kind == "planned_change":
            self.total += event.get("change", {}).get("action") in self.actions
        elif kind in ("apply_complete", "apply_errored") and event.get("hook", {}).get("action") in self.actions:
            if kind == "apply_complete":
                self.done += 1
            else:
                self.failed += 1

    def line(self, seconds: float) -> str:
        return format_progress(self.phase, done=self.done, total=self.total, failed=self.failed, seconds=seconds,
                               verb="refreshed" if self.refresh else "done")


def terraform_streaming(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float, stall_timeout: float,
                        gap_timeout: float, progress: Progress | None = None, progress_out: IO[str] | None = None,
                        log: IO[str] | None = None) -> tuple[list[str], set[str], bool]:
    """Run `terraform <args> -json`, interrupting it (SIGINT, then kill) when only known-gap resources have been
    in flight for gap_timeout seconds, nothing starts or finishes for stall_timeout seconds, or the whole run
    exceeds timeout. With `progress`, prints its line (flushed) every PROGRESS_EVERY seconds and at the end;
    with `log`, writes each output line there as it arrives (tail it while terraform runs). Returns (output lines, in-flight addresses at the interrupt, interrupted?)."""
    proc = subprocess.Popen(["terraform", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    output: list[str] = []
    in_flight: dict[str, tuple[str, float]] = {}          # address -> (type, started)
    start = last_event = last_progress = time.monotonic()
    stalled: set[str] = set()
    interrupted_at: float | None = None
    try:
        while True:
            try:
                line = lines.get(timeout=1.0)
            except queue.Empty:
                line = ""
            if line is None:
                break
            now = time.monotonic()
            if line:
                output.append(line)
                if log is not None:
                    log.write(line)
                    log.flush()
                with contextlib.suppress(json.JSONDecodeError, AttributeError):
                    event = json.loads(line)
                    resource = event.get("hook", {}).get("resource", {})
                    addr = resource.get("addr")
                    if event.get("type") == "apply_start" and addr:
                        in_flight[addr] = (resource.get("resource_type", ""), now)
                        last_event = now
                    elif event.get("type") in ("apply_complete", "apply_errored") and addr:
                        in_flight.pop(addr, None)
                        last_event = now
                    elif event.get("type") in ("refresh_start", "refresh_complete"):
                        last_event = now          # a plan's refresh is progress too
                    if progress is not None:
                        progress.observe(event)
            if progress is not None and now - last_progress >= PROGRESS_EVERY:
                print(progress.line(now - start), file=progress_out or sys.stdout, flush=True)
                last_progress = now
            only_gaps_stuck = bool(in_flight) and all(
                cannot_apply(rtype) and now - started > gap_timeout for rtype, started in in_flight.values())
            stuck = bool(in_flight) and now - last_event > stall_timeout
            if interrupted_at is None and (only_gaps_stuck or stuck or now - start > timeout):
                stalled = set(in_flight)
                interrupted_at = now
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)        # graceful: terraform saves the state of what finished
            elif interrupted_at is not None and now - interrupted_at > 60 and proc.poll() is None:
                _kill_group(proc)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
        if progress is not None:
            print(progress.line(time.monotonic() - start), file=progress_out or sys.stdout, flush=True)
    except BaseException:                                  # our own timeout, Ctrl-C: never leave terraform running
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
        raise
    return output, stalled, interrupted_at is not None


# ---- the rehearsal --------------------------------------------------------------------------------

def render(result: ApplyResult, *, destroyed: ApplyResult | None = None, gaps_seen: list[str] = (),
           second: PlanCheck | None = None, left_behind: dict[str, str] | None = None) -> str:
    lines = [f"apply: {len(result.applied)}/{len(result.planned)} resources in {result.seconds:.0f}s"
             + (" (interrupted: stalled)" if result.interrupted else ""), "",
             f"{'resource type':<48} {'applied':>7} / planned"]
    planned, applied = result.planned_by_type(), result.applied_by_type()
    for rtype in sorted(planned):
        lines.append(f"{rtype:<48} {applied.get(rtype, 0):>7} / {planned[rtype]}")
    if result.errors:
        lines += ["", "errors:"] + [f"  {error[:600]}" for error in result.errors]
    if result.failures:
        lines += ["", "failed:"]
        for f in result.failures:
            tag = ("emulator race: the stack defines this rule once" if f.emulator_race else
                   "known emulator gap" if f.known_gap else "UNEXPECTED")
            lines.append(f"  {f.address} [{tag}]\n      {f.reason[:400]}")
    blocked = result.not_attempted
    if blocked:
        lines += ["", f"not attempted (a dependency failed): {len(blocked)}"]
        lines += [f"  {address}" for address in blocked]
    if second is not None:
        lines += ["", render_second_plan(second)]
    if gaps_seen:
        lines += ["", "the emulator reported:"] + [f"  {gap}" for gap in gaps_seen]
    if destroyed is not None:
        lines += ["", f"destroy: {len(destroyed.applied)}/{len(destroyed.planned)} resources in {destroyed.seconds:.0f}s"
                  + (" (interrupted: stalled)" if destroyed.interrupted else "")]
        for f in destroyed.failures:
            tag = "known emulator gap" if f.known_gap else "UNEXPECTED"
            lines.append(f"  {f.address} [{tag}]\n      {f.reason[:400]}")
        lines += [f"  {error[:600]}" for error in destroyed.errors]
    if left_behind is not None:
        lines.append(f"left behind after destroy: {len(left_behind)}" if left_behind else
                     "left behind after destroy: nothing (the state is empty)")
        by_reason: dict[str, list[str]] = {}
        for address, reason in sorted(left_behind.items()):
            by_reason.setdefault(reason, []).append(address)
        for reason, addresses in by_reason.items():          # one reason (e.g. a failed refresh) may hold back all
            lines.append(f"  because: {reason[:400]}")
            for address in addresses[:LEFT_BEHIND_LISTED]:
                tag = "known emulator gap" if cannot_apply(_type_of(address)) else "UNEXPECTED"
                lines.append(f"    {address} [{tag}]")
            if len(addresses) > LEFT_BEHIND_LISTED:
                lines.append(f"    ... and {len(addresses) - LEFT_BEHIND_LISTED} more")
    return "\n".join(lines)


LEFT_BEHIND_LISTED = 20


def render_second_plan(check: PlanCheck) -> str:
    head = (f"second plan (with refresh, as the next PR's plan) in {check.seconds:.0f}s: "
            + ("no changes" if not check.changes else
               f"{len(check.changes)} changes, {len(check.known)} explained by known emulator gaps, "
               f"{len(check.unexpected)} UNEXPECTED (perpetual diffs)")
            + (" (interrupted)" if check.interrupted else ""))
    lines = [head]
    for change in check.changes:
        why = check.why_expected(change)
        what = f"{'/'.join(change.actions)}" + (f" [{', '.join(change.attributes)}]" if change.attributes else "")
        lines.append(f"  {change.address}: {what}\n      " + (f"known emulator gap: {why}"[:400] if why else
                                                              "UNEXPECTED: a real AWS user would see this on every PR"))
    lines += [f"  error: {error[:600]}" for error in check.errors]
    return "\n".join(lines)


_GONE = re.compile(r"NotFound|does not exist", re.IGNORECASE)


def already_gone(destroyed: ApplyResult) -> list[str]:
    """Addresses whose delete failed only because the emulator no longer had the object."""
    return [f.address for f in destroyed.failures if f.address and _GONE.search(f.reason or "")]


def forget_gone(destroyed: ApplyResult, gone: list[str]) -> ApplyResult:
    """The destroy with the already-gone objects counted as destroyed, not failed."""
    return ApplyResult(planned=destroyed.planned, applied={**destroyed.applied, **{a: _type_of(a) for a in gone}},
                       failures=[f for f in destroyed.failures if f.address not in gone], errors=destroyed.errors,
                       seconds=destroyed.seconds, interrupted=destroyed.interrupted)


def left_in_state(stack_dir: Path, env: dict[str, str], destroyed: ApplyResult) -> dict[str, str]:
    """What the destroy left in the state (`terraform state list`), each with the reason the destroy gave."""
    listed = run(["terraform", "state", "list", "-no-color"], cwd=stack_dir, env=env, timeout=60).stdout.split()
    reasons = {f.address: f.reason for f in destroyed.failures}
    fallback = "; ".join(destroyed.errors) or "still in the state; the destroy reported no error for it"
    return {address: reasons.get(address, fallback) for address in listed if not address.startswith("data.")}


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Seconds per phase, and `total` for the whole rehearsal (synth, init, apply, second plan, destroy): each phase
    gets at most its own budget and never more than what is left of the total once the later phases' budgets are
    set aside, so a slow apply still leaves time to plan and destroy. Defaults keep `make rehearse` under 10 min."""
    total: float = 570
    apply: float = 240          # measured: 130-160 s on 2 busy cores
    plan: float = 90            # 30-50 s
    destroy: float = 150        # 90-120 s, both passes
    stall: float = 90
    gap: float = 45

    def timeout(self, phase: float, *, deadline: float, later: float = 0.0, floor: float = 30.0) -> float:
        """A phase's timeout: its budget, cut to the time left before `deadline` minus `later` phases' budgets."""
        return max(floor, min(phase, deadline - time.monotonic() - later))


def rehearse(environment: str = "dev", *, parallelism: int = 20, budget: Budget = Budget(),
             workdir: Path | None = None) -> tuple[int, ApplyResult]:
    if shutil.which("terraform") is None:
        raise RuntimeError("terraform is not on PATH")
    base = Path(workdir or tempfile.mkdtemp(prefix="rehearse-"))
    try:
        return _rehearse(base, environment, parallelism=parallelism, budget=budget)
    finally:
        if workdir is None:
            shutil.rmtree(base, ignore_errors=True)


def _stream(phase: Progress, args: list[str], *, stack_dir: Path, env: dict[str, str], timeout: float,
            budget: Budget, log: Path) -> tuple[list[str], set[str], bool, float]:
    started = time.monotonic()
    with open(log, "w") as sink:
        output, stalled, interrupted = terraform_streaming(args, cwd=stack_dir, env=env, timeout=timeout,
                                                           stall_timeout=budget.stall, gap_timeout=budget.gap,
                                                           progress=phase, log=sink)
    return output, stalled, interrupted, time.monotonic() - started


def _rehearse(base: Path, environment: str, *, parallelism: int, budget: Budget) -> tuple[int, ApplyResult]:
    deadline = time.monotonic() + budget.total
    tf_env = terraform_env(base)
    common = ["-input=false", "-no-color", "-json", f"-parallelism={parallelism}"]
    with moto_server(base / "moto.log") as endpoint:
        print(f"moto: {endpoint}; synthesizing {environment} for the emulator", flush=True)
        stacks = synthesize(environment, endpoint, base / "cdktf.out", timeout=budget.timeout(
            SYNTH_TIMEOUT, deadline=deadline, later=budget.apply + budget.plan + budget.destroy))
        (stack_dir,) = [d for d in stacks.iterdir() if d.name.endswith(f"-{environment}-infra")]
        for seeded in seed_emulator(endpoint, json.loads((stack_dir / "cdk.tf.json").read_text())):
            print(f"seeded the emulator: {seeded}", flush=True)
        run(["terraform", "init", "-input=false", "-no-color"], cwd=stack_dir, env=tf_env,
            timeout=budget.timeout(INIT_TIMEOUT, deadline=deadline, later=budget.apply + budget.plan + budget.destroy))
        print(f"applying {stack_dir.name} (parallelism {parallelism}, timeout {budget.apply:.0f}s, stall timeout "
              f"{budget.stall:.0f}s, known-gap timeout {budget.gap:.0f}s)", flush=True)
        output, stalled, interrupted, seconds = _stream(
            Progress(phase="apply"), ["apply", "-auto-approve", *common], stack_dir=stack_dir, env=tf_env,
            timeout=budget.timeout(budget.apply, deadline=deadline, later=budget.plan + budget.destroy), budget=budget,
            log=base / "apply.jsonl")
        result = parse_apply_events(output, stalled=stalled)
        result.seconds, result.interrupted = seconds, interrupted
        stack_doc = json.loads((stack_dir / "cdk.tf.json").read_text())
        result.failures = [spurious_duplicate(f, stack_doc) for f in result.failures]

        print(f"planning {stack_dir.name} again (with refresh): it must change nothing", flush=True)
        second = PlanCheck(blocked=blocked_by_gaps(result))
        output, _, second.interrupted, second.seconds = _stream(
            Progress(phase="plan", refresh=True, total=len(result.applied)),
            ["plan", "-out=second.tfplan", *common], stack_dir=stack_dir, env=tf_env,
            timeout=budget.timeout(budget.plan, deadline=deadline, later=budget.destroy), budget=budget,
            log=base / "plan.jsonl")
        second.errors = parse_apply_events(output).errors
        if not second.interrupted and not second.errors:
            shown = run(["terraform", "show", "-json", "-no-color", "second.tfplan"], cwd=stack_dir, env=tf_env,
                        timeout=120).stdout
            (base / "second-plan.json").write_text(shown)
            second.changes = planned_changes(json.loads(shown))

        doc = json.loads((stack_dir / "cdk.tf.json").read_text())
        destroyed, left_behind = _destroy(stack_dir, endpoint, doc, tf_env=tf_env, common=common, budget=budget,
                                          deadline=deadline, log=base / "destroy.jsonl")
        gone = already_gone(destroyed)
        if gone:
            # The emulator answered "does not exist" to a delete: the object is gone already (moto under Terraform's
            # parallel destroy sometimes applies a request and then answers its retry). Terraform keeps it in the
            # state, so it would block the rest: forget it, say so, destroy the rest.
            print("already gone on the emulator, removed from the state: " + ", ".join(sorted(gone)), flush=True)
            run(["terraform", "state", "rm", *sorted(gone)], cwd=stack_dir, env=tf_env, timeout=60)
            destroyed = forget_gone(destroyed, gone)
        if gone or any("BucketNotEmpty" in reason for reason in left_behind.values()):
            # Server access logs kept arriving while the destroy deleted the logged buckets' configurations (moto
            # delivers them at once, AWS within minutes). Their logging is gone now: empty again, destroy the rest.
            again, left_behind = _destroy(stack_dir, endpoint, doc, tf_env=tf_env, common=common, budget=budget,
                                          deadline=deadline, log=base / "destroy-again.jsonl")
            destroyed = merge_destroys(destroyed, again)
        gaps = emulator_gaps_seen(base / "moto.log")
    print(render(result, destroyed=destroyed, gaps_seen=gaps, second=second, left_behind=left_behind), flush=True)
    # Resources blocked by a known gap (e.g. the system node group behind the EKS add-ons) are listed, not
    # failed; an apply that ended by timeout with nothing failed is a failure. A destroy may leave only resources
    # moto cannot delete behind (the emulator is discarded afterwards), each reported with its reason.
    ok = (not result.unexpected_failures and not result.errors and (bool(result.failures) or not result.not_attempted)
          and second.ok and not destroyed.unexpected_failures and not destroyed.errors
          and all(cannot_apply(_type_of(address)) for address in left_behind))
    return (EXIT_OK if ok else EXIT_FAILED), result


def _destroy(stack_dir: Path, endpoint: str, doc: dict, *, tf_env: dict[str, str], common: list[str], budget: Budget,
             deadline: float, log: Path) -> tuple[ApplyResult, dict[str, str]]:
    """Empty the stack's buckets, `terraform destroy`, and list what is left in the state (with the reasons)."""
    for emptied in empty_buckets(endpoint, doc):
        print(f"emptied before destroy: {emptied}", flush=True)
    # Without refresh: the second plan has read everything back already, and one resource the emulator cannot
    # read would otherwise stop the whole destroy before it deletes anything (`destroy: 0/0 resources`).
    print(f"destroying {stack_dir.name}", flush=True)
    output, stalled, interrupted, seconds = _stream(
        Progress(phase="destroy", actions=DESTROY_ACTIONS), ["destroy", "-auto-approve", "-refresh=false", *common],
        stack_dir=stack_dir, env=tf_env, timeout=budget.timeout(budget.destroy, deadline=deadline), budget=budget,
        log=log)
    destroyed = parse_apply_events(output, stalled=stalled, actions=DESTROY_ACTIONS)
    destroyed.seconds, destroyed.interrupted = seconds, interrupted
    return destroyed, left_in_state(stack_dir, tf_env, destroyed)


def merge_destroys(first: ApplyResult, again: ApplyResult) -> ApplyResult:
    """One destroy result from two passes: everything either deleted, the failures and errors of the last pass."""
    return ApplyResult(planned={**first.applied, **again.planned}, applied={**first.applied, **again.applied},
                       failures=again.failures, errors=again.errors, seconds=first.seconds + again.seconds,
                       interrupted=first.interrupted or again.interrupted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.rehearse", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="dev", help="environment whose infra stack is rehearsed (default: dev)")
    parser.add_argument("--parallelism", type=int, default=20)
    defaults = Budget()
    parser.add_argument("--timeout", type=float, default=defaults.total,
                        help="seconds for the whole rehearsal (each phase is cut to fit)")
    parser.add_argument("--apply-timeout", type=float, default=defaults.apply, help="seconds for the apply")
    parser.add_argument("--plan-timeout", type=float, default=defaults.plan, help="seconds for the second plan")
    parser.add_argument("--destroy-timeout", type=float, default=defaults.destroy, help="seconds for the destroy")
    parser.add_argument("--stall-timeout", type=float, default=defaults.stall,
                        help="interrupt when no resource starts or finishes for this many seconds")
    parser.add_argument("--gap-timeout", type=float, default=defaults.gap,
                        help="interrupt when only KNOWN_EMULATOR_GAPS resources have been in flight this long")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (state, logs, moto.log)")
    args = parser.parse_args(argv)
    total = time.monotonic()
    try:
        budget = Budget(total=args.timeout, apply=args.apply_timeout, plan=args.plan_timeout, destroy=args.destroy_timeout,
                        stall=args.stall_timeout, gap=args.gap_timeout)
        status, _ = rehearse(args.env, parallelism=args.parallelism, budget=budget, workdir=args.keep)
    except RuntimeError as err:
        print(f"rehearse: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(f"rehearsal {'passed' if status == EXIT_OK else 'FAILED'} in {time.monotonic() - total:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
