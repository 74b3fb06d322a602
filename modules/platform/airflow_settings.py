"""Environment-tunable settings of the Airflow release (modules/platform/airflow.py), validated here: each field, its
default, its rule and its one-line doc exist only in this class (the environment section
environments/sections/airflow.py subclasses it and adds the production rules; AirflowProps embeds it whole).

Pure data with no cdktf import, so environments/ can use it before the jsii runtime is set up (main.py imports
environments first)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..core import validation
from ..core.validation import require

IMAGE_REPOSITORY = "apache/airflow"
# Tested = deployed: the Airflow release the image runs is the one requirements/airflow.txt installs for the tests
# and `make rehearse-airflow` (a test keeps the two equal), on the same Python minor as the test virtualenv.
AIRFLOW_VERSION = "3.3.2"
PYTHON_VERSION = "3.11"
# Exactly the tested pair: a bare '3.3.2' tag is the image's default Python, which the tests never ran.
_IMAGE_TAG = re.compile(rf"{re.escape(AIRFLOW_VERSION)}-python{re.escape(PYTHON_VERSION)}")
# An image may be pinned by content as well: `<tag>@sha256:<64 hex>` (the tag stays, for people and for the version
# rule above; the digest is what the cluster pulls). Only sha256 digests: that is what registries (Docker Hub, ECR)
# serve and what `docker buildx imagetools inspect` / `crane digest` print.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# The chart's PgBouncer image (chart 1.21.0 default); its tag ends in the PgBouncer version. The generated
# pgbouncer.ini uses `max_prepared_statements`, which PgBouncer < 1.21 rejects at start ("unknown parameter").
PGBOUNCER_IMAGE_REPOSITORY = "apache/airflow"
PGBOUNCER_MIN_VERSION = (1, 21, 0)
_PGBOUNCER_TAG = re.compile(r"(?:[A-Za-z0-9_.-]*-)?(\d{1,2})\.(\d+)\.(\d+)")
_CPU = re.compile(r"([1-9]\d*m|\d+(\.\d+)?)")
_MEMORY = re.compile(r"[1-9]\d*(Mi|Gi)")
_IMAGE_REPO = re.compile(r"[a-z0-9]+([._/-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*")


def _positive(field_: str, value: Any, low: int, high: int, fix: str) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
            field_, value, f"is outside {low}-{high}", fix)


@dataclass(frozen=True, kw_only=True)
class AirflowSettings:
    """What differs between environments: image, capacity, redundancy and parsing cadence. Defaults are the
    production-safe choice (2 of every long-running component); dev opts down explicitly."""
    image_repository: str = IMAGE_REPOSITORY    # where the Airflow image comes from (e.g. an ECR mirror)
    image_tag: str = f"{AIRFLOW_VERSION}-python{PYTHON_VERSION}"   # the tested Airflow (AIRFLOW_VERSION) and Python;
    # may end in '@sha256:<64 hex>' to pin the image by content (a tag can be pushed again, a digest cannot)
    pgbouncer_image_repository: str = PGBOUNCER_IMAGE_REPOSITORY
    pgbouncer_image_tag: str = "airflow-pgbouncer-2025.03.05-1.23.1"  # ends in the PgBouncer version (>= 1.21)
    # Replicas of each long-running component: 2+ gets a PodDisruptionBudget and rides out a node drain.
    scheduler_replicas: int = 2
    api_server_replicas: int = 2
    dag_processor_replicas: int = 2
    triggerer_replicas: int = 2
    pgbouncer_replicas: int = 2
    # Celery workers (KEDA scales them between min and max on running + queued Celery tasks / concurrency).
    worker_concurrency: int = 16                # task slots per Celery worker
    worker_min_replicas: int = 1                # 0 = scale to zero when idle
    worker_max_replicas: int = 10               # the most Celery workers KEDA starts
    worker_cpu: str = "1"                       # request per Celery worker / task pod (Karpenter sizes nodes on it)
    worker_memory: str = "4Gi"                  # request and limit
    keda_polling_interval: int = 10             # seconds between KEDA's queue-depth queries
    keda_cooldown_period: int = 300             # seconds without work before scaling to the minimum
    # DAG bundle and parsing load (there is no "Redis DAG cache": docs/airflow.md).
    dag_bundle_prefix: str = ""                 # "" = the whole DAGs bucket
    dag_bundle_refresh_interval: int = 300      # seconds between S3 syncs of the bundle
    min_file_process_interval: int = 60         # seconds before a DAG file is parsed again
    parsing_processes: int = 2                  # parser processes per dag-processor
    dag_cache_size: int = 64                    # [api] DAGs the API server keeps deserialized
    dag_cache_ttl: int = 3600                   # [api] seconds a cached DAG lives
    # PgBouncer in front of RDS.
    pgbouncer_pool_size: int = 20               # server connections per replica to the metadata DB
    pgbouncer_max_client_conn: int = 500        # client connections per replica from Airflow

    def __post_init__(self) -> None:
        with validation.section("airflow"):
            self._validate()

    def _validate(self) -> None:
        require(isinstance(self.image_repository, str) and _IMAGE_REPO.fullmatch(self.image_repository) is not None,
                "image_repository", self.image_repository, "is not an image repository",
                "use e.g. 'apache/airflow' or '<account>.dkr.ecr.<region>.amazonaws.com/airflow'")
        require(isinstance(self.image_tag, str), "image_tag", self.image_tag, "is not a string",
                f"use '{AIRFLOW_VERSION}-python{PYTHON_VERSION}', optionally followed by '@sha256:<digest>'")
        tag, at, digest = self.image_tag.partition("@")
        require(not at or _DIGEST.fullmatch(digest) is not None, "image_tag", self.image_tag,
                "has a malformed digest after '@' (a sha256 digest is 'sha256:' and 64 lowercase hex characters)",
                f"use '{AIRFLOW_VERSION}-python{PYTHON_VERSION}@sha256:<64 hex>' with the digest your registry "
                f"reports for that tag (e.g. `crane digest {self.image_repository}:{tag}`), or drop '@...'")
        require(_IMAGE_TAG.fullmatch(tag) is not None,
                "image_tag", self.image_tag, f"is not the tested Airflow {AIRFLOW_VERSION} on Python {PYTHON_VERSION} "
                "(requirements/airflow.txt, .venv-airflow)",
                f"use '{AIRFLOW_VERSION}-python{PYTHON_VERSION}', or move AIRFLOW_VERSION and requirements/airflow.txt "
                "together and run `make rehearse-airflow`")
        require(isinstance(self.pgbouncer_image_repository, str)
                and _IMAGE_REPO.fullmatch(self.pgbouncer_image_repository) is not None,
                "pgbouncer_image_repository", self.pgbouncer_image_repository, "is not an image repository",
                "use e.g. 'apache/airflow' or an ECR mirror of it")
        version = pgbouncer_version(self.pgbouncer_image_tag)
        require(version is not None, "pgbouncer_image_tag", self.pgbouncer_image_tag,
                "does not end in a PgBouncer version", "use a tag such as 'airflow-pgbouncer-2025.03.05-1.23.1'")
        require(version >= PGBOUNCER_MIN_VERSION, "pgbouncer_image_tag", self.pgbouncer_image_tag,
                f"is PgBouncer {'.'.join(map(str, version or ()))}, older than "
                f"{'.'.join(map(str, PGBOUNCER_MIN_VERSION))}, which the generated pgbouncer.ini needs "
                "(max_prepared_statements)", "use the chart's 'airflow-pgbouncer-2025.03.05-1.23.1' or newer")
        for name in ("scheduler_replicas", "api_server_replicas", "dag_processor_replicas", "triggerer_replicas",
                     "pgbouncer_replicas"):
            _positive(name, getattr(self, name), 1, 10, "use 1 for dev, 2-3 where the component must survive a "
                      "node drain")
        _positive("worker_concurrency", self.worker_concurrency, 1, 256,
                  "use the task slots per Celery worker, e.g. 16")
        _positive("worker_min_replicas", self.worker_min_replicas, 0, 100, "use 0 (scale to zero) or more")
        _positive("worker_max_replicas", self.worker_max_replicas, 1, 500, "use the most Celery workers to run")
        require(self.worker_max_replicas >= self.worker_min_replicas, "worker_max_replicas",
                self.worker_max_replicas, f"is below worker_min_replicas={self.worker_min_replicas}",
                "set worker_max_replicas >= worker_min_replicas")
        require(isinstance(self.worker_cpu, str) and _CPU.fullmatch(self.worker_cpu) is not None, "worker_cpu",
                self.worker_cpu, "is not a CPU quantity", "use e.g. '500m' or '2'")
        require(isinstance(self.worker_memory, str) and _MEMORY.fullmatch(self.worker_memory) is not None,
                "worker_memory", self.worker_memory, "is not a memory quantity", "use e.g. '4Gi' or '512Mi'")
        _positive("keda_polling_interval", self.keda_polling_interval, 1, 600, "use seconds, e.g. 10")
        _positive("keda_cooldown_period", self.keda_cooldown_period, 0, 86400, "use seconds, e.g. 300")
        require(isinstance(self.dag_bundle_prefix, str)
                and re.fullmatch(r"([A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)?", self.dag_bundle_prefix) is not None,
                "dag_bundle_prefix", self.dag_bundle_prefix, "is not an S3 key prefix",
                "use '' (whole bucket) or a path such as 'dags' without leading or trailing '/'")
        _positive("dag_bundle_refresh_interval", self.dag_bundle_refresh_interval, 10, 86400,
                  "use seconds between bundle refreshes, e.g. 300")
        _positive("min_file_process_interval", self.min_file_process_interval, 1, 86400, "use seconds, e.g. 60")
        _positive("parsing_processes", self.parsing_processes, 1, 64, "use 1-64 parser processes per dag-processor")
        _positive("dag_cache_size", self.dag_cache_size, 1, 10000, "use e.g. 64")
        _positive("dag_cache_ttl", self.dag_cache_ttl, 1, 86400, "use seconds, e.g. 3600")
        _positive("pgbouncer_pool_size", self.pgbouncer_pool_size, 1, 1000, "use e.g. 20 connections per replica")
        _positive("pgbouncer_max_client_conn", self.pgbouncer_max_client_conn, 10, 100000, "use e.g. 500")

    @property
    def image_version_tag(self) -> str:
        """The tag without a digest ('3.3.2-python3.11')."""
        return self.image_tag.partition("@")[0]

    @property
    def image_digest(self) -> str | None:
        """The digest the image is pinned to ('sha256:…'), or None when it is pulled by tag."""
        return self.image_tag.partition("@")[2] or None

    @property
    def image_reference(self) -> str:
        """What a container's `image:` names: 'repo:tag', or 'repo:tag@sha256:…' (the digest decides the pull)."""
        return f"{self.image_repository}:{self.image_tag}"

    @property
    def airflow_version(self) -> str:
        """The plain Airflow version ('3.3.2'), whatever suffix or digest the tag has."""
        return self.image_version_tag.split("-", 1)[0]


def pgbouncer_version(tag: Any) -> tuple[int, int, int] | None:
    """The PgBouncer version a PgBouncer image tag ends in ('airflow-pgbouncer-2025.03.05-1.23.1' -> (1, 23, 1))."""
    match = _PGBOUNCER_TAG.fullmatch(tag) if isinstance(tag, str) else None
    return tuple(int(part) for part in match.groups()) if match else None  # type: ignore[return-value]
