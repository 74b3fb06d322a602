"""The in-cluster contract the platform's Helm releases share: namespaces, issuers, secret and CA names.

One place for names that more than one release must agree on (the Airflow release mounts what the
bootstrap chart's ExternalSecrets and Certificates create; Prometheus selects what the glue chart labels).
Plain data and pure functions only.
"""
from __future__ import annotations

from typing import Any

# Namespaces. The LB controller and Karpenter run in kube-system (modules/identity.py WORKLOADS).
AIRFLOW_NAMESPACE = "airflow"
VAULT_NAMESPACE = "vault"
MONITORING_NAMESPACE = "monitoring"
CERT_MANAGER_NAMESPACE = "cert-manager"
EXTERNAL_SECRETS_NAMESPACE = "external-secrets"
KEDA_NAMESPACE = "keda"
APP_NAMESPACES = (AIRFLOW_NAMESPACE, VAULT_NAMESPACE, MONITORING_NAMESPACE)

# Helm release names (service names derive from them: "<release>-api-server", "<release>-grafana", ...).
AIRFLOW_RELEASE = "airflow"
VAULT_RELEASE = "vault"
MONITORING_RELEASE = "kube-prometheus-stack"

# cert-manager: a self-signed issuer signs one platform root CA; the CA ClusterIssuer signs every in-cluster
# TLS certificate. Every Certificate's secret carries `ca.crt` (the root), which is how clients verify.
SELF_SIGNED_ISSUER = "selfsigned-bootstrap"
ROOT_CA_CERTIFICATE = "platform-root-ca"        # Certificate + Secret in CERT_MANAGER_NAMESPACE
CA_ISSUER = "platform-ca"                       # ClusterIssuer that every in-cluster certificate uses

# External Secrets Operator: one ClusterSecretStore reading AWS Secrets Manager with the operator's own
# Pod Identity role (no static keys).
SECRETS_MANAGER_STORE = "aws-secrets-manager"

# Labels Prometheus (kube-prometheus-stack) selects ServiceMonitors and PrometheusRules by.
PROMETHEUS_SELECTOR_LABELS = {"release": MONITORING_RELEASE}


def certificate(*, name: str, namespace: str, dns_names: list[str], ip_addresses: list[str] | None = None,
                usages: list[str] | None = None, duration: str = "2160h", renew_before: str = "360h") -> dict[str, Any]:
    """A cert-manager Certificate (as data for the bootstrap chart) issued by the platform CA; its Secret
    (same name) holds tls.crt, tls.key and ca.crt."""
    spec: dict[str, Any] = {
        "secretName": name, "issuerRef": {"name": CA_ISSUER, "kind": "ClusterIssuer", "group": "cert-manager.io"},
        "commonName": dns_names[0], "dnsNames": dns_names, "duration": duration, "renewBefore": renew_before,
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": usages or ["server auth", "digital signature", "key encipherment"]}
    if ip_addresses:
        spec["ipAddresses"] = ip_addresses
    return {"name": name, "namespace": namespace, "spec": spec}


def external_secret(*, name: str, namespace: str, data: list[dict[str, Any]],
                    template: dict[str, str] | None = None, refresh_interval: str = "1h") -> dict[str, Any]:
    """An ExternalSecret (as data for the bootstrap chart) from the Secrets Manager store into Secret `name`.
    `data`: [{"secretKey": k, "remoteRef": {"key": <secret name or ARN>, "property": <json key>}}];
    `template`: Secret keys rendered from them with ESO's template engine v2 (e.g. a connection URL)."""
    spec: dict[str, Any] = {
        "refreshInterval": refresh_interval,
        "secretStoreRef": {"name": SECRETS_MANAGER_STORE, "kind": "ClusterSecretStore"},
        "target": {"name": name, "creationPolicy": "Owner", "deletionPolicy": "Retain"},
        "data": data}
    if template:
        spec["target"]["template"] = {"engineVersion": "v2", "type": "Opaque", "data": template}
    return {"name": name, "namespace": namespace, "spec": spec}
