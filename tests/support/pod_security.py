"""Kubernetes Pod Security Standards, "restricted" profile (kubernetes.io/docs/concepts/
security/pod-security-standards/): what an admission controller enforcing it refuses in a
pod spec. The checks of the profile (baseline's included) that a pod spec can show."""

from __future__ import annotations

from typing import Any

ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret", "name",
}  # fmt: skip
SECCOMP_OK = {"RuntimeDefault", "Localhost"}


def _get(obj: dict[str, Any], *keys: str) -> Any:
    """Look a key up in camelCase (manifests) or snake_case (the Kubernetes client)."""
    for key in keys:
        if key in obj:
            return obj[key]
    return None


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every reason the restricted profile refuses this pod spec (none: it is admitted)."""
    problems: list[str] = []
    pod_sc = _get(pod, "securityContext", "security_context") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if _get(pod, flag, flag.replace("host", "host_").lower()):
            problems.append(f"pod: {flag}")
    for volume in _get(pod, "volumes") or []:
        kinds = {k for k, v in volume.items() if v is not None} - ALLOWED_VOLUMES
        if kinds:
            problems.append(f"volume {volume.get('name')}: {sorted(kinds)}")
    pod_non_root = _get(pod_sc, "runAsNonRoot", "run_as_non_root")
    pod_seccomp = (_get(pod_sc, "seccompProfile", "seccomp_profile") or {}).get("type")
    if _get(pod_sc, "runAsUser", "run_as_user") == 0:
        problems.append("pod: runAsUser 0")
    containers = (_get(pod, "containers") or []) + (
        _get(pod, "initContainers", "init_containers") or []
    )
    for container in containers:
        name = container.get("name")
        sc = _get(container, "securityContext", "security_context") or {}
        if _get(sc, "privileged"):
            problems.append(f"{name}: privileged")
        if _get(sc, "allowPrivilegeEscalation", "allow_privilege_escalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        non_root = _get(sc, "runAsNonRoot", "run_as_non_root")
        if not (non_root is True or (non_root is None and pod_non_root is True)):
            problems.append(f"{name}: runAsNonRoot is not true")
        if _get(sc, "runAsUser", "run_as_user") == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (_get(sc, "seccompProfile", "seccomp_profile") or {}).get("type")
        if (seccomp or pod_seccomp) not in SECCOMP_OK:
            problems.append(f"{name}: seccompProfile not RuntimeDefault/Localhost")
        caps = _get(sc, "capabilities") or {}
        if "ALL" not in (_get(caps, "drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(_get(caps, "add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {_get(caps, 'add')}")
        for port in _get(container, "ports") or []:
            if _get(port, "hostPort", "host_port"):
                problems.append(f"{name}: hostPort")
    return problems
