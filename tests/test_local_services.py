"""tools.local_services against the real servers: PostgreSQL 15, PgBouncer (built on first use), Redis 7 and OpenBao,
each started on 127.0.0.1 with TLS and stopped again. What is asserted is what a client sees: plaintext refused,
a verified TLS connection (with the password) accepted, and nothing left running or listening beyond loopback."""
from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import local_services as ls  # noqa: E402

SUPERUSER, PG_PASSWORD = "postgres", "pg 'secret' \\ pw"          # quoting is part of what is tested
REDIS_PASSWORD = 'redis "secret" pw'
STARTED: list[ls.Service] = []


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN that process `pid` holds, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:            # 0A = LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))   # host-order words
            found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


@pytest.fixture(scope="module", autouse=True)
def nothing_left_running():
    """Torn down last: every service the module started has stopped, with its children."""
    yield
    time.sleep(0.2)
    left = [s.name for s in STARTED if s.alive()]
    assert not left, f"still running: {left}"
    ps = subprocess.run(["ps", "-eo", "pid,user,args"], capture_output=True, text=True).stdout
    ours = [line for line in ps.splitlines()
            if any(str(s.state) in line or f" {s.pid} " in f" {line.strip()} " for s in STARTED)]
    assert not ours, "processes left behind:\n" + "\n".join(ours)


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for init to reap it is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def started(service: ls.Service) -> ls.Service:
    STARTED.append(service)
    return service


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="module")
def tls(workdir) -> ls.Tls:
    return ls.make_ca(workdir / "tls")


@pytest.fixture(scope="module")
def postgres(workdir, tls):
    service = started(ls.start_postgres(workdir, tls=tls, superuser=SUPERUSER, password=PG_PASSWORD))
    yield service
    service.stop()


@pytest.fixture(scope="module")
def redis(workdir, tls):
    service = started(ls.start_redis(workdir, tls=tls, password=REDIS_PASSWORD))
    yield service
    service.stop()


@pytest.fixture(scope="module")
def openbao(workdir, tls):
    service, token = ls.start_openbao(workdir, tls=tls)
    started(service)
    yield service, token
    service.stop()


def test_make_ca_writes_a_server_certificate_for_localhost_and_private_keys(tmp_path):
    from cryptography import x509

    tls = ls.make_ca(tmp_path / "ca")
    assert tls.server_key.stat().st_mode & 0o777 == 0o600
    assert not list(tls.directory.glob("ca.key")), "the CA's key is thrown away"
    cert = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)


def test_postgres_refuses_plaintext_and_accepts_verify_full(postgres, tls):
    with pytest.raises(ls.ServiceError, match="no encryption"):
        ls.psql(postgres.port, "select 1", tls=tls, user=SUPERUSER, password=PG_PASSWORD, sslmode="disable")
    assert ls.psql(postgres.port, "select ssl from pg_stat_ssl where pid = pg_backend_pid()", tls=tls,
                   user=SUPERUSER, password=PG_PASSWORD) == "t"
    with pytest.raises(ls.ServiceError, match="password authentication failed"):
        ls.psql(postgres.port, "select 1", tls=tls, user=SUPERUSER, password="wrong")


def test_postgres_certificate_is_checked_against_the_ca(postgres, tls, tmp_path):
    other = ls.make_ca(tmp_path / "other-ca")
    with pytest.raises(ls.ServiceError, match="certificate verify failed"):
        ls.psql(postgres.port, "select 1", tls=other, user=SUPERUSER, password=PG_PASSWORD)


def test_postgres_settings_and_create_database(postgres, tls):
    def show(setting: str) -> str:
        return ls.psql(postgres.port, f"show {setting}", tls=tls, user=SUPERUSER, password=PG_PASSWORD)

    assert show("server_version").startswith("15.")
    assert show("listen_addresses") == "127.0.0.1"
    assert show("ssl_min_protocol_version") == "TLSv1.2"
    hba = ls.psql(postgres.port, "select type, address, auth_method from pg_hba_file_rules", tls=tls,
                  user=SUPERUSER, password=PG_PASSWORD)
    assert hba.splitlines() == ["hostssl|127.0.0.1|scram-sha-256"]
    ls.create_database(postgres, tls=tls, superuser=SUPERUSER, password=PG_PASSWORD, database="rehearsal db")
    ls.create_database(postgres, tls=tls, superuser=SUPERUSER, password=PG_PASSWORD, database="rehearsal db")
    assert ls.psql(postgres.port, "select current_database()", tls=tls, user=SUPERUSER, password=PG_PASSWORD,
                   database="rehearsal db") == "rehearsal db"


def test_pgbouncer_is_built_at_a_version_with_max_prepared_statements():
    result = subprocess.run([sys.executable, "-m", "tools.local_services", "build-pgbouncer"], cwd=ROOT,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("PgBouncer 1.24.1 at ")
    assert ls.pgbouncer_version(ls.pgbouncer_binary()) >= (1, 21, 0)


def write_pgbouncer_ini(directory: Path, tls: ls.Tls, postgres: ls.Service, *, extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "userlist.txt").write_text('"airflow" "airflow-pw"\n')
    ini = directory / "pgbouncer.ini"
    ini.write_text(f"""\
[databases]
airflow = host=127.0.0.1 port={postgres.port} dbname=airflow

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {ls.free_port()}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = userlist.txt
pool_mode = transaction
max_prepared_statements = 200
client_tls_sslmode = require
client_tls_cert_file = {tls.server_cert}
client_tls_key_file = {tls.server_key}
client_tls_protocols = tlsv1.2,tlsv1.3
server_tls_sslmode = verify-full
server_tls_ca_file = {tls.ca_cert}
server_tls_protocols = tlsv1.2,tlsv1.3
{extra}""")
    return ini


def test_pgbouncer_in_front_of_postgres_over_tls_both_ways(postgres, tls, workdir):
    ls.create_role(postgres, tls=tls, superuser=SUPERUSER, password=PG_PASSWORD, role="airflow",
                   role_password="airflow-pw")
    ls.create_database(postgres, tls=tls, superuser=SUPERUSER, password=PG_PASSWORD, database="airflow",
                       owner="airflow")
    ini = write_pgbouncer_ini(workdir / "pgbouncer-config", tls, postgres)
    with ls.start_pgbouncer(workdir, ini=ini) as bouncer:
        started(bouncer)
        assert ls.psql(bouncer.port, "select 1", tls=tls, user="airflow", password="airflow-pw",
                       database="airflow") == "1"
        # PostgreSQL saw a TLS connection from PgBouncer (server_tls_sslmode = verify-full)
        assert ls.psql(postgres.port, "select count(*) > 0 from pg_stat_ssl join pg_stat_activity using (pid) "
                       "where ssl and usename = 'airflow'", tls=tls, user=SUPERUSER, password=PG_PASSWORD) == "t"
        with pytest.raises(ls.ServiceError):
            ls.psql(bouncer.port, "select 1", tls=tls, user="airflow", password="airflow-pw", database="airflow",
                    sslmode="disable")
        assert listening(bouncer.pid) == {("127.0.0.1", bouncer.port)}
    assert not bouncer.alive()


def test_pgbouncer_that_exits_at_start_raises_with_its_log(postgres, tls, workdir):
    ini = write_pgbouncer_ini(workdir / "pgbouncer-bad", tls, postgres, extra="no_such_setting = 1\n")
    with pytest.raises(ls.ServiceError, match="(?s)exited.*no_such_setting"):
        started(ls.start_pgbouncer(workdir, ini=ini, timeout=10))


def test_pgbouncer_must_listen_on_loopback_only(postgres, tls, workdir):
    ini = write_pgbouncer_ini(workdir / "pgbouncer-any", tls, postgres)
    ini.write_text(ini.read_text().replace("listen_addr = 127.0.0.1", "listen_addr = *"))
    with pytest.raises(ls.ServiceError, match="listen_addr must be 127.0.0.1"):
        started(ls.start_pgbouncer(workdir, ini=ini))


def test_redis_answers_only_tls_with_the_password(redis, tls):
    assert listening(redis.pid) == {("127.0.0.1", redis.port)}          # `port 0`: no plaintext port
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as plain:
        plain.sendall(b"PING\r\n")
        try:
            answer = plain.recv(100)
        except (ConnectionResetError, socket.timeout):
            answer = b""
    assert b"PONG" not in answer
    with pytest.raises(ls.RedisReplyError, match="NOAUTH"):
        ls.redis_command(redis.port, "PING", tls=tls, password=None)
    with pytest.raises(ls.RedisReplyError, match="WRONGPASS"):
        ls.redis_command(redis.port, "PING", tls=tls, password="wrong")
    assert ls.redis_command(redis.port, "PING", tls=tls, password=REDIS_PASSWORD) == "PONG"
    assert ls.redis_command(redis.port, "CONFIG", "GET", "save", tls=tls, password=REDIS_PASSWORD) == [b"save", b""]


def test_redis_certificate_is_checked_against_the_ca(redis, tmp_path):
    with pytest.raises(ssl.SSLCertVerificationError):
        ls.redis_command(redis.port, "PING", tls=ls.make_ca(tmp_path / "other"), password=REDIS_PASSWORD)


def test_openbao_health_and_kv_v2_over_verified_tls(openbao, tls):
    service, token = openbao
    status, health = ls.openbao_request(service, "GET", "/v1/sys/health", tls=tls)
    assert status == 200 and health["initialized"] and not health["sealed"]
    status, _ = ls.openbao_request(service, "POST", "/v1/secret/data/airflow/connections/db", tls=tls, token=token,
                                   body={"data": {"conn_uri": "postgresql://airflow@localhost/airflow"}})
    assert status == 200
    status, read = ls.openbao_request(service, "GET", "/v1/secret/data/airflow/connections/db", tls=tls, token=token)
    assert status == 200 and read["data"]["data"] == {"conn_uri": "postgresql://airflow@localhost/airflow"}
    status, _ = ls.openbao_request(service, "GET", "/v1/secret/data/airflow/connections/db", tls=tls)
    assert status in (400, 403)                                             # no token, no secret
    assert {address for address, _ in listening(service.pid)} == {"127.0.0.1"}


def test_openbao_speaks_no_plaintext(openbao, tls, tmp_path):
    service, _ = openbao
    with socket.create_connection(("127.0.0.1", service.port), timeout=5) as plain:
        plain.sendall(b"GET /v1/sys/health HTTP/1.0\r\nHost: localhost\r\n\r\n")
        answer = plain.recv(200)
    assert not answer.startswith(b"HTTP/1.0 200") and b"HTTPS" in answer
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        ls.openbao_request(service, "GET", "/v1/sys/health", tls=ls.make_ca(tmp_path / "other"))


def test_stop_is_idempotent_and_timeouts_name_the_service(workdir, tls):
    redis = started(ls.start_redis(workdir / "second", tls=tls, password="pw"))
    assert redis.alive()
    redis.stop()
    redis.stop()
    assert not redis.alive()
    # a readiness probe that never succeeds: bounded, and the error names service, port and log
    service = started(ls._spawn("sleeper", ["sleep", "30"], workdir=workdir, state=workdir, port=1,
                                stop_signal=15, cleanup=None))
    try:
        with pytest.raises(TimeoutError, match=r"sleeper on 127\.0\.0\.1:1 not ready after 0\.5 s"):
            ls._wait_until(service, lambda: False, 0.5)
    finally:
        service.stop()


def test_stop_escalates_to_sigkill_for_the_whole_process_group(workdir):
    service = started(ls._spawn("stubborn", ["sh", "-c", "trap '' TERM; sleep 60 & wait; sleep 60"],
                                workdir=workdir, state=workdir, port=1, stop_signal=15, cleanup=None))
    time.sleep(0.3)
    children = ls._descendants(service.pid)
    assert children
    started_at = time.monotonic()
    service.stop(timeout=0.5)
    assert time.monotonic() - started_at < 5
    assert not service.alive()
    assert not [pid for pid in children if running(pid)]


def test_importable_from_the_airflow_virtualenv():
    python = ROOT / ".venv-airflow" / "bin" / "python"
    if not python.exists():
        pytest.skip(".venv-airflow is not installed (make install)")
    result = subprocess.run([str(python), "-c", "import tools.local_services as m; print(m.HOST)"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "127.0.0.1", result.stderr
