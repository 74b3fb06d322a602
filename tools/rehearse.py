"""Deploy rehearsal: apply the dev `infra` stack to a local AWS emulator (moto), report, destroy, stop.

    python -m tools.rehearse [--env dev] [--parallelism 20] [--apply-timeout 480] [--stall-timeout 90]
    make rehearse

Starts `moto_server` on a free loopback port, synthesizes the environment with `--aws-emulator-endpoint`
(test credentials, local state in a temp dir: no real account is touched), runs `terraform apply` on its
infra stack, prints per resource type how many applied and every resource that failed with the provider's
reason, then `terraform destroy` and stops moto. Every subprocess is bounded. The apply is interrupted
(SIGINT: Terraform stops gracefully and keeps the state of what finished) when only resources of a
KNOWN_EMULATOR_GAPS type are still in flight for --gap-timeout seconds (the provider retrying an API moto
does not implement), when nothing starts or finishes for --stall-timeout seconds, or after --apply-timeout;
the resources still in flight are then reported as stalled.

Exit status: 0 when every failure is of a type in KNOWN_EMULATOR_GAPS, 1 otherwise (or when a step fails).
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

# Resource types moto 5.2 cannot create the way the AWS provider 5.100 asks; a failure of these is expected.
KNOWN_EMULATOR_GAPS: dict[str, str] = {
    "aws_elasticache_parameter_group": "moto does not implement CreateCacheParameterGroup (HTTP 500); the provider "
                                       "retries until the rehearsal interrupts it",
    "aws_elasticache_replication_group": "depends on the parameter group above (moto's ElastiCache support is partial)",
    "aws_s3_bucket_logging": "moto refuses the target bucket (InvalidTargetBucketForLogging): it checks the legacy "
                             "log-delivery ACL, not the logging.s3.amazonaws.com bucket policy AWS uses",
    "aws_elasticache_subnet_group": "moto does not implement DeleteCacheSubnetGroup (HTTP 500): destroy retries "
                                    "until interrupted",
    "aws_eks_addon": "moto has no EKS CreateAddon route (HTTP 404)",
    "aws_eks_access_entry": "moto has no EKS CreateAccessEntry route (HTTP 404)",
    "aws_eks_pod_identity_association": "moto has no EKS CreatePodIdentityAssociation route (HTTP 404)",
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
    its endpoint URL. AWS managed policies are loaded so role policy attachments to them work as on AWS."""
    if moto_binary() is None:
        raise RuntimeError("moto_server is not installed (pipenv install: moto[server])")
    port = port or free_port()
    endpoint = f"http://{host}:{port}"
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(moto_command(host, port), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode} (log: {log_path})")
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer on {endpoint} within {startup_timeout:.0f}s")
                time.sleep(0.2)
        yield endpoint
    finally:
        stop(proc)


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
    by its `aws_route53_zone` data sources (the domain's zone is delegated by hand, outside Terraform).
    Returns what was created."""
    import boto3     # installed with moto

    route53 = boto3.client("route53", endpoint_url=endpoint, region_name=region, aws_access_key_id="test",
                           aws_secret_access_key="test")
    existing = {zone["Name"].rstrip(".") for zone in route53.list_hosted_zones()["HostedZones"]}
    created = []
    for body in stack_doc.get("data", {}).get("aws_route53_zone", {}).values():
        name = str(body.get("name", "")).rstrip(".")
        if name and not body.get("private_zone") and name not in existing:
            route53.create_hosted_zone(Name=name, CallerReference=f"rehearsal-{name}")
            existing.add(name)
            created.append(f"route53 hosted zone {name}")
    return created


# ---- terraform ------------------------------------------------------------------------------------

def terraform_env(workdir: Path) -> dict[str, str]:
    """Environment for terraform with the provider mirror (TF_CLI_CONFIG_FILE) and few SDK retries."""
    mirror = find_provider_mirror()
    if mirror is None:
        raise RuntimeError("the hashicorp/aws 5.100.0 filesystem mirror is missing (set TF_PROVIDER_MIRROR)")
    cache = workdir / "plugin-cache"
    cache.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TF_CLI_CONFIG_FILE": str(terraform_cli_config(mirror, workdir)),
            "TF_PLUGIN_CACHE_DIR": str(cache), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1",
            "AWS_MAX_ATTEMPTS": "2", "AWS_RETRY_MODE": "standard"}


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


def synthesize(environment: str, endpoint: str, out: Path) -> Path:
    """Synthesize one environment for the emulator; returns cdktf.out/stacks."""
    run([sys.executable, str(ROOT / "main.py"), "--env", environment, "--aws-emulator-endpoint", endpoint,
         "--emulator-state-dir", str(out.parent / "state"), "--out", str(out), "--quiet"], cwd=ROOT,
        timeout=SYNTH_TIMEOUT)
    return out / "stacks"


@dataclass(frozen=True, kw_only=True)
class Failure:
    address: str
    type: str
    reason: str

    @property
    def known_gap(self) -> bool:
        return self.type in KNOWN_EMULATOR_GAPS


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
                result.errors.append(text)     # (a cancelled call without address is the interrupt of a stalled one)
    result.errors += [f"{address}: {text}" for address, text in reasons.items()
                      if address not in errored and address.startswith("data.")]   # a data source the apply needs
    for address, rtype in errored.items():
        reason = reasons.get(address, "")
        if address in stalled or "context canceled" in reason or "Plugin did not respond" in reason:
            reason = "stalled: still in progress when the rehearsal interrupted terraform" + (f" ({reason})" if reason else "")
        result.failures.append(Failure(address=address, type=rtype, reason=reason or "errored (no diagnostic)"))
    for address in sorted(stalled - set(errored) - set(result.applied)):
        result.failures.append(Failure(address=address, type=_type_of(address), reason=(
            "stalled: still in progress when the rehearsal interrupted terraform")))
    result.failures.sort(key=lambda f: f.address)
    return result


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


def terraform_streaming(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float, stall_timeout: float,
                        gap_timeout: float) -> tuple[list[str], set[str], bool]:
    """Run `terraform <args> -json`, interrupting it (SIGINT, then kill) when only known-gap resources have been
    in flight for gap_timeout seconds, nothing starts or finishes for stall_timeout seconds, or the whole run
    exceeds timeout. Returns (output lines, in-flight addresses at the interrupt, interrupted?)."""
    proc = subprocess.Popen(["terraform", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    output: list[str] = []
    in_flight: dict[str, tuple[str, float]] = {}          # address -> (type, started)
    start = last_event = time.monotonic()
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
            only_gaps_stuck = bool(in_flight) and all(
                rtype in KNOWN_EMULATOR_GAPS and now - started > gap_timeout for rtype, started in in_flight.values())
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

def render(result: ApplyResult, *, destroyed: ApplyResult | None = None, gaps_seen: list[str] = ()) -> str:
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
            tag = "known emulator gap" if f.known_gap else "UNEXPECTED"
            lines.append(f"  {f.address} [{tag}]\n      {f.reason[:400]}")
    blocked = result.not_attempted
    if blocked:
        lines += ["", f"not attempted (a dependency failed): {len(blocked)}"]
        lines += [f"  {address}" for address in blocked]
    if gaps_seen:
        lines += ["", "the emulator reported:"] + [f"  {gap}" for gap in gaps_seen]
    if destroyed is not None:
        lines += ["", f"destroy: {len(destroyed.applied)}/{len(destroyed.planned)} resources in {destroyed.seconds:.0f}s"
                  + (" (interrupted: stalled)" if destroyed.interrupted else "")]
        for f in destroyed.failures:
            tag = "known emulator gap" if f.known_gap else "UNEXPECTED"
            lines.append(f"  {f.address} [{tag}]\n      {f.reason[:400]}")
        lines += [f"  {error[:600]}" for error in destroyed.errors]
    return "\n".join(lines)


def rehearse(environment: str = "dev", *, parallelism: int = 20, apply_timeout: float = 480,
             stall_timeout: float = 240, gap_timeout: float = 45, workdir: Path | None = None) -> tuple[int, ApplyResult]:
    if shutil.which("terraform") is None:
        raise RuntimeError("terraform is not on PATH")
    base = Path(workdir or tempfile.mkdtemp(prefix="rehearse-"))
    try:
        return _rehearse(base, environment, parallelism=parallelism, apply_timeout=apply_timeout,
                         stall_timeout=stall_timeout, gap_timeout=gap_timeout)
    finally:
        if workdir is None:
            shutil.rmtree(base, ignore_errors=True)


def _rehearse(base: Path, environment: str, *, parallelism: int, apply_timeout: float, stall_timeout: float,
              gap_timeout: float) -> tuple[int, ApplyResult]:
    tf_env = terraform_env(base)
    with moto_server(base / "moto.log") as endpoint:
        print(f"moto: {endpoint}; synthesizing {environment} for the emulator", flush=True)
        stacks = synthesize(environment, endpoint, base / "cdktf.out")
        (stack_dir,) = [d for d in stacks.iterdir() if d.name.endswith(f"-{environment}-infra")]
        for seeded in seed_emulator(endpoint, json.loads((stack_dir / "cdk.tf.json").read_text())):
            print(f"seeded the emulator: {seeded}", flush=True)
        run(["terraform", "init", "-input=false", "-no-color"], cwd=stack_dir, env=tf_env, timeout=INIT_TIMEOUT)
        print(f"applying {stack_dir.name} (parallelism {parallelism}, timeout {apply_timeout:.0f}s, stall timeout "
              f"{stall_timeout:.0f}s, known-gap timeout {gap_timeout:.0f}s)", flush=True)
        started = time.monotonic()
        output, stalled, interrupted = terraform_streaming(
            ["apply", "-auto-approve", "-input=false", "-no-color", "-json", f"-parallelism={parallelism}"],
            cwd=stack_dir, env=tf_env, timeout=apply_timeout, stall_timeout=stall_timeout,
            gap_timeout=gap_timeout)
        (base / "apply.jsonl").write_text("".join(output))
        result = parse_apply_events(output, stalled=stalled)
        result.seconds, result.interrupted = time.monotonic() - started, interrupted
        print(f"destroying {stack_dir.name}", flush=True)
        started = time.monotonic()
        output, stalled, interrupted = terraform_streaming(
            ["destroy", "-auto-approve", "-input=false", "-no-color", "-json", f"-parallelism={parallelism}"],
            cwd=stack_dir, env=tf_env, timeout=apply_timeout, stall_timeout=stall_timeout, gap_timeout=gap_timeout)
        (base / "destroy.jsonl").write_text("".join(output))
        destroyed = parse_apply_events(output, stalled=stalled, actions=DESTROY_ACTIONS)
        destroyed.seconds, destroyed.interrupted = time.monotonic() - started, interrupted
        gaps = emulator_gaps_seen(base / "moto.log")
    print(render(result, destroyed=destroyed, gaps_seen=gaps))
    # Resources blocked by a known gap (e.g. the replication group behind the parameter group) are listed, not failed;
    # an apply that ended by timeout with nothing failed is a failure.
    # The emulator is discarded afterwards, so a destroy that leaves known-gap resources behind is fine.
    ok = (not result.unexpected_failures and not result.errors and not destroyed.unexpected_failures
          and not destroyed.errors and (bool(result.failures) or not result.not_attempted))
    return (EXIT_OK if ok else EXIT_FAILED), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.rehearse", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="dev", help="environment whose infra stack is rehearsed (default: dev)")
    parser.add_argument("--parallelism", type=int, default=20)
    parser.add_argument("--apply-timeout", type=float, default=480, help="seconds for apply, and again for destroy")
    parser.add_argument("--stall-timeout", type=float, default=240,
                        help="interrupt when no resource starts or finishes for this many seconds")
    parser.add_argument("--gap-timeout", type=float, default=45,
                        help="interrupt when only KNOWN_EMULATOR_GAPS resources have been in flight this long")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (state, logs, moto.log)")
    args = parser.parse_args(argv)
    total = time.monotonic()
    try:
        status, _ = rehearse(args.env, parallelism=args.parallelism, apply_timeout=args.apply_timeout,
                             stall_timeout=args.stall_timeout, gap_timeout=args.gap_timeout,
                             workdir=args.keep)
    except RuntimeError as err:
        print(f"rehearse: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(f"rehearsal {'passed' if status == EXIT_OK else 'FAILED'} in {time.monotonic() - total:.0f}s")
    return status


if __name__ == "__main__":
    sys.exit(main())
