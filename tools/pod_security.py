"""The Kubernetes Pod Security Standards, evaluated over a pod spec the way Pod Security Admission enforces them.

    violations(spec, metadata, level="restricted") -> ["<check>: <what>", ...]   # [] = admitted at that level

Each check is one control of https://kubernetes.io/docs/concepts/security/pod-security-standards/ (policy
version v1.34): `baseline` is every baseline control, `restricted` is baseline plus the restricted controls;
`privileged` admits anything. Containers are containers, initContainers and ephemeralContainers, as there.
A field that is absent is "undefined/nil", which most controls allow; where a control allows a container field
to be undefined only when the pod-level field is set (runAsNonRoot, seccompProfile), it says so.

Pure functions over parsed manifests: tools/render_releases.py applies them to every rendered pod
(`pod_security_problems`), tests/test_pod_security.py checks each control on good and bad specs.
"""
from __future__ import annotations

from typing import Any, Iterator

LEVELS = ("privileged", "baseline", "restricted")     # least to most restrictive

# Baseline "Capabilities": what containers may add beyond the runtime's default set.
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
# Baseline "Sysctls": the safe set.
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes"})
# Baseline "SELinux": allowed types (container_engine_t since v1.31).
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
# Restricted "Volume Types": the only volume sources allowed.
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                "persistentVolumeClaim", "projected", "secret"})


def containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            yield f"{key}[{container.get('name')}]", container


def _sc(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("securityContext") or {}


def baseline(spec: dict[str, Any], metadata: dict[str, Any] | None = None) -> list[str]:
    """Every baseline control that the pod spec (and its metadata's annotations) fails, one line each."""
    out: list[str] = []
    pod = _sc(spec)
    all_containers = list(containers(spec))
    contexts = [("spec.securityContext", pod)] + [(f"{where}.securityContext", _sc(c)) for where, c in all_containers]
    # HostProcess
    for where, sc in contexts:
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"HostProcess: {where}.windowsOptions.hostProcess is true")
    # Host Namespaces
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"Host Namespaces: spec.{key} is true")
    # Privileged Containers
    for where, c in all_containers:
        if _sc(c).get("privileged"):
            out.append(f"Privileged Containers: {where} is privileged")
    # Capabilities
    for where, c in all_containers:
        added = set((_sc(c).get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES
        if added:
            out.append(f"Capabilities: {where} adds {sorted(added)}")
    # HostPath Volumes
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            out.append(f"HostPath Volumes: volume {volume.get('name')} is a hostPath")
    # Host Ports
    for where, c in all_containers:
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"Host Ports: {where} uses hostPort {port['hostPort']}")
    # AppArmor
    for where, sc in contexts:
        kind = (sc.get("appArmorProfile") or {}).get("type")
        if kind is not None and kind not in APPARMOR_TYPES:
            out.append(f"AppArmor: {where}.appArmorProfile.type is {kind}")
    for key, value in ((metadata or {}).get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not str(value).startswith(
                "localhost/"):
            out.append(f"AppArmor: annotation {key} is {value}")
    # SELinux
    for where, sc in contexts:
        options = sc.get("seLinuxOptions") or {}
        if options.get("type") is not None and options["type"] not in SELINUX_TYPES:
            out.append(f"SELinux: {where}.seLinuxOptions.type is {options['type']}")
        for key in ("user", "role"):
            if options.get(key):
                out.append(f"SELinux: {where}.seLinuxOptions.{key} is set ({options[key]})")
    # /proc Mount Type
    for where, c in all_containers:
        mount = _sc(c).get("procMount")
        if mount is not None and mount != "Default":
            out.append(f"/proc Mount Type: {where}.procMount is {mount}")
    # Seccomp (baseline: anything but Unconfined)
    for where, sc in contexts:
        kind = (sc.get("seccompProfile") or {}).get("type")
        if kind is not None and kind not in SECCOMP_TYPES:
            out.append(f"Seccomp: {where}.seccompProfile.type is {kind}")
    # Sysctls
    for sysctl in pod.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"Sysctls: spec.securityContext.sysctls has {sysctl.get('name')}")
    return out


def restricted_only(spec: dict[str, Any]) -> list[str]:
    """The restricted controls beyond baseline that the pod spec fails, one line each."""
    out: list[str] = []
    pod = _sc(spec)
    all_containers = list(containers(spec))
    # Volume Types
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"Volume Types: volume {volume.get('name')} is {sorted(kinds - RESTRICTED_VOLUMES)}")
    # Privilege Escalation: must be set to false (undefined fails)
    for where, c in all_containers:
        if _sc(c).get("allowPrivilegeEscalation") is not False:
            out.append(f"Privilege Escalation: {where}.securityContext.allowPrivilegeEscalation is not false")
    # Running as Non-root: container true, or undefined when the pod says true; never false anywhere
    if pod.get("runAsNonRoot") is False:
        out.append("Running as Non-root: spec.securityContext.runAsNonRoot is false")
    for where, c in all_containers:
        value = _sc(c).get("runAsNonRoot")
        if value is False or (value is None and pod.get("runAsNonRoot") is not True):
            out.append(f"Running as Non-root: {where} does not set runAsNonRoot true (nor does the pod)")
    # Running as Non-root user: runAsUser never 0
    for where, sc in [("spec.securityContext", pod)] + [(f"{w}.securityContext", _sc(c)) for w, c in all_containers]:
        if sc.get("runAsUser") == 0:
            out.append(f"Running as Non-root user: {where}.runAsUser is 0")
    # Seccomp: RuntimeDefault or Localhost, on each container or on the pod (undefined on both fails)
    pod_seccomp = (pod.get("seccompProfile") or {}).get("type")
    for where, c in all_containers:
        kind = (_sc(c).get("seccompProfile") or {}).get("type")
        if (kind if kind is not None else pod_seccomp) not in SECCOMP_TYPES:
            out.append(f"Seccomp: {where} has no RuntimeDefault or Localhost seccompProfile (nor does the pod)")
    # Capabilities: drop ALL, add at most NET_BIND_SERVICE
    for where, c in all_containers:
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"Capabilities: {where} does not drop ALL")
        added = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            out.append(f"Capabilities: {where} adds {sorted(added)} (only NET_BIND_SERVICE may be added)")
    return out


def violations(spec: dict[str, Any], metadata: dict[str, Any] | None = None, level: str = "restricted") -> list[str]:
    """What Pod Security Admission at `level` would refuse in this pod, one line per failed control."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if level == "privileged":
        return []
    return baseline(spec, metadata) + (restricted_only(spec) if level == "restricted" else [])


def strictest_level(spec: dict[str, Any], metadata: dict[str, Any] | None = None) -> str:
    """The most restrictive level that admits the pod."""
    return next(level for level in reversed(LEVELS) if not violations(spec, metadata, level))
