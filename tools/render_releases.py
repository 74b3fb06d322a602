"""Render every `helm_release` of a synthesized platform stack with real Helm, and check the manifests.

    python -m tools.render_releases [OUT_DIR] [--checkov]   # OUT_DIR: a cdktf.out (default: ./cdktf.out)

Helm is helm-python-sdk (Helm v4's Go SDK as a library, no binary); the charts are the sources vendored under
tests/data/chart-sources/ (PROVENANCE.md there: repository, tag, commit, what was left out) and the project's own
charts as synthesized (the stack's `assets/`). A release is rendered with its `values` documents coalesced in
order, then its `set`/`set_list`/`set_sensitive` entries, under its name and namespace, as `helm install` would.
Terraform references in the values (`${...}`, known only at apply) become placeholders of the right shape
(`PLACEHOLDERS`: an ARN, a hostname, a port number, ...); a reference with no row there fails loudly.

Checks (each returns problems as one line each; an empty list passes):
- `schema_problems`: every manifest against the Kubernetes 1.34 OpenAPI schema (kubernetes-validate, strict: no
  unknown field), custom kinds against their CRD's openAPIV3Schema (chart-sources/crd-schemas.json), made strict
  the same way (the API server would prune an unknown field silently);
- `secret_problems`: every Secret and key a pod takes (env valueFrom, envFrom, secret and projected volumes,
  image pull secrets, the operator-mounted `secrets:` of Prometheus/Alertmanager) is created by a rendered
  Secret, ExternalSecret or cert-manager Certificate, or is one a controller creates at run time
  (`RUNTIME_SECRETS`, each with who creates it);
- `pod_identity_problems`: every Pod Identity association's namespace/service account is a rendered
  ServiceAccount that a rendered pod runs as;
- `service_port_problems`: every TargetGroupBinding and ServiceMonitor endpoint reaches a port of a rendered
  Service (or of one the cluster creates itself, `CLUSTER_SERVICES`);
- `pod_security_problems`: every pod meets the Pod Security Standards level its rendered Namespace enforces
  (`pod-security.kubernetes.io/enforce`; the controls are in tools/pod_security.py).

Pods are the pod templates of workloads plus pod specs kept as files in ConfigMaps (Airflow's KubernetesExecutor
pod template), since those become task pods.
"""
from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "tests" / "data" / "chart-sources"
CRD_SCHEMAS = SOURCES / "crd-schemas.json"
KUBERNETES_VERSION = "1.34"
PLACEHOLDER_ACCOUNT = "123456789012"


class RenderError(ValueError):
    """A release that cannot be rendered faithfully; the message names the release and the fix."""


# ---- chart sources --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChartSource:
    directory: str | None          # under SOURCES; None: nothing to render (see reason)
    version: str                   # the vendored chart's own version
    reason: str = ""               # why the vendored version differs from the release's, or why nothing renders
    # A proxy's values.yaml defaults that the real version no longer has, as the real version behaves; the
    # release's own values still apply over them. Each is named with its reason in CHART_SOURCES.
    proxy_defaults: tuple[tuple[str, Any], ...] = ()


# (chart, release version) -> vendored source. Local charts (`assets/...`) render from the synthesized stack.
CHART_SOURCES: dict[tuple[str, str], ChartSource] = {
    ("airflow", "1.21.0"): ChartSource(
        "airflow", "1.18.0", "proxy: the 1.21.0 templates could not be obtained; keys only 1.21 reads reach no "
        "template (docs/rendering.md lists them)",
        # 1.21.0's values.yaml (tests/data/charts/airflow/) has no enableBuiltInSecretEnvVars.AIRFLOW__CORE__SQL_ALCHEMY_CONN
        # (the Airflow < 2.3 variable is gone), so 1.21 renders none; 1.18 defaults it on, into every container.
        proxy_defaults=(("enableBuiltInSecretEnvVars.AIRFLOW__CORE__SQL_ALCHEMY_CONN", False),)),
    ("aws-load-balancer-controller", "3.5.0"): ChartSource("aws-load-balancer-controller", "3.5.0"),
    ("cert-manager", "v1.20.2"): ChartSource("cert-manager", "v1.20.2"),
    ("external-secrets", "2.10.0"): ChartSource(
        "external-secrets", "2.9.0", "proxy: no 2.10.0 tag or chart source could be obtained; 2.9.0 is the newest"),
    ("karpenter", "1.14.1"): ChartSource("karpenter", "1.14.1"),
    ("karpenter-crd", "1.14.1"): ChartSource(
        None, "1.14.1", "renders CustomResourceDefinitions only; the kinds they define are checked against "
        "crd-schemas.json wherever they are used"),
    ("keda", "2.20.2"): ChartSource("keda", "2.20.2"),
    ("kube-prometheus-stack", "88.5.3"): ChartSource("kube-prometheus-stack", "88.5.3"),
    ("vault", "0.34.1"): ChartSource("vault", "0.34.1"),
}


# ---- Terraform reference placeholders --------------------------------------------------------------------------

# (resource type, attribute) -> placeholder text. Terraform interpolates references into the values text before
# Helm parses it, so a placeholder is text too: {name} is a DNS-safe name unique to the reference.
PLACEHOLDERS: dict[tuple[str, str], str] = {
    ("aws_db_instance", "address"): "{name}.c0ffee000000.{region}.rds.amazonaws.com",
    ("aws_db_instance", "port"): "5432",
    ("aws_db_instance", "master_user_secret0secret_arn"): "arn:aws:secretsmanager:{region}:{account}:secret:rds!db-{uuid}-AbCdEf",
    ("aws_elasticache_replication_group", "primary_endpoint_address"): "master.{name}.c0ffee.cache.amazonaws.com",
    ("aws_elasticache_replication_group", "port"): "6379",
    ("aws_iam_role", "name"): "{name}",
    ("aws_iam_role", "arn"): "arn:aws:iam::{account}:role/{name}",
    ("aws_kms_key", "arn"): "arn:aws:kms:{region}:{account}:key/{uuid}",
    ("aws_kms_key", "key_id"): "{uuid}",
    ("aws_lb", "arn"): "arn:aws:elasticloadbalancing:{region}:{account}:loadbalancer/app/{name}/0123456789abcdef",
    ("aws_lb_target_group", "arn"): "arn:aws:elasticloadbalancing:{region}:{account}:targetgroup/{name}/0123456789abcdef",
    ("aws_s3_bucket", "bucket"): "{name}",
    ("aws_s3_bucket", "arn"): "arn:aws:s3:::{name}",
    ("aws_secretsmanager_secret", "arn"): "arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf",
    ("aws_secretsmanager_secret", "name"): "{name}",
    ("aws_sqs_queue", "name"): "{name}",
    ("aws_sqs_queue", "arn"): "arn:aws:sqs:{region}:{account}:{name}",
    ("aws_sqs_queue", "url"): "https://sqs.{region}.amazonaws.com/{account}/{name}",
    ("aws_vpc", "id"): "vpc-0123456789abcdef0",
}
_TYPES = sorted({t for t, _ in PLACEHOLDERS}, key=len, reverse=True)
_REFERENCE = re.compile(r"(?<!\$)\$\{([^{}]*)\}")
_CROSS_STACK = re.compile(r"data\.terraform_remote_state\.[\w-]+\.outputs\.cross-stack-output-(?P<rest>[\w-]+)")
_DIRECT = re.compile(r"(?:data\.)?(?P<type>aws_[a-z0-9_]+)\.[\w-]+\.(?P<attr>[\w.\[\]]+)")


def reference_shape(reference: str) -> tuple[str, str] | None:
    """(resource type, attribute) of a Terraform reference (without ${}), or None if it names no resource.
    Cross-stack outputs are named `cross-stack-output-<type><construct path>_<8 hex><attribute>`."""
    cross = _CROSS_STACK.fullmatch(reference)
    if cross:
        rest = cross["rest"]
        kind = next((t for t in _TYPES if rest.startswith(t)), None)
        attribute = re.search(r"_[0-9A-F]{8}(?P<attr>[a-z0-9_]+)$", rest)
        return (kind, attribute["attr"]) if kind and attribute else None
    direct = _DIRECT.fullmatch(reference)
    return (direct["type"], re.sub(r"\W", "", direct["attr"])) if direct else None


def placeholder(reference: str, *, region: str, release: str) -> str:
    shape = reference_shape(reference)
    if shape not in PLACEHOLDERS:
        raise RenderError(f"release {release}: no placeholder for ${{{reference}}} (shape {shape}); fix: add a "
                          "(resource type, attribute) row to PLACEHOLDERS in tools/render_releases.py")
    digest = hashlib.sha256(reference.encode()).hexdigest()
    uuid = f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"
    return PLACEHOLDERS[shape].format(name=f"placeholder-{digest[:10]}", region=region,
                                      account=PLACEHOLDER_ACCOUNT, uuid=uuid)


def substitute(text: str, *, region: str, release: str) -> str:
    """The text as Terraform would interpolate it, with placeholders for references; `$${` is a literal `${`."""
    if "%{" in text.replace("%%{", ""):
        raise RenderError(f"release {release}: a Terraform template directive (%{{...}}) in its values cannot be "
                          "rendered; fix: build the value in Python")
    out = _REFERENCE.sub(lambda m: placeholder(m[1], region=region, release=release), text)
    left = re.search(r"(?<!\$)\$\{.{0,80}", out)
    if left:
        raise RenderError(f"release {release}: a reference it cannot parse remains in its values: {left[0]}; "
                          "fix: build the value without nested expressions, or give it a PLACEHOLDERS row")
    return out.replace("$${", "${")


# ---- releases -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Release:
    address: str                 # helm_release.<id>
    name: str
    namespace: str
    chart: str
    version: str | None
    values: dict[str, Any]       # coalesced, placeholders in
    chart_dir: Path | None       # None: nothing to render (source.reason says why)
    source: ChartSource | None   # None for the project's own charts


def coalesce(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of a later values document over an earlier one: maps merge, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _set_path(values: dict[str, Any], name: str, value: Any) -> None:
    """Helm's `--set a.b[0].c=v` path syntax (`\\.` escapes a dot in a key)."""
    steps: list[str | int] = []
    for part in name.replace("\\.", "\0").split("."):
        key = part.split("[", 1)[0].replace("\0", ".")
        steps += [key, *(int(i) for i in re.findall(r"\[(\d+)\]", part))]
    node: Any = values
    for step, following in zip(steps, [*steps[1:], None]):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(step, int):
            node.extend([None] * (step + 1 - len(node)))
        if following is None:
            node[step] = value
        else:
            if not isinstance(node[step] if isinstance(step, int) else node.get(step), (dict, list)):
                node[step] = empty
            node = node[step]


def _set_value(entry: dict[str, Any]) -> Any:
    value = entry.get("value")
    if entry.get("type") == "string" or not isinstance(value, str):
        return value
    return {"true": True, "false": False, "null": None}.get(value, int(value) if re.fullmatch(r"-?\d+", value)
                                                            else value)


def releases(stack: dict[str, Any], stack_dir: Path) -> list[Release]:
    """Every helm_release of a synthesized stack, with its values as Helm would receive them."""
    region = next((p.get("region") for p in stack.get("provider", {}).get("aws", []) if p.get("region")), "eu-west-1")
    found = []
    for rid, body in sorted(stack.get("resource", {}).get("helm_release", {}).items()):
        name = body["name"]
        values: dict[str, Any] = {}
        for document in body.get("values") or []:
            parsed = yaml.safe_load(substitute(document, region=region, release=name)) or {}
            values = coalesce(values, parsed)
        for kind in ("set", "set_sensitive"):
            for entry in body.get(kind) or []:
                _set_path(values, entry["name"], _set_value(
                    {**entry, "value": substitute(str(entry["value"]), region=region, release=name)}))
        for entry in body.get("set_list") or []:
            _set_path(values, entry["name"], [substitute(str(v), region=region, release=name)
                                              for v in entry["value"]])
        chart, version = body["chart"], body.get("version")
        if chart.startswith("assets/"):
            chart_dir, source = stack_dir / chart, None
            if not (chart_dir / "Chart.yaml").is_file():
                raise RenderError(f"release {name}: local chart {chart} is not in {stack_dir}; fix: render a "
                                  "synthesized output directory (its assets/ hold the charts)")
        else:
            source = CHART_SOURCES.get((chart, version or ""))
            if source is None:
                raise RenderError(f"release {name}: no vendored source for chart {chart} {version}; fix: vendor "
                                  f"it under {SOURCES.relative_to(ROOT)} and add it to CHART_SOURCES")
            chart_dir = SOURCES / source.directory if source.directory else None
        found.append(Release(address=f"helm_release.{rid}", name=name, namespace=body.get("namespace", "default"),
                             chart=chart, version=version, values=values, chart_dir=chart_dir, source=source))
    return found


# ---- rendering ------------------------------------------------------------------------------------------------

CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "StorageClass", "PriorityClass", "ClusterRole", "ClusterRoleBinding",
    "CustomResourceDefinition", "APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "IngressClass", "RuntimeClass",
    "PodSecurityPolicy", "CSIDriver", "ClusterIssuer", "ClusterSecretStore", "ClusterExternalSecret",
    "ClusterTriggerAuthentication", "NodePool", "EC2NodeClass", "NodeClaim", "IngressClassParams",
    "ClusterCloudEventSource",
})


@dataclass(frozen=True)
class Manifest:
    release: str
    template: str                # the chart template it came from
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.body["kind"]

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def namespace(self) -> str | None:
        return None if self.kind in CLUSTER_SCOPED else self.body["metadata"].get("namespace") or self._default_ns

    _default_ns: str = field(default="default", repr=False)

    def __str__(self) -> str:
        return f"{self.release}:{self.kind}/{self.namespace + '/' if self.namespace else ''}{self.name}"


def _render_chart(chart_dir: Path, values_json: str, name: str, namespace: str) -> dict[str, str]:
    import helm_python

    with helm_python.Chart.load(str(chart_dir)) as chart:
        return chart.render(json.loads(values_json), name=name, namespace=namespace, is_install=True)


@functools.lru_cache(maxsize=256)
def _render_cached(chart_dir: str, values_json: str, name: str, namespace: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(_render_chart(Path(chart_dir), values_json, name, namespace).items()))


_SEPARATOR = re.compile(r"(?:^|\s*\n)---\s*")


def render(release: Release) -> list[Manifest]:
    """The release's manifests (NOTES and `helm test` hooks left out), as `helm install` would send them."""
    if release.chart_dir is None:
        return []
    values: dict[str, Any] = {}
    for path, value in release.source.proxy_defaults if release.source else ():
        _set_path(values, path, value)
    values = coalesce(values, release.values)
    try:
        files = _render_cached(str(release.chart_dir), json.dumps(values, sort_keys=True), release.name,
                               release.namespace)
    except Exception as error:  # helm_python raises its own error types; keep Helm's message whole
        raise RenderError(f"release {release.name}: Helm failed to render {release.chart_dir.name}: {error}") from error
    manifests = []
    for template, text in files:
        if template.endswith("NOTES.txt"):
            continue
        for part in _SEPARATOR.split(text):     # Helm's own split (releaseutil), which `---# comment` passes
            document = yaml.safe_load(part)
            if not document:
                continue
            annotations = (document.get("metadata") or {}).get("annotations") or {}
            if "test" in str(annotations.get("helm.sh/hook", "")).split(","):
                continue
            # Helm applies a v1 List as its items.
            items = document.get("items") or [] if document.get("kind") == "List" else [document]
            manifests += [Manifest(release.name, template, item, _default_ns=release.namespace) for item in items]
    return manifests


def render_stack(stack_dir: Path) -> tuple[list[Release], list[Manifest]]:
    stack = json.loads((stack_dir / "cdk.tf.json").read_text())
    found = releases(stack, stack_dir)
    return found, [m for r in found for m in render(r)]


# ---- schema validation ----------------------------------------------------------------------------------------

def _strict(schema: Any) -> Any:
    """A CRD openAPIV3Schema as the API server applies it, for a JSON-schema validator: unknown fields refused
    (they would be pruned) unless x-kubernetes-preserve-unknown-fields, `nullable` admitted."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        out["type"] = [schema["type"], "null"]
    return out


@functools.lru_cache(maxsize=1)
def _crd_schemas() -> dict[str, Any]:
    return json.loads(CRD_SCHEMAS.read_text())


@functools.lru_cache(maxsize=512)
def _validator(api_version: str, kind: str):
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    crd = _crd_schemas().get(f"{api_version}/{kind}")
    if crd is not None:           # {"schema": openAPIV3Schema, "source": where the CRD came from}
        return jsonschema.Draft7Validator(_strict(crd["schema"]))
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    directory = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
    try:
        schema = utils.schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", KUBERNETES_VERSION)
    except FileNotFoundError:
        return None
    registry = Resource.from_contents(_definitions()) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.lru_cache(maxsize=1)
def _definitions() -> Any:
    from kubernetes_validate import utils

    return utils.schema_contents(f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict/_definitions.json",
                                 KUBERNETES_VERSION)


@functools.lru_cache(maxsize=4096)
def _schema_errors(api_version: str, kind: str, body_json: str) -> tuple[str, ...]:
    validator = _validator(api_version, kind)
    if validator is None:
        return (f"no Kubernetes {KUBERNETES_VERSION} schema and no CRD schema for {api_version} {kind}",)
    errors = sorted(validator.iter_errors(json.loads(body_json)), key=lambda e: list(e.absolute_path))
    return tuple(f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:300]}" for e in errors)


def schema_problems(manifests: Iterable[Manifest]) -> list[str]:
    """Each manifest against Kubernetes 1.34 (strict) or its CRD schema (strict); one line per error."""
    problems = []
    for m in manifests:
        for error in _schema_errors(m.body.get("apiVersion", ""), m.body.get("kind", ""),
                                    json.dumps(m.body, sort_keys=True)):
            problems.append(f"{m} ({m.template}): {error}")
    return problems


# ---- pods -----------------------------------------------------------------------------------------------------

_POD_TEMPLATE_PATHS = {
    "Pod": ("spec",), "Deployment": ("spec", "template", "spec"), "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"), "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


@dataclass(frozen=True)
class Pod:
    owner: str                   # the manifest (and ConfigMap key) it comes from
    namespace: str
    spec: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)    # the pod's (template's) own metadata


def pods(manifests: Iterable[Manifest]) -> Iterator[Pod]:
    """Pod specs of workloads, and of Pod documents kept in ConfigMaps (pod template files become task pods)."""
    for m in manifests:
        path = _POD_TEMPLATE_PATHS.get(m.kind)
        if path:
            spec: Any = m.body
            for key in path:
                spec = (spec or {}).get(key)
            template: Any = m.body
            for key in path[:-1]:
                template = (template or {}).get(key)
            if spec:
                yield Pod(str(m), m.namespace or "default", spec, (template or {}).get("metadata") or {})
        elif m.kind == "ConfigMap":
            for key, text in (m.body.get("data") or {}).items():
                if not key.endswith((".yaml", ".yml")):
                    continue
                try:
                    doc = yaml.safe_load(text)
                except yaml.YAMLError:
                    continue
                if isinstance(doc, dict) and doc.get("kind") == "Pod" and doc.get("spec"):
                    yield Pod(f"{m}[{key}]", (doc.get("metadata") or {}).get("namespace") or m.namespace or "default",
                              doc["spec"], doc.get("metadata") or {})


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


# ---- Pod Security Admission -------------------------------------------------------------------------------------

PSA_LABEL = "pod-security.kubernetes.io/"


def pod_security_labels(manifests: Iterable[Manifest]) -> dict[str, dict[str, str]]:
    """Namespace -> its rendered `pod-security.kubernetes.io/<mode>[-version]` labels, without the prefix
    (e.g. {"enforce": "restricted", "enforce-version": "v1.34", "warn": "restricted", ...})."""
    return {m.name: {k[len(PSA_LABEL):]: v for k, v in (m.body["metadata"].get("labels") or {}).items()
                     if k.startswith(PSA_LABEL)}
            for m in manifests if m.kind == "Namespace"}


def pod_security_problems(manifests: Iterable[Manifest], *, mode: str = "enforce") -> list[str]:
    """Every rendered pod (pod templates and ConfigMap pod files) that its namespace's Pod Security `mode` label
    (enforce, warn or audit) would refuse or report, one line per failed control (tools/pod_security.py)."""
    from tools import pod_security

    manifests = list(manifests)
    labels = pod_security_labels(manifests)
    problems = []
    for pod in pods(manifests):
        level = labels.get(pod.namespace, {}).get(mode)
        if level:
            problems += [f"{pod.owner}: {mode} {level}: {v}"
                         for v in pod_security.violations(pod.spec, pod.metadata, level)]
    return problems


# ---- secrets --------------------------------------------------------------------------------------------------

# Secrets a controller creates at run time (not a rendered object): (namespace, name) -> who creates it.
RUNTIME_SECRETS: dict[tuple[str, str], str] = {
    ("keda", "kedaorg-certs"): "the KEDA operator generates its webhook and metrics-server certificates "
                               "(certificates.autoGenerated, the chart's default)",
    ("monitoring", "kube-prometheus-stack-admission"): "kube-prometheus-stack's admission-create hook Job "
                                                       "(kube-webhook-certgen), rendered with the release",
}
# Pod Identity associations the Airflow 1.18 proxy cannot show used: (namespace, service account) -> why.
PROXY_GAPS: dict[tuple[str, str], str] = {
    ("airflow", "airflow-worker-kubernetes"): "KubernetesExecutor task pods get this account from chart 1.21's "
                                              "workers.kubernetes.serviceAccount, which the 1.18 templates lack",
}
_CERTIFICATE_KEYS = frozenset({"tls.crt", "tls.key", "ca.crt"})


def provided_secrets(manifests: Iterable[Manifest]) -> dict[tuple[str, str], frozenset[str] | None]:
    """(namespace, name) -> keys the Secret will hold (None: any key, e.g. ExternalSecret dataFrom)."""
    provided: dict[tuple[str, str], frozenset[str] | None] = {}

    def add(key: tuple[str, str], keys: frozenset[str] | None) -> None:
        old = provided.get(key, frozenset())
        provided[key] = None if keys is None or old is None else old | keys

    for m in manifests:
        spec = m.body.get("spec") or {}
        if m.kind == "Secret" and m.body.get("apiVersion") == "v1":
            add((m.namespace, m.name), frozenset({*(m.body.get("data") or {}), *(m.body.get("stringData") or {})}))
        elif m.kind == "ExternalSecret":
            target = spec.get("target") or {}
            template = target.get("template") or {}
            from_data = frozenset(d["secretKey"] for d in spec.get("data") or [])
            templated = frozenset(template.get("data") or {})
            if spec.get("dataFrom"):
                keys = None
            elif template.get("data") is not None:
                keys = templated | from_data if template.get("mergePolicy") == "Merge" else templated
            else:
                keys = from_data
            add((m.namespace, target.get("name") or m.name), keys)
        elif m.kind == "Certificate" and m.body.get("apiVersion", "").startswith("cert-manager.io/"):
            add((m.namespace, spec["secretName"]), _CERTIFICATE_KEYS)
    return provided


def secret_references(manifests: Iterable[Manifest]) -> Iterator[tuple[str, str, str, str | None]]:
    """(owner, namespace, secret, key or None) for every non-optional Secret a pod takes."""
    manifests = list(manifests)
    for pod in pods(manifests):
        ns = pod.namespace
        for ref in pod.spec.get("imagePullSecrets") or []:
            yield pod.owner, ns, ref["name"], None
        for volume in pod.spec.get("volumes") or []:
            secret = volume.get("secret")
            if secret and not secret.get("optional"):
                items = secret.get("items") or [{}]
                for item in items:
                    yield pod.owner, ns, secret["secretName"], item.get("key")
            for source in (volume.get("projected") or {}).get("sources") or []:
                secret = source.get("secret")
                if secret and not secret.get("optional"):
                    for item in secret.get("items") or [{}]:
                        yield pod.owner, ns, secret["name"], item.get("key")
        for container in _containers(pod.spec):
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    yield pod.owner, ns, ref["name"], ref["key"]
            for env_from in container.get("envFrom") or []:
                ref = env_from.get("secretRef")
                if ref and not ref.get("optional"):
                    yield pod.owner, ns, ref["name"], None
    # The Prometheus Operator mounts these whole into the pods it creates.
    for m in manifests:
        if m.kind in ("Prometheus", "Alertmanager") and m.body.get("apiVersion", "").startswith("monitoring.coreos"):
            for name in (m.body.get("spec") or {}).get("secrets") or []:
                yield str(m), m.namespace or "default", name, None


def secret_problems(manifests: Iterable[Manifest],
                    runtime: dict[tuple[str, str], str] = RUNTIME_SECRETS) -> list[str]:
    manifests = list(manifests)
    provided = provided_secrets(manifests)
    problems = set()
    for owner, ns, name, key in secret_references(manifests):
        if (ns, name) in runtime:
            continue
        if (ns, name) not in provided:
            problems.add(f"{owner}: Secret {ns}/{name} is created by no rendered Secret, ExternalSecret or "
                         "Certificate")
        elif key is not None and provided[(ns, name)] is not None and key not in provided[(ns, name)]:
            problems.add(f"{owner}: Secret {ns}/{name} has no key {key!r} (it gets {sorted(provided[(ns, name)])})")
    return sorted(problems)


# ---- Pod Identity ---------------------------------------------------------------------------------------------

def pod_identity_associations(infra_stack: dict[str, Any]) -> list[tuple[str, str]]:
    """(namespace, service account) of every aws_eks_pod_identity_association in a synthesized infra stack."""
    found = (infra_stack.get("resource", {}).get("aws_eks_pod_identity_association") or {}).values()
    return sorted((a["namespace"], a["service_account"]) for a in found)


def pod_identity_problems(associations: Iterable[tuple[str, str]], manifests: Iterable[Manifest],
                          *, exempt: dict[tuple[str, str], str] = PROXY_GAPS) -> list[str]:
    manifests = list(manifests)
    accounts = {(m.namespace, m.name) for m in manifests if m.kind == "ServiceAccount"}
    used = {(p.namespace, p.spec.get("serviceAccountName") or "default") for p in pods(manifests)}
    problems = []
    for ns, sa in associations:
        if (ns, sa) in exempt:
            continue
        if (ns, sa) not in accounts:
            problems.append(f"Pod Identity association {ns}/{sa}: no rendered ServiceAccount of that name")
        if (ns, sa) not in used:
            problems.append(f"Pod Identity association {ns}/{sa}: no rendered pod runs as it (its AWS role "
                            "would reach nothing, and a pod meant to have it has none)")
    return problems


# ---- Services behind TargetGroupBindings and ServiceMonitors -----------------------------------------------------

@dataclass(frozen=True)
class ServiceView:
    namespace: str
    name: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[tuple[str | None, int, Any], ...]     # (name, port, targetPort)


# Services the cluster creates itself, which ServiceMonitors of kube-prometheus-stack select.
CLUSTER_SERVICES: dict[ServiceView, str] = {
    ServiceView("default", "kubernetes", (("component", "apiserver"), ("provider", "kubernetes")),
                (("https", 443, 443),)): "the API server's own Service",
    ServiceView("kube-system", "kube-prometheus-stack-kubelet",
                (("app.kubernetes.io/name", "kubelet"), ("k8s-app", "kubelet")),
                (("https-metrics", 10250, 10250), ("http-metrics", 10255, 10255), ("cadvisor", 4194, 4194))):
        "the Prometheus Operator's kubelet Service (its --kubelet-service flag, kubelet.enabled)",
}


def services(manifests: Iterable[Manifest], extra: Iterable[ServiceView] = ()) -> list[ServiceView]:
    found = list(extra)
    for m in manifests:
        if m.kind == "Service" and m.body.get("apiVersion") == "v1":
            labels = tuple(sorted(((m.body["metadata"].get("labels") or {}).items())))
            ports = tuple((p.get("name"), p["port"], p.get("targetPort", p["port"]))
                          for p in (m.body.get("spec") or {}).get("ports") or [])
            found.append(ServiceView(m.namespace or "default", m.name, labels, ports))
    return found


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector:
        return False          # an empty selector in a ServiceMonitor selects everything: never what we mean
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def service_port_problems(manifests: Iterable[Manifest],
                          cluster_services: Iterable[ServiceView] = tuple(CLUSTER_SERVICES)) -> list[str]:
    manifests = list(manifests)
    views = services(manifests, cluster_services)
    all_namespaces = {v.namespace for v in views}
    problems = []
    for m in manifests:
        spec = m.body.get("spec") or {}
        if m.kind == "TargetGroupBinding":
            ref = spec.get("serviceRef") or {}
            (service,) = [v for v in views if (v.namespace, v.name) == (m.namespace, ref.get("name"))] or [None]
            if service is None:
                problems.append(f"{m}: serviceRef {ref.get('name')} is no rendered Service in {m.namespace}")
            elif not any(ref.get("port") in (name, port) for name, port, _ in service.ports):
                problems.append(f"{m}: Service {m.namespace}/{service.name} has no port {ref.get('port')!r} "
                                f"(it has {[(n, p) for n, p, _ in service.ports]})")
        elif m.kind == "ServiceMonitor":
            selector_ns = spec.get("namespaceSelector") or {}
            namespaces = all_namespaces if selector_ns.get("any") else set(selector_ns.get("matchNames") or
                                                                              [m.namespace])
            selected = [v for v in views if v.namespace in namespaces and _selects(spec.get("selector") or {},
                                                                                  dict(v.labels))]
            if not selected:
                problems.append(f"{m}: its selector {spec.get('selector')} matches no rendered Service in "
                                f"{sorted(namespaces)}")
                continue
            for endpoint in spec.get("endpoints") or []:
                port, target = endpoint.get("port"), endpoint.get("targetPort")
                if not any((port is not None and any(n == port for n, _, _ in v.ports)) or
                           (port is None and target is not None and any(target in (t, n) for n, _, t in v.ports))
                           for v in selected):
                    problems.append(f"{m}: endpoint port {port or target!r} is on none of the Services it selects "
                                    f"({', '.join(f'{v.namespace}/{v.name}' for v in selected)})")
    return problems


# ---- Checkov's kubernetes checks (issue #17 item 2) ------------------------------------------------------------

CHECKOV_SKIPS = ROOT / "tests" / "data" / "checkov-k8s-skips.yaml"


def _run_checkov(documents: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Checkov's kubernetes framework over one YAML file per key (its stem); failures carry `file` = the key."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for key, bodies in documents.items():
            (Path(tmp) / f"{key}.yaml").write_text(yaml.safe_dump_all(bodies))
        result = subprocess.run([str(Path(sys.executable).with_name("checkov")), "-d", tmp, "--framework",
                                 "kubernetes", "-o", "json", "--quiet", "--compact"], capture_output=True, text=True)
    reports = json.loads(result.stdout or "[]")
    reports = reports if isinstance(reports, list) else [reports]
    if documents and not any("results" in r or "passed" in r.get("summary", {}) for r in reports):
        raise RuntimeError(f"checkov produced no report: {result.stderr[-2000:]}")
    return [{**f, "file": Path(f["file_path"]).stem} for r in reports
            for f in r.get("results", {}).get("failed_checks", [])]


def _checkov_documents(manifests: Iterable[Manifest], wanted: set[str], prefix: str = "") -> dict[str, list[dict]]:
    by_release: dict[str, list[dict[str, Any]]] = {}
    for m in manifests:
        if m.release in wanted:
            body = copy.deepcopy(m.body)
            if m.namespace:
                body["metadata"]["namespace"] = m.namespace
            by_release.setdefault(f"{prefix}{m.release}", []).append(body)
    return by_release


def checkov_failures(manifests: Iterable[Manifest], releases_with_values: Iterable[str]) -> list[dict[str, Any]]:
    """Checkov's kubernetes framework over the manifests of the named releases, each namespaced object given its
    release namespace (as Helm installs it; else Checkov reports the default namespace). Each failure dict has
    Checkov's `check_id`, `resource` and `release`."""
    failures = _run_checkov(_checkov_documents(manifests, set(releases_with_values)))
    return [{**f, "release": f["file"]} for f in failures]


def checkov_failures_by_environment(rendered: dict[str, tuple[list[Release], list[Manifest]]]
                                    ) -> dict[str, list[dict[str, Any]]]:
    """checkov_failures for several environments in one Checkov run (it starts slowly): env -> failures."""
    documents: dict[str, list[dict[str, Any]]] = {}
    for env, (found, manifests) in rendered.items():
        documents.update(_checkov_documents(manifests, {r.name for r in found if r.values}, prefix=f"{env}--"))
    out: dict[str, list[dict[str, Any]]] = {env: [] for env in rendered}
    for f in _run_checkov(documents):
        env, release = f["file"].split("--", 1)
        out[env].append({**f, "release": release})
    return out


@dataclass(frozen=True)
class CheckovSkip:
    check: str                   # a Checkov check id
    resources: tuple[str, ...]   # fnmatch patterns over "<release>:<Kind>.<namespace>.<name>"
    reason: str


def checkov_skips(path: Path = CHECKOV_SKIPS) -> list[CheckovSkip]:
    return [CheckovSkip(s["check"], tuple(s["resources"]), " ".join(s["reason"].split()))
            for s in yaml.safe_load(path.read_text())]


def checkov_key(failure: dict[str, Any]) -> str:
    return f"{failure['release']}:{failure['resource']}"


def _skipped_by(failure: dict[str, Any], skip: CheckovSkip, pattern: str) -> bool:
    import fnmatch

    return failure["check_id"] == skip.check and fnmatch.fnmatchcase(checkov_key(failure), pattern)


def unskipped_checkov_failures(failures: Iterable[dict[str, Any]], skips: Iterable[CheckovSkip]) -> list[str]:
    """`<check> <release>:<resource>` of every failure no skip covers."""
    skips = list(skips)
    return sorted(f"{f['check_id']} {checkov_key(f)}" for f in failures
                  if not any(_skipped_by(f, s, p) for s in skips for p in s.resources))


def stale_checkov_skips(failures: Iterable[dict[str, Any]], skips: Iterable[CheckovSkip]) -> list[str]:
    """`<check> <pattern>` of every skip pattern that no failure matches any more (remove it)."""
    failures = list(failures)
    return [f"{s.check} {p}" for s in skips for p in s.resources if not any(_skipped_by(f, s, p) for f in failures)]


# ---- command line ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="cdktf.out", type=Path, help="a synthesized cdktf.out")
    parser.add_argument("--checkov", action="store_true",
                        help="also count Checkov kubernetes failures per release whose values the project sets")
    args = parser.parse_args(argv)
    failed = False
    for stack_dir in sorted(args.out.glob("stacks/*-platform")):
        found, manifests = render_stack(stack_dir)
        infra = json.loads((stack_dir.parent / stack_dir.name.replace("-platform", "-infra") / "cdk.tf.json")
                           .read_text())
        print(f"{stack_dir.name}: {len(found)} releases, {len(manifests)} manifests")
        for release in found:
            note = (release.source.reason if release.source and release.source.reason else "")
            print(f"  {release.name:32} {sum(m.release == release.name for m in manifests):4}  {note}")
        problems = [*schema_problems(manifests), *secret_problems(manifests), *pod_security_problems(manifests),
                    *pod_identity_problems(pod_identity_associations(infra), manifests),
                    *service_port_problems(manifests)]
        for problem in problems:
            print(f"  FAIL {problem}")
        if args.checkov:
            failures = checkov_failures(manifests, [r.name for r in found if r.values])
            counts = {r.name: sum(f["release"] == r.name for f in failures) for r in found if r.values}
            left = unskipped_checkov_failures(failures, checkov_skips())
            print(f"  checkov kubernetes: {len(failures)} failed checks: {counts}; "
                  f"{len(left)} not covered by {CHECKOV_SKIPS.relative_to(ROOT)}")
            for line in left:
                print(f"  FAIL checkov {line}")
            failed |= bool(left)
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
