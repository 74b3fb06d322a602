"""`make rehearse-airflow`: the Airflow data path, run for real on loopback with the configuration the dev stacks
synthesize (tools/airflow_local_config.py says how it is derived and prints every adaptation).

Started here, all on 127.0.0.1 and all stopped at the end: PostgreSQL 15 (TLS only, clients verify-full),
PgBouncer >= 1.21 with the generated pgbouncer.ini, Redis (TLS only + AUTH), OpenBao over TLS, moto (S3, SQS,
EventBridge) holding the infra stack's buckets, event rule and queues, and Airflow's api-server, scheduler,
dag-processor, triggerer and a Celery worker. Then the scenario, one PASS/FAIL line per step with its time, and the
event latency (object landed -> DAG run created, -> task succeeded) as the last line.

One run at a time (a lock; a second run is refused with exit 2). Bounded: every wait has a deadline inside
--budget seconds. Exit 0 only if every step passed."""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client as http_client
import json
import os
import random
import secrets
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import urlsafe_b64encode
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import local_services as services  # noqa: E402
from tools import rehearse  # noqa: E402
from modules.platform.airflow_settings import PGBOUNCER_MIN_VERSION  # noqa: E402
from modules.platform import airflow as af  # noqa: E402
from modules.platform import database_roles as dbr  # noqa: E402
from tools.airflow_local_config import Credentials, Endpoints, LocalAirflow, Stacks, build  # noqa: E402

# Machine-wide, not per checkout: two rehearsals from two clones would share the cores and fixed ports.
LOCK = Path(tempfile.gettempdir()) / "rehearse-airflow.lock"
AIRFLOW_BIN = ROOT / ".venv-airflow" / "bin"
DAGS = [ROOT / "dags" / "event_landing_object_created.py", ROOT / "tools" / "rehearsal_dags" / "rehearsal_vault_read.py"]
EVENT_DAG, EVENT_TASK = "event_landing_object_created", "list_new_objects"
VAULT_DAG, VAULT_TASK = "rehearsal_vault_read", "read_from_vault"
REGION = "eu-west-1"
LATENCY_GOAL = 3.0          # seconds, object landed -> DAG run created, p50 (docs/events.md)


class StepFailed(Exception):
    pass


@dataclass
class Report:
    deadline: float
    results: list[tuple[str, bool, float]] = field(default_factory=list)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """One scenario step: prints `PASS|FAIL <name> (<s>)[: detail]`; a failure ends the scenario."""
        detail: list[str] = []
        start = time.monotonic()
        try:
            yield detail
        except Exception as exc:  # noqa: BLE001 - every failure becomes the step's FAIL line
            seconds = time.monotonic() - start
            self.results.append((name, False, seconds))
            print(f"FAIL {name} ({seconds:.1f} s): {exc}", flush=True)
            raise StepFailed(name) from exc
        seconds = time.monotonic() - start
        self.results.append((name, True, seconds))
        print(f"PASS {name} ({seconds:.1f} s)" + (f": {'; '.join(detail)}" if detail else ""), flush=True)

    def wait(self, what: str, probe: Callable[[], Any], *, timeout: float, interval: float = 0.25) -> Any:
        """Poll `probe` until it returns something truthy, within `timeout` and the overall budget."""
        end = time.monotonic() + min(timeout, max(self.remaining(), 0))
        last: Exception | None = None
        while True:
            try:
                value = probe()
                if value:
                    return value
            except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
                last = exc
            if time.monotonic() >= end:
                raise TimeoutError(f"{what}: no answer within {timeout:.0f} s"
                                   + (f" (last error: {last})" if last else ""))
            time.sleep(interval)


@dataclass
class AirflowProcess:
    name: str
    proc: subprocess.Popen
    log: Path

    def stop(self, grace: float = 15) -> None:
        """Airflow components fork (uvicorn, Celery's pool, parsers, task supervisors): stop the whole group, and
        any descendant that left it (the task supervisor starts task processes in process groups of their own)."""
        if self.proc.poll() is not None:
            return
        descendants = services._descendants(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in descendants | services._descendants(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


@contextlib.contextmanager
def single_run() -> Iterator[None]:
    """A second rehearsal while one runs would share nothing but this machine's CPU, yet both would miss their
    deadlines: refuse it."""
    with open(LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            print(f"rehearse-airflow: another rehearsal is running (pid {owner}); wait for it to finish, or stop it",
                  file=sys.stderr)
            raise SystemExit(2)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


# ---- HTTP helpers ---------------------------------------------------------------------------------------

def http(method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None,
         context: ssl.SSLContext | None = None, timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", "Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


class Api:
    """Airflow's public REST API with a FAB-issued JWT, as an operator's script would use it."""

    def __init__(self, base: str, username: str, password: str, *, context: ssl.SSLContext) -> None:
        self.base, self.username, self.password, self.token = base, username, password, ""
        self.context = context

    def login(self) -> bool:
        status, body = http("POST", f"{self.base}/auth/token", context=self.context,
                            body={"username": self.username, "password": self.password})
        if status in (200, 201) and isinstance(body, dict) and body.get("access_token"):
            self.token = body["access_token"]
            return True
        raise RuntimeError(f"POST /auth/token -> {status} {str(body)[:200]}")

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = http(method, f"{self.base}/api/v2{path}", body=body, context=self.context,
                              headers={"Authorization": f"Bearer {self.token}"})
        if status >= 300:
            raise RuntimeError(f"{method} /api/v2{path} -> {status} {str(answer)[:300]}")
        return answer


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (p95 of 5 samples is the largest): no interpolation to flatter the tail."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


# ---- the rehearsal ---------------------------------------------------------------------------------------

class Rehearsal:
    def __init__(self, workdir: Path, report: Report, events: int, gaps: list[float]) -> None:
        self.work, self.report, self.events, self.gaps = workdir, report, events, gaps
        self.stack = contextlib.ExitStack()
        self.processes: list[AirflowProcess] = []
        self.stopped = 0

    # services
    def start_services(self) -> tuple[Endpoints, Credentials, LocalAirflow]:
        work = self.work
        with self.report.step("synthesize the dev stacks (the configuration under test)") as detail:
            out = work / "cdktf.out"
            subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "main.py", "--env", "dev", "--out", str(out),
                            "--quiet"], cwd=ROOT, check=True, capture_output=True, text=True,
                           timeout=min(180, self.report.remaining()))
            self.stacks = Stacks.load(out)
            detail.append("airflow-dev-infra, airflow-dev-platform, airflow-dev-vault-config")
        # Credentials as Secrets Manager would hold them; '%', '/', '@' and '+' prove the templates' escaping (the
        # generated role passwords are letters and digits, as modules/aws/platform_secrets.py asks for).
        creds = Credentials(db_username="airflow_admin", db_password=f"p%w/{secrets.token_hex(8)}@+x",
                            app_password=secrets.token_hex(20), monitor_password=secrets.token_hex(20),
                            flask_secret_key=secrets.token_hex(32),
                            redis_token=f"t/{secrets.token_hex(12)}%+", fernet_key=urlsafe_b64encode(
                                secrets.token_bytes(32)).decode(), jwt_secret=secrets.token_hex(32),
                            api_secret_key=secrets.token_hex(32))
        with self.report.step("start PostgreSQL (TLS only), PgBouncer, Redis (TLS + AUTH), OpenBao (TLS), moto") \
                as detail:
            tls = services.make_ca(work / "certs")
            # PostgreSQL's own superuser stays the rehearsal's; the master user is what RDS makes it: CREATEROLE
            # and CREATEDB, not superuser.
            self.superuser = ("rehearsal_superuser", secrets.token_hex(16))
            pg = services.start_postgres(work / "postgres", tls=tls, superuser=self.superuser[0],
                                         password=self.superuser[1])
            self.stack.callback(self._stopped, pg.stop)
            services.create_role(pg, tls=tls, superuser=self.superuser[0], password=self.superuser[1],
                                 role=creds.db_username, role_password=creds.db_password)
            services.psql(pg.port, f'ALTER ROLE "{creds.db_username}" CREATEROLE CREATEDB', tls=tls,
                          user=self.superuser[0], password=self.superuser[1])
            redis = services.start_redis(work / "redis", tls=tls, password=creds.redis_token)
            self.stack.callback(self._stopped, redis.stop)
            info = services.redis_command(redis.port, "INFO", "server", tls=tls, password=creds.redis_token)
            info = info.decode() if isinstance(info, bytes) else str(info)
            self.redis_version = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                                       if line.startswith("redis_version:")), "7")
            bao, root_token = services.start_openbao(work / "openbao", tls=tls, kv_mount=None)   # the stack's mount
            self.stack.callback(self._stopped, bao.stop)
            moto_port = services.free_port()
            moto_log = work / "moto.log"
            moto = rehearse.start_emulator(moto_log, "127.0.0.1", moto_port)
            self.stack.callback(self._stopped, rehearse.stop, moto)
            moto_endpoint = f"http://127.0.0.1:{moto_port}"
            rehearse.wait_until_serving(moto_endpoint, moto, timeout=60, log_path=moto_log)
            self.tls = tls
            vault_token = self.setup_vault(tls, bao, root_token)
            endpoints = Endpoints(workdir=work, ca_cert=tls.ca_cert, server_cert=tls.server_cert,
                                  server_key=tls.server_key, postgres_port=pg.port,
                                  pgbouncer_port=services.free_port(), redis_port=redis.port, vault_port=bao.port,
                                  vault_token=vault_token, moto_endpoint=moto_endpoint,
                                  api_port=services.free_port(), statsd_port=services.free_port(),
                                  trust_bundle=self.trust_bundle(tls), worker_log_port=services.free_port(),
                                  trigger_log_port=services.free_port())
            local = build(self.stacks, endpoints, creds)
            for path, text in local.files.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            services.create_database(pg, tls=tls, superuser=creds.db_username, password=creds.db_password,
                                     database=local.database_name)     # as the master: it owns the database
            binary = services.pgbouncer_binary()
            version = services.pgbouncer_version(binary)
            if version < PGBOUNCER_MIN_VERSION:     # what the deployed image's tag is held to, as well
                raise RuntimeError(f"PgBouncer {version} is older than {PGBOUNCER_MIN_VERSION}, which the ini needs")
            pgb = services.start_pgbouncer(work / "pgbouncer", ini=work / "pgbouncer" / "pgbouncer.ini")
            self.pg, self.pgb, self.database = pg, pgb, local.database_name
            self.redis_port, self.broker_url = redis.port, local.env["AIRFLOW__CELERY__BROKER_URL"]
            self.note_substitutes(local, version)
            self.stack.callback(self._stopped, pgb.stop)
            detail.append(f"PgBouncer {'.'.join(map(str, version))} loaded the generated pgbouncer.ini")
            self.setup_aws(moto_endpoint, local)
        return endpoints, creds, local

    def note_substitutes(self, local: LocalAirflow, pgbouncer: tuple[int, int, int]) -> None:
        """Where the rehearsal runs something other than what would be deployed: said, not hidden."""
        (database,) = self.stacks.resources("aws_db_instance").values()
        (cache,) = self.stacks.resources("aws_elasticache_replication_group").values()
        image = self.stacks.airflow_values()["images"]["pgbouncer"]["tag"]
        notes = local.adaptations
        notes.note(f"substitute: PostgreSQL {services.POSTGRES_MAJOR} (Debian) for RDS PostgreSQL "
                   f"{database['engine_version']}; Redis {self.redis_version} for ElastiCache {cache['engine_version']}")
        notes.note(f"substitute: PgBouncer {'.'.join(map(str, pgbouncer))} (Debian trixie's source) for the image's "
                   f"{image.rsplit('-', 1)[-1]}; both at or above the ini's floor "
                   f"{'.'.join(map(str, PGBOUNCER_MIN_VERSION))}")
        notes.note("substitute: moto for S3, SQS and EventBridge: queues and buckets are created without their KMS "
                   "keys and resource policies (moto enforces neither); names, event pattern, targets, DLQs and "
                   "queue settings are the stack's")

    def trust_bundle(self, tls: services.Tls) -> Path:
        system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
        bundle = self.work / "certs" / "trust-bundle.pem"
        bundle.write_text((system.read_text() if system.exists() else "") + "\n" + tls.ca_cert.read_text())
        return bundle

    def _stopped(self, stop: Callable[..., None], *args: Any) -> None:
        stop(*args)
        self.stopped += 1

    def setup_vault(self, tls: services.Tls, bao: services.Service, root: str) -> str:
        """The vault-config stack's KV v2 mount and airflow read policy, a token holding only that policy (the
        rehearsal's stand-in for Kubernetes auth), and one Variable and one Connection for the Vault DAG."""
        def call(method: str, path: str, body: Any = None) -> Any:
            status, answer = services.openbao_request(bao, method, f"/v1/{path}", tls=tls, token=root, body=body)
            if status >= 300:
                raise RuntimeError(f"OpenBao {method} {path} -> {status} {answer}")
            return answer
        (mount,) = self.stacks.vault_config["resource"]["vault_mount"].values()
        call("POST", f"sys/mounts/{mount['path']}", {"type": mount["type"], "options": mount.get("options", {})})
        call("PUT", "sys/policies/acl/airflow-read", {"policy": self.stacks.vault_read_policy()})
        backend = json.loads(self.stacks.airflow_values()["config"]["secrets"]["backend_kwargs"])
        m, cpath, vpath = backend["mount_point"], backend["connections_path"], backend["variables_path"]
        self.expected_vault = {"variable": "hello from vault", "conn_type": "http", "host": "service.internal",
                               "login": "svc-user", "password_length": len("p@ss/w%rd")}
        call("POST", f"{m}/data/{vpath}/rehearsal_greeting", {"data": {"value": "hello from vault"}})
        call("POST", f"{m}/data/{cpath}/rehearsal_service", {"data": {
            "conn_type": "http", "host": "service.internal", "login": "svc-user", "password": "p@ss/w%rd"}})
        token = call("POST", "auth/token/create", {"policies": ["airflow-read"], "no_default_policy": True,
                                                   "ttl": "1h"})
        return token["auth"]["client_token"]

    def setup_aws(self, endpoint: str, local: LocalAirflow) -> None:
        """The infra stack's buckets, landing-bucket EventBridge notifications, the default-bus rules that target
        its event queues (with their DLQs and queue settings), and the DAGs uploaded to the bundle bucket."""
        import boto3

        kw = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                  aws_secret_access_key="testing")
        s3, sqs, events = boto3.client("s3", **kw), boto3.client("sqs", **kw), boto3.client("events", **kw)
        for name in local.buckets.values():
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        names = {f"aws_s3_bucket.{k}": v["bucket"] for k, v in self.stacks.resources("aws_s3_bucket").items()}
        for notification in self.stacks.resources("aws_s3_bucket_notification").values():
            if notification.get("eventbridge"):
                bucket = names[notification["bucket"].strip("${}").rsplit(".", 1)[0]]
                s3.put_bucket_notification_configuration(
                    Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
        queues = self.stacks.resources("aws_sqs_queue")
        arns: dict[str, str] = {}

        def queue(logical: str) -> str:
            if logical not in arns:
                spec = queues[logical]
                attributes = {"MessageRetentionPeriod": str(spec.get("message_retention_seconds", 345600))}
                for key, attr in (("receive_wait_time_seconds", "ReceiveMessageWaitTimeSeconds"),
                                  ("visibility_timeout_seconds", "VisibilityTimeout")):
                    if key in spec:
                        attributes[attr] = str(spec[key])
                if "redrive_policy" in spec:
                    redrive = json.loads(spec["redrive_policy"])
                    redrive["deadLetterTargetArn"] = queue(redrive["deadLetterTargetArn"].strip("${}").split(".")[1])
                    attributes["RedrivePolicy"] = json.dumps(redrive)
                url = sqs.create_queue(QueueName=spec["name"], Attributes=attributes)["QueueUrl"]
                arns[logical] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                    "Attributes"]["QueueArn"]
            return arns[logical]
        rules = self.stacks.resources("aws_cloudwatch_event_rule")
        for target in self.stacks.resources("aws_cloudwatch_event_target").values():
            rule_logical = target["rule"].strip("${}").split(".")[1]
            rule = rules[rule_logical]
            if not target["arn"].startswith("${aws_sqs_queue.events_") or rule.get("event_bus_name") != "default":
                continue        # the platform's own bus and Karpenter's interruption rules play no part here
            events.put_rule(Name=rule["name"], EventPattern=rule["event_pattern"], EventBusName="default")
            spec = {"Id": target.get("target_id", "queue"), "Arn": queue(target["arn"].strip("${}").split(".")[1])}
            if "dead_letter_config" in target:
                spec["DeadLetterConfig"] = {"Arn": queue(target["dead_letter_config"]["arn"].strip("${}").split(".")[1])}
            events.put_targets(Rule=rule["name"], Targets=[spec])
        prefix = f"{local.dag_bundle_prefix}/" if local.dag_bundle_prefix else ""
        for dag in DAGS:
            s3.upload_file(str(dag), local.buckets["dags"], prefix + dag.name)
        self.s3, self.buckets = s3, local.buckets

    # airflow
    def airflow_env(self, local: LocalAirflow) -> dict[str, str]:
        """What every Airflow process gets; the database components add local.database_env."""
        home = self.work / "airflow-home"
        home.mkdir(exist_ok=True)
        return {"PATH": f"{AIRFLOW_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
                "AIRFLOW_HOME": str(home), "PYTHONUNBUFFERED": "1", **local.env}

    def run_role_job(self, local: LocalAirflow) -> list[str]:
        """The bootstrap chart's role Job: its script, as synthesized, as the master user."""
        job = local.role_job
        script = self.work / "db-roles-setup.py"
        script.write_text(job.script)
        env = {"PATH": f"{AIRFLOW_BIN}:/usr/bin:/bin", "LANG": "C.UTF-8", **job.env}
        result = subprocess.run([str(AIRFLOW_BIN / "python"), str(script)], env=env, capture_output=True, text=True,
                                timeout=min(60, max(self.report.remaining(), 1)), cwd=self.work)
        if result.returncode != 0:
            raise RuntimeError(f"the role job exited {result.returncode}: {result.stderr.strip()[-1500:]}")
        return result.stdout.strip().splitlines()

    def airflow(self, env: dict[str, str], *args: str, timeout: float) -> None:
        result = subprocess.run([str(AIRFLOW_BIN / "airflow"), *args], env=env, capture_output=True, text=True,
                                timeout=min(timeout, max(self.report.remaining(), 1)), cwd=self.work)
        if result.returncode != 0:
            raise RuntimeError(f"airflow {args[0]} exited {result.returncode}: "
                               + (result.stderr.strip() or result.stdout.strip())[-1500:])

    def start(self, env: dict[str, str], name: str, *args: str) -> AirflowProcess:
        log = self.work / "logs-components" / f"{name.replace(' ', '-')}.log"
        log.parent.mkdir(exist_ok=True)
        with open(log, "ab") as sink:
            proc = subprocess.Popen([str(AIRFLOW_BIN / "airflow"), *args], env=env, stdout=sink,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.work,
                                    start_new_session=True)
        process = AirflowProcess(name, proc, log)
        self.processes.append(process)
        return process

    def run(self) -> list[tuple[float, float]]:
        endpoints, creds, local = self.start_services()
        print("adaptations (everything else is the synthesized configuration):", flush=True)
        for line in local.adaptations.lines:
            print(f"  - {line}", flush=True)
        print("  - api-server runs 1 worker process (the chart's default is 4): 2 cores", flush=True)
        base_env = self.airflow_env(local)
        # Each process gets what its chart component's env takes from Secrets, and nothing more.
        env = {name: {**base_env, **wired} for name, wired in local.component_env.items()}
        self.local = local
        user, password = "rehearsal-admin", secrets.token_urlsafe(16)
        with self.report.step("the role Job (as synthesized) creates Airflow's database roles as the master user") \
                as detail:
            detail.extend(self.run_role_job(local)[-1:])
        with self.report.step("airflow db migrate through PgBouncer (psycopg2, verify-full) as Airflow's own role"):
            self.airflow(env["migrateDatabaseJob"], "db", "migrate", timeout=300)
        with self.report.step("create the first FAB user (what docs/airflow.md tells operators to do)"):
            # `--password=` form: a generated password may start with '-', which argparse would take for an option.
            self.airflow(env["apiServer"], "users", "create", "--username", user, f"--password={password}", "--role", "Admin",
                         "--email", "rehearsal@example.com", "--firstname", "Re", "--lastname", "Hearsal",
                         timeout=180)
        # HTTPS, verified against the rehearsal CA (which stands in for the platform CA), as every client verifies.
        api = Api(f"https://localhost:{endpoints.api_port}", user, password,
                  context=ssl.create_default_context(cafile=str(endpoints.ca_cert)))
        with self.report.step("start api-server, scheduler, dag-processor, triggerer, Celery worker") as detail:
            self.start({**env["apiServer"], **local.api_server_env}, "api-server", "api-server", "--host",
                       "127.0.0.1", "--port", str(endpoints.api_port), "--workers", "1")
            self.start(env["scheduler"], "scheduler", "scheduler")
            self.start(env["dagProcessor"], "dag-processor", "dag-processor")
            self.start(env["triggerer"], "triggerer", "triggerer")
            # The worker gets no database connection, no Fernet key and no JWT secret: tasks reach the metadata
            # through the Execution API with the token the scheduler signed, and Celery results go to Redis. Tasks
            # that succeed on it are the proof that none is needed.
            self.start(env["celery"], "celery worker", "celery", "worker")
            detail.append(", ".join(f"{p.name} pid {p.proc.pid}" for p in self.processes))
            detail.append("celery worker's secrets: " + ", ".join(sorted(local.component_env["celery"])))

        def health() -> dict | None:
            self.check_alive()
            status, body = http("GET", f"{api.base}/api/v2/monitor/health", context=api.context)
            if status != 200:
                return None
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return body if all(body.get(p, {}).get("status") == "healthy" for p in parts) else None
        with self.report.step("api-server health endpoint the ALB checks: GET /api/v2/monitor/health") as detail:
            body = self.report.wait("every component healthy", health, timeout=240, interval=1)
            detail.append(", ".join(f"{k} {v['status']}" for k, v in sorted(body.items())))
            self.report.wait("a FAB token from POST /auth/token", api.login, timeout=30, interval=1)
            try:
                status, _ = http("GET", f"http://localhost:{endpoints.api_port}/api/v2/monitor/health", timeout=5)
            except (OSError, http_client.HTTPException):
                status = None
            if status == 200:
                raise RuntimeError("the API server answered plain HTTP")
            detail.append("over HTTPS verified against the rehearsal CA; plain HTTP refused")

        with self.report.step("DAGs load from the S3 DAG bundle (S3DagBundle, aws_conn_id=None)") as detail:
            def loaded() -> bool:
                self.check_alive()
                dags = {d["dag_id"] for d in api("GET", "/dags?limit=100")["dags"]}
                return {EVENT_DAG, VAULT_DAG} <= dags
            self.report.wait("both DAGs listed by the API", loaded, timeout=240, interval=1)
            errors = api("GET", "/importErrors")
            if errors["total_entries"]:
                raise RuntimeError(f"import errors: {errors['import_errors']}")
            for dag in (EVENT_DAG, VAULT_DAG):
                api("PATCH", f"/dags/{dag}", {"is_paused": False})
            bundle = api("GET", f"/dags/{EVENT_DAG}")
            if bundle.get("bundle_name") != af.DAG_BUNDLE_NAME:
                raise RuntimeError(f"{EVENT_DAG} came from bundle {bundle.get('bundle_name')!r}, "
                                   f"not {af.DAG_BUNDLE_NAME!r}")
            detail.append(f"{EVENT_DAG} from bundle {bundle.get('bundle_name')!r}, {VAULT_DAG}; no import errors")

        triggerer_log = next(p.log for p in self.processes if p.name == "triggerer")
        with self.report.step("the triggerer runs the landing queue's AssetWatcher (MessageQueueTrigger sqs)"):
            self.report.wait("the SQS trigger started", lambda: "Starting SQS sensor trigger" in
                             triggerer_log.read_text(errors="replace"), timeout=180, interval=0.5)

        latencies: list[tuple[float, float]] = []
        seen: set[str] = set()
        for index in range(self.events):
            key = f"incoming/rehearsal-{index}.csv"
            first = index == 0
            # Idle before each event, so objects land at any point of the trigger's poll cycle (long poll, then
            # waiter_delay asleep), not always right after the previous run restarted it.
            time.sleep(min(self.gaps[index], max(self.report.remaining() - 60, 0)))
            with self.report.step(f"event {index + 1}/{self.events}: s3://landing/{key} -> EventBridge rule -> "
                                  "SQS -> AssetWatcher -> DAG run -> Celery task succeeded") as detail:
                landed = time.time()
                self.s3.put_object(Bucket=self.buckets["landing"], Key=key, Body=b"id,value\n1,2\n")

                def new_run() -> dict | None:
                    self.check_alive()
                    runs = api("GET", f"/dags/{EVENT_DAG}/dagRuns?order_by=-run_after&limit=20")["dag_runs"]
                    fresh = [r for r in runs if r["dag_run_id"] not in seen]
                    return fresh[0] if fresh else None
                run = self.report.wait("a new asset-triggered run", new_run, timeout=120, interval=0.1)
                seen.add(run["dag_run_id"])
                created = parse_time(run["queued_at"]) - landed

                def finished() -> dict | None:
                    self.check_alive()
                    state = api("GET", f"/dags/{EVENT_DAG}/dagRuns/{run['dag_run_id']}")
                    if state["state"] == "failed":
                        raise StepFailed(f"run {run['dag_run_id']} failed (see the Celery worker log)")
                    return state if state["state"] == "success" else None
                done = self.report.wait("the run to succeed", finished, timeout=180, interval=0.25)
                succeeded = parse_time(done["end_date"]) - landed
                latencies.append((created, succeeded))
                xcom = api("GET", f"/dags/{EVENT_DAG}/dagRuns/{run['dag_run_id']}/taskInstances/{EVENT_TASK}/"
                                  "xcomEntries/return_value")
                expected = f"s3://{self.buckets['landing']}/{key}"
                if expected not in json.dumps(xcom.get("value")):
                    raise RuntimeError(f"the task did not see {expected}: {xcom.get('value')}")
                detail.append(f"run created {created:.2f} s, task succeeded {succeeded:.2f} s after the object landed")
                if first:
                    detail.append(f"the task returned {expected}")
            if first:
                self.check_worker_and_logs(api, run["dag_run_id"])
        with self.report.step("the metadata path is TLS on both hops: Airflow -> PgBouncer -> PostgreSQL") as detail:
            detail.extend(self.check_database_tls(creds))
        with self.report.step("Airflow holds only its own role; KEDA's query runs as the monitor role, which reads "
                              "nothing else") as detail:
            detail.extend(self.check_database_roles(creds))
        with self.report.step("a task reads a Variable and a Connection from Vault through VaultBackend") as detail:
            run = api("POST", f"/dags/{VAULT_DAG}/dagRuns", {"logical_date": None})
            run_id = run["dag_run_id"]

            def vault_done() -> dict | None:
                self.check_alive()
                state = api("GET", f"/dags/{VAULT_DAG}/dagRuns/{run_id}")["state"]
                if state == "failed":
                    raise StepFailed(f"{VAULT_DAG} failed: {self.task_log(api, VAULT_DAG, run_id, VAULT_TASK)[-800:]}")
                return state == "success"
            self.report.wait("the Vault DAG to succeed", vault_done, timeout=180, interval=0.5)
            value = api("GET", f"/dags/{VAULT_DAG}/dagRuns/{run_id}/taskInstances/{VAULT_TASK}/"
                               "xcomEntries/return_value")["value"]
            got = json.loads(value) if isinstance(value, str) else value
            if got != self.expected_vault:
                raise RuntimeError(f"read {got}, expected {self.expected_vault}")
            detail.append(f"Variable {got['variable']!r}, Connection {got['conn_type']}://{got['login']}@"
                          f"{got['host']} (password of {got['password_length']} characters) with a token "
                          "holding only the airflow read policy")
        return latencies

    def check_database_tls(self, creds: Credentials) -> list[str]:
        """PgBouncer's clients (Airflow) and PostgreSQL's backends (PgBouncer's pool) are all TLS connections; the
        clients verified the servers' certificates (sslmode=verify-full in the URL, verify-full in the ini)."""
        pg, pgb = self.pg, self.pgb
        superuser = dict(tls=self.tls, user=self.superuser[0], password=self.superuser[1])
        rows = services.psql(pg.port, "select a.usename, s.ssl, s.version from pg_stat_activity a join pg_stat_ssl s "
                             f"using (pid) where a.datname = '{self.database}'", database="postgres", **superuser)
        backends = [row.split("|") for row in rows.splitlines() if row]
        if not backends or not all(ssl_on == "t" for _, ssl_on, _ in backends):
            raise RuntimeError(f"PostgreSQL backends of {self.database}: {backends}")
        self.backend_users = sorted({user for user, _, _ in backends})
        # PgBouncer's console admits its stats_users: the monitor role.
        clients = services.psql(pgb.port, "SHOW CLIENTS", database="pgbouncer", tls=self.tls,
                                user=dbr.MONITOR_ROLE, password=creds.monitor_password).splitlines()
        # SHOW CLIENTS has a `tls` column: empty for a plaintext client, else protocol/cipher.
        airflow_clients = [row for row in clients if "|airflow-metadata|" in row]
        plain = [row for row in airflow_clients if "|TLSv1." not in row]
        if not airflow_clients or plain:
            raise RuntimeError(f"PgBouncer clients without TLS: {plain or 'no Airflow clients at all'}")
        return [f"{len(airflow_clients)} Airflow client(s) on PgBouncer, {len(backends)} PgBouncer backend(s) on "
                f"PostgreSQL, all TLS ({backends[0][2]})"]

    def check_database_roles(self, creds: Credentials) -> list[str]:
        """Every PostgreSQL session of the metadata database is Airflow's role's (or the monitor's): none is the
        master's. The KEDA scaler's connection and query, as synthesized, answer as the monitor role, which is
        refused a plain read of the table the query counts."""
        if dbr.APP_ROLE not in self.backend_users or creds.db_username in self.backend_users or not set(
                self.backend_users) <= {dbr.APP_ROLE, dbr.MONITOR_ROLE}:
            raise RuntimeError(f"sessions on {self.database} as {self.backend_users}")
        worker = next(p for p in self.processes if p.name == "celery worker")
        environ = Path(f"/proc/{worker.proc.pid}/environ").read_bytes().split(b"\0")
        forbidden = (b"SQL_ALCHEMY_CONN", b"FERNET_KEY", b"JWT_SECRET", b"FAB_FLASK_SECRET_KEY")
        held = [v.split(b"=", 1)[0].decode() for v in environ if any(f in v.split(b"=", 1)[0] for f in forbidden)]
        if held:
            raise RuntimeError(f"the Celery worker's environment holds {held}")

        def keda(query: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(services.postgres_bindir() / "psql"), "-X", "-q", "-t", "-A", "-v",
                                   "ON_ERROR_STOP=1", "-d", self.local.keda_connection, "-c", query],
                                  env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=30)
        answer = keda(self.local.keda_query)
        if answer.returncode != 0 or not answer.stdout.strip().isdigit():
            raise RuntimeError(f"KEDA's query failed: {answer.stderr.strip() or answer.stdout.strip()}")
        refused = keda("SELECT count(*) FROM public.task_instance")
        if refused.returncode == 0 or "permission denied" not in refused.stderr:
            raise RuntimeError(f"the monitor role read task_instance: {refused.stdout.strip() or refused.stderr}")
        return [f"sessions on {self.database}: {', '.join(self.backend_users)} (not {creds.db_username}); Celery "
                "worker environment without a database connection, Fernet key, JWT secret or Flask key",
                f"KEDA's query {self.local.keda_query!r} as {dbr.MONITOR_ROLE} through PgBouncer = {answer.stdout.strip()}; a plain read of task_instance: "
                "permission denied"]

    def check_worker_and_logs(self, api: Api, run_id: str) -> None:
        with self.report.step("the Celery worker ran it over the TLS broker (rediss://, ssl_cert_reqs=required)") \
                as detail:
            worker_log = next(p.log for p in self.processes if p.name == "celery worker")
            text = self.report.wait("the worker's log to name the run", lambda: run_id in worker_log.read_text(
                errors="replace") and worker_log.read_text(errors="replace"), timeout=30)
            ti = api("GET", f"/dags/{EVENT_DAG}/dagRuns/{run_id}/taskInstances/{EVENT_TASK}")
            if ti["state"] != "success" or not ti.get("hostname"):
                raise RuntimeError(f"task instance {ti['state']} on {ti.get('hostname')!r}")
            # Celery logs its transport at start; Redis here listens on TLS only, and the URL demands verification.
            if f"rediss://:**@localhost:{self.redis_port}/0" not in text:
                raise RuntimeError("the worker's log names no rediss:// transport to the rehearsal's Redis")
            if "ssl_cert_reqs=required" not in self.broker_url:
                raise RuntimeError(f"the broker URL does not require certificate verification: {self.broker_url}")
            detail.append(f"task instance success on {ti['hostname']}, queue {ti.get('queue')!r}, worker transport "
                          f"rediss:// to TLS-only Redis, ssl_cert_reqs=required")
        with self.report.step("the task log lands in the task-logs bucket and the REST API serves it") as detail:
            prefix = f"task-logs/dag_id={EVENT_DAG}/run_id={run_id}/"

            def uploaded() -> list[str]:
                listing = self.s3.list_objects_v2(Bucket=self.buckets["task-logs"], Prefix=prefix)
                return [o["Key"] for o in listing.get("Contents", [])]
            keys = self.report.wait(f"s3://{self.buckets['task-logs']}/{prefix}...", uploaded, timeout=60)
            source = f"s3://{self.buckets['task-logs']}/{prefix}"

            def served() -> str | None:
                text = self.task_log(api, EVENT_DAG, run_id, EVENT_TASK)
                start = text.find("new objects:")
                # The API names where it read the log: the bucket, not a worker's disk (delete_local_logs).
                return text[start:start + 60].split("\\n")[0] if start >= 0 and source in text else None
            line = self.report.wait("GET .../logs/1", served, timeout=60, interval=1)
            detail.append(f"{len(keys)} object(s) under {source}; GET .../logs/1 read it from there and returned "
                          f"the task's output {line!r}")

    @staticmethod
    def task_log(api: Api, dag: str, run_id: str, task: str) -> str:
        answer = api("GET", f"/dags/{dag}/dagRuns/{run_id}/taskInstances/{task}/logs/1?full_content=true")
        return json.dumps(answer.get("content", answer))

    def check_alive(self) -> None:
        for process in self.processes:
            if process.proc.poll() is not None:
                tail = process.log.read_text(errors="replace").strip().splitlines()[-15:]
                raise RuntimeError(f"airflow {process.name} exited with {process.proc.returncode}:\n    "
                                   + "\n    ".join(tail))

    def stop_all(self) -> int:
        stopped = 0
        for process in reversed(self.processes):
            process.stop()
            stopped += 1
        self.stack.close()
        return stopped + self.stopped

    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.processes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5, help="landing-bucket objects to time (at least 5)")
    parser.add_argument("--budget", type=float, default=600, help="seconds the whole rehearsal may take")
    parser.add_argument("--max-gap", type=float, default=25,
                        help="the longest idle time before an event, in seconds (gaps are drawn uniformly up to it)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data) afterwards")
    args = parser.parse_args(argv)
    if args.events < 5:
        parser.error(f"--events={args.events}: the latency needs at least 5 events")
    if not (AIRFLOW_BIN / "airflow").exists():
        print("rehearse-airflow: .venv-airflow is not installed; run `make install`", file=sys.stderr)
        return 2
    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)
    # A CI cancel or `timeout` sends SIGTERM: stop everything on the way out as for Ctrl-C.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupted)
    with single_run():
        start = time.monotonic()
        report = Report(deadline=start + args.budget)
        workdir = Path(tempfile.mkdtemp(prefix="rehearse-airflow-"))
        os.chmod(workdir, 0o755)
        gaps = [round(random.uniform(0, args.max_gap), 1) for _ in range(args.events)]
        rehearsal = Rehearsal(workdir, report, args.events, gaps)
        latencies: list[tuple[float, float]] = []
        failed = False
        try:
            latencies = rehearsal.run()
        except StepFailed:
            failed = True
        except KeyboardInterrupt as exc:
            failed = True
            print(f"FAIL rehearsal: interrupted ({exc or 'SIGINT'}); stopping everything it started", flush=True)
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback
            failed = True
            print(f"FAIL rehearsal: {type(exc).__name__}: {exc}", flush=True)
        finally:
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(signum, signal.SIG_IGN)      # the teardown itself is not interrupted
            pids = rehearsal.pids()
            stopped = rehearsal.stop_all()
            print(f"stopped {stopped} processes and services (Airflow pids {' '.join(map(str, pids)) or 'none'})",
                  flush=True)
        total = time.monotonic() - start
        passed = sum(ok for _, ok, _ in report.results)
        if failed or total > args.budget:
            print(f"rehearse-airflow: FAILED after {total:.0f} s ({passed}/{len(report.results)} steps passed); "
                  f"logs kept in {workdir}", flush=True)
            return 1
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"rehearse-airflow: all {passed} steps passed in {total:.0f} s", flush=True)
        created = [c for c, _ in latencies]
        succeeded = [s for _, s in latencies]
        p50 = statistics.median(created)
        print(f"latency goal (object -> run created p50 <= {LATENCY_GOAL:.0f} s): "
              f"{'met' if p50 <= LATENCY_GOAL else 'MISSED'}", flush=True)
        print(f"event latency over {len(latencies)} events (idle {min(gaps):.0f}-{max(gaps):.0f} s before each): "
              "object landed -> DAG run created p50 "
              f"{p50:.2f} s p95 {percentile(created, 95):.2f} s; -> task succeeded p50 "
              f"{statistics.median(succeeded):.2f} s p95 {percentile(succeeded, 95):.2f} s", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
