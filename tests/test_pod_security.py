"""tools/pod_security.py, the Pod Security Standards (policy v1.34) as Pod Security Admission applies them: a pod
that meets `restricted` passes every level, and each control, broken alone, fails exactly the levels that hold it."""
from __future__ import annotations

import copy

import pytest

from tools import pod_security as pss

RESTRICTED_CONTAINER = {"name": "app", "image": "example:1",
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True}}
RESTRICTED_POD = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 50000, "runAsGroup": 0, "fsGroup": 0,
                        "seccompProfile": {"type": "RuntimeDefault"}},
    "initContainers": [{**copy.deepcopy(RESTRICTED_CONTAINER), "name": "init"}],
    "containers": [copy.deepcopy(RESTRICTED_CONTAINER)],
    "volumes": [{"name": v, kind: {}} for v, kind in (("a", "emptyDir"), ("b", "configMap"), ("c", "secret"),
                                                      ("d", "projected"), ("e", "persistentVolumeClaim"),
                                                      ("f", "downwardAPI"), ("g", "csi"), ("h", "ephemeral"))]}


def changed(change) -> dict:
    spec = copy.deepcopy(RESTRICTED_POD)
    change(spec)
    return spec


def sc(spec: dict, key: str = "containers") -> dict:
    return spec[key][0]["securityContext"]


def test_a_restricted_pod_passes_every_level():
    for level in pss.LEVELS:
        assert pss.violations(RESTRICTED_POD, {}, level) == [], level
    assert pss.strictest_level(RESTRICTED_POD) == "restricted"


def test_container_level_settings_stand_in_for_pod_level_ones():
    def per_container(spec):
        del spec["securityContext"]["runAsNonRoot"], spec["securityContext"]["seccompProfile"]
        for key in ("containers", "initContainers"):
            sc(spec, key).update(runAsNonRoot=True, seccompProfile={"type": "Localhost",
                                                                   "localhostProfile": "p.json"})
    assert pss.violations(changed(per_container)) == []


# (name, change, the control's line starts with, lowest level that refuses it)
BASELINE_BREAKS = [
    ("host network", lambda s: s.update(hostNetwork=True), "Host Namespaces: spec.hostNetwork"),
    ("host PID", lambda s: s.update(hostPID=True), "Host Namespaces: spec.hostPID"),
    ("host IPC", lambda s: s.update(hostIPC=True), "Host Namespaces: spec.hostIPC"),
    ("host process", lambda s: sc(s).update(windowsOptions={"hostProcess": True}), "HostProcess:"),
    ("pod host process", lambda s: s["securityContext"].update(windowsOptions={"hostProcess": True}),
     "HostProcess: spec.securityContext"),
    ("privileged", lambda s: sc(s).update(privileged=True), "Privileged Containers:"),
    ("privileged init container", lambda s: sc(s, "initContainers").update(privileged=True),
     "Privileged Containers: initContainers[init]"),
    ("privileged ephemeral container", lambda s: s.update(ephemeralContainers=[
        {**RESTRICTED_CONTAINER, "name": "debug", "securityContext": {**RESTRICTED_CONTAINER["securityContext"],
                                                                      "privileged": True}}]),
     "Privileged Containers: ephemeralContainers[debug]"),
    ("SYS_ADMIN", lambda s: sc(s)["capabilities"].update(add=["SYS_ADMIN"]), "Capabilities: containers[app] adds"),
    ("hostPath", lambda s: s["volumes"].append({"name": "root", "hostPath": {"path": "/"}}), "HostPath Volumes:"),
    ("hostPort", lambda s: s["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]), "Host Ports:"),
    ("AppArmor unconfined", lambda s: sc(s).update(appArmorProfile={"type": "Unconfined"}), "AppArmor:"),
    ("SELinux type", lambda s: sc(s).update(seLinuxOptions={"type": "spc_t"}), "SELinux:"),
    ("SELinux user", lambda s: s["securityContext"].update(seLinuxOptions={"user": "root"}), "SELinux:"),
    ("unmasked /proc", lambda s: sc(s).update(procMount="Unmasked"), "/proc Mount Type:"),
    ("seccomp unconfined", lambda s: s["securityContext"].update(seccompProfile={"type": "Unconfined"}),
     "Seccomp: spec.securityContext"),
    ("unsafe sysctl", lambda s: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
     "Sysctls:"),
]
RESTRICTED_BREAKS = [
    ("nfs volume", lambda s: s["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
     "Volume Types: volume n"),
    ("privilege escalation allowed", lambda s: sc(s).update(allowPrivilegeEscalation=True), "Privilege Escalation:"),
    ("privilege escalation unset", lambda s: sc(s, "initContainers").pop("allowPrivilegeEscalation"),
     "Privilege Escalation: initContainers[init]"),
    ("runAsNonRoot unset", lambda s: s["securityContext"].pop("runAsNonRoot"), "Running as Non-root: "),
    ("runAsNonRoot false on a container", lambda s: sc(s).update(runAsNonRoot=False),
     "Running as Non-root: containers[app]"),
    ("root user", lambda s: sc(s).update(runAsUser=0), "Running as Non-root user: containers[app]"),
    ("root pod user", lambda s: s["securityContext"].update(runAsUser=0), "Running as Non-root user: spec"),
    ("no seccomp", lambda s: s["securityContext"].pop("seccompProfile"), "Seccomp: "),
    ("capabilities kept", lambda s: sc(s).pop("capabilities"), "Capabilities: containers[app] does not drop ALL"),
    ("baseline capability added", lambda s: sc(s)["capabilities"].update(add=["CHOWN"]),
     "Capabilities: containers[app] adds ['CHOWN']"),
]


@pytest.mark.parametrize("name,change,line", BASELINE_BREAKS, ids=[b[0] for b in BASELINE_BREAKS])
def test_each_baseline_control_refuses_its_break_at_baseline_and_restricted(name, change, line):
    spec = changed(change)
    assert pss.violations(spec, {}, "privileged") == []
    for level in ("baseline", "restricted"):
        found = pss.violations(spec, {}, level)
        assert found and any(v.startswith(line) for v in found), (level, found)
    assert pss.strictest_level(spec) == "privileged"


@pytest.mark.parametrize("name,change,line", RESTRICTED_BREAKS, ids=[b[0] for b in RESTRICTED_BREAKS])
def test_each_restricted_control_refuses_its_break_only_at_restricted(name, change, line):
    spec = changed(change)
    assert pss.violations(spec, {}, "baseline") == []
    found = pss.violations(spec, {}, "restricted")
    assert found and all(v.startswith(line) for v in found), found
    assert pss.strictest_level(spec) == "baseline"


def test_net_bind_service_may_be_added_under_restricted():
    assert pss.violations(changed(lambda s: sc(s)["capabilities"].update(add=["NET_BIND_SERVICE"]))) == []


def test_allowed_values_of_optional_baseline_fields_pass():
    def allowed(spec):
        spec["securityContext"].update(sysctls=[{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                                       seLinuxOptions={"type": "container_t", "level": "s0:c1,c2"},
                                       appArmorProfile={"type": "RuntimeDefault"})
        sc(spec).update(procMount="Default", privileged=False)
        spec.update(hostNetwork=False)
        spec["containers"][0]["ports"] = [{"containerPort": 8080, "hostPort": 0}]
    assert pss.violations(changed(allowed)) == []


def test_apparmor_annotations_are_checked_on_the_pod_metadata():
    key = pss.APPARMOR_ANNOTATION + "app"
    assert pss.violations(RESTRICTED_POD, {"annotations": {key: "runtime/default"}}) == []
    assert pss.violations(RESTRICTED_POD, {"annotations": {key: "localhost/profile"}}) == []
    assert pss.violations(RESTRICTED_POD, {"annotations": {key: "unconfined"}}, "baseline") == [
        f"AppArmor: annotation {key} is unconfined"]


def test_an_unknown_level_is_refused():
    with pytest.raises(ValueError, match="level must be one of"):
        pss.violations(RESTRICTED_POD, {}, "strict")
