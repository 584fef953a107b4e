"""The deployment files, checked offline: the Dockerfile by reading it (no container daemon
here), the compose file against the Compose specification's JSON schema, the Kubernetes
manifests against the API schemas of pinned Kubernetes versions, the Helm values against
the keys of Dagster's chart. Every role runs the command the topology test runs (ROLES)."""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.support.deploy_support import REPO, ROLES, snake_case_keys

DEPLOY = REPO / "deploy"
K8S_VERSIONS = ("1.30.0", "1.37.0")  # oldest and newest Kubernetes we claim to fit
SECRET_VARS = {"DATABASE_URL", "ALCHEMY_WEBHOOK_SECRET", "ALCHEMY_API_KEY", "RPC_URL"}
# Any attempt to reach the network fails fast: validation must work offline.
OFFLINE = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}


def without_listen_options(argv: list[str]) -> list[str]:
    """argv minus the host/port options a deployment adds (-h/--host, -p/--port)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-h", "--host", "-p", "--port"):
            skip = True
        else:
            out.append(arg)
    return out


# --- entry points ---------------------------------------------------------------------------


def test_every_role_command_exists_in_the_environment() -> None:
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    for role, argv in ROLES.items():
        if argv[0] == "python":
            assert argv[1] == "-m" and importlib.util.find_spec(argv[2]), role
        else:
            assert argv[0] in scripts, f"{role}: no console script {argv[0]!r}"
            assert (Path(sys.executable).parent / argv[0]).exists(), role


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[last_from:]


def test_dockerfile_is_multi_stage_from_the_lock_with_no_dev_tools() -> None:
    instructions = dockerfile()
    assert sum(op == "FROM" for op, _ in instructions) >= 2
    runs = [args for op, args in instructions if op == "RUN"]
    syncs = [r for r in runs if "uv sync" in r]
    assert syncs and all("--frozen" in r and "--no-dev" in r for r in syncs)
    assert not any("--extra" in r or "--all-extras" in r for r in syncs)  # no [dev]
    assert any(op == "COPY" and "uv.lock" in args for op, args in instructions)
    final = final_stage()
    # the runtime stage installs nothing and copies no dev code
    assert not any(op == "RUN" and re.search(r"pip |uv |apt-get|apk ", a) for op, a in final)
    copied = " ".join(args for op, args in final if op == "COPY")
    for dev_only in ("devtools", "tests", "bench", "node_modules", "contracts"):
        assert dev_only not in copied
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*")] == "*" and "!.env" not in ignored


def test_dockerfile_runs_as_non_root_with_a_sidecar_healthcheck() -> None:
    final = dict(final_stage())
    user = final["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert "/healthz" in final["HEALTHCHECK"]
    assert yaml.safe_load(final["CMD"]) == ROLES["webhook"]
    assert "WEBHOOK_HOST=0.0.0.0" in final["ENV"]  # a container must listen beyond loopback
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in final["ENV"]


def test_dockerfile_documents_each_role_with_its_command() -> None:
    header = (REPO / "Dockerfile").read_text().split("\n\n", 1)[0]
    documented = {}
    for line in header.splitlines():
        match = re.match(r"#\s{3}(\S+(?: \S+)?)\s{2,}(\S.*?)(?:\s{2,}\(.*)?$", line)
        if match:
            documented[match[1]] = without_listen_options(shlex.split(match[2]))
    assert documented["code server"] == ROLES["code-server"]
    assert documented["webserver"] == ROLES["webserver"]
    assert documented["daemon"] == ROLES["daemon"]
    assert documented["sidecar"] == ROLES["webhook"]
    assert documented["migrations"] == ROLES["migrate"]
    assert documented["CLI"][0] == ROLES["cli"][0]


# --- compose --------------------------------------------------------------------------------


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run(
        [str(cli), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        env=OFFLINE,
        timeout=60,
    )


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    result = check_jsonschema(DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    # the validator can fail: a condition the specification does not know
    broken = (DEPLOY / "compose.yaml").read_text().replace("service_healthy", "service_happy")
    (tmp_path / "compose.yaml").write_text(broken)
    assert check_jsonschema(tmp_path / "compose.yaml").returncode != 0


def test_compose_runs_every_role_with_its_command_in_order() -> None:
    services = compose()["services"]
    roles = {"migrate": "migrate", "code-server": "code-server", "webserver": "webserver"}
    roles |= {"daemon": "daemon", "webhook": "webhook"}
    for service, role in roles.items():
        assert without_listen_options(services[service]["command"]) == ROLES[role], service

    def needs(service: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in services[service]["depends_on"].items()}

    assert needs("migrate") == {"postgres": "service_healthy"}
    assert needs("code-server") == {"migrate": "service_completed_successfully"}
    assert needs("webhook") == {"migrate": "service_completed_successfully"}
    assert needs("webserver") == needs("daemon") == {"code-server": "service_healthy"}
    for name, service in services.items():  # every long-running service has a health check
        if name != "migrate":
            assert service["healthcheck"]["test"], name
    assert services["migrate"]["restart"] == "no"  # one-shot


def test_compose_takes_secrets_from_the_env_file_and_binds_the_sidecar_publicly() -> None:
    doc = compose()
    services = doc["services"]
    webhook = services["webhook"]
    assert webhook["environment"]["WEBHOOK_HOST"] == "0.0.0.0"
    assert webhook["ports"] == ["8000:8000"]
    assert all(p.startswith("127.0.0.1:") for p in services["webserver"]["ports"])  # no auth
    env = doc["x-app"]["environment"]
    assert env["DAGSTER_PG_URL"].startswith("postgresql+psycopg2://")
    # the password reaches libpq as PGPASSWORD, never inside a URL (where @ : / % break it)
    assert env["PGPASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for name, service in services.items():
        if name != "postgres":
            assert service["env_file"] == ".env", name
            assert service["read_only"] is True and service["tmpfs"] == ["/tmp"], name
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${POSTGRES_PASSWORD"), f"{name}.{key}"
            if "://" in str(value):
                url = urlsplit(str(value))
                assert url.password is None and "PASSWORD" not in str(value), f"{name}.{key}"


def test_compose_names_its_compose_version_and_env_example_has_its_variables() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    if "name" in compose():  # a top-level name: Compose v1 (docker-compose 1.x) refuses it
        assert "Compose v2" in text.split("\nname:")[0]
    example = (REPO / ".env.example").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required == {"POSTGRES_PASSWORD"}
    assert all(re.search(rf"^{var}=", example, re.M) for var in required)


# --- Kubernetes manifests -------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


EXPORTER = "glisk-exporter"  # its Deployment and Service: tests/test_monitoring.py


def by_kind(kind: str, name: str | None = None) -> dict[str, Any]:
    """The one manifest of `kind` named `name`; without a name, the one that is not the
    exporter's."""
    (doc,) = [
        d
        for d in manifests()
        if d["kind"] == kind
        and (d["metadata"]["name"] == name if name else d["metadata"]["name"] != EXPORTER)
    ]
    return doc


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_strictly_against_kubernetes(version: str) -> None:
    kinds = set()
    for doc in manifests():
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.add(doc["kind"])
    assert kinds >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job",
        "Ingress", "ConfigMap", "NetworkPolicy",
    }  # fmt: skip
    # strict mode refuses what Kubernetes would silently drop: a misspelt field
    broken = copy.deepcopy(by_kind("Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_sidecar_deployment_probes_resources_and_security() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ROLES["webhook"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"]: e for e in container["env"]}
    assert env["WEBHOOK_HOST"]["value"] == "0.0.0.0"
    assert {"DATABASE_POOL_SIZE", "DATABASE_MAX_OVERFLOW"} <= set(env)
    job = by_kind("Job")["spec"]["template"]["spec"]
    assert job["containers"][0]["command"] == ROLES["migrate"]
    assert job["restartPolicy"] == "Never"


def test_manifests_reference_secrets_and_never_hold_one() -> None:
    docs = manifests()
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert not SECRET_VARS & set(by_kind("ConfigMap")["data"])
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            for env in container.get("env", []):
                if env["name"] in SECRET_VARS:
                    assert "secretKeyRef" in env["valueFrom"], env["name"]


def test_service_hpa_pdb_and_ingress_point_at_the_sidecar() -> None:
    deployment, service = by_kind("Deployment"), by_kind("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )
    target = by_kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    ingress = by_kind("Ingress")["spec"]
    assert ingress["tls"][0]["secretName"]
    (path,) = ingress["rules"][0]["http"]["paths"]
    assert path["path"] == "/webhooks/alchemy"  # /metrics and /docs stay internal
    assert path["backend"]["service"]["name"] == service["metadata"]["name"]


def test_only_the_ingress_controller_and_prometheus_reach_the_trusting_sidecar() -> None:
    """The sidecar trusts X-Forwarded-For from the whole pod CIDR: a NetworkPolicy must
    select its pods and admit connections to its port only from the controller's pods and
    the monitoring namespace, or any pod could claim a new client on each connection."""
    trusted = by_kind("ConfigMap")["data"]["WEBHOOK_TRUSTED_PROXIES"]
    assert trusted  # what the policy is for
    labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    policy = by_kind("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert "Ingress" in policy["policyTypes"]
    (rule,) = policy["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["http"]
    container_ports = by_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "http" in {p["name"] for p in container_ports["ports"]}
    peers = rule["from"]
    assert all("ipBlock" not in peer for peer in peers)  # no CIDR: only named peers
    namespaces = {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in peers
    }
    assert namespaces == {"ingress-nginx", "monitoring"}
    controller = next(
        p for p in peers
        if p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "ingress-nginx"
    )  # fmt: skip
    assert controller["podSelector"]["matchLabels"]  # the controller's pods, not the namespace


# --- Helm values for Dagster's chart --------------------------------------------------------


def unknown_keys(values: Any, known: Any, path: str = "") -> list[str]:
    """Key paths of `values` that the chart's key tree `known` does not list."""
    if known is None:  # free-form below this key
        return []
    if isinstance(values, list):
        return [p for item in values for p in unknown_keys(item, known[0], f"{path}[]")]
    if not isinstance(values, dict):
        return []
    problems = []
    for key, value in values.items():
        if not isinstance(known, dict) or key not in known:
            problems.append(f"{path}.{key}".lstrip("."))
        else:
            problems += unknown_keys(value, known[key], f"{path}.{key}")
    return problems


def helm_values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def test_helm_values_use_only_keys_the_dagster_chart_knows() -> None:
    known = yaml.safe_load((REPO / "tests" / "data" / "dagster_chart_values_keys.yaml").read_text())
    assert unknown_keys(helm_values(), known) == []
    typo = {"dagsterDaemon": {"runMonitoring": {"enable": True}}, "runLaunchr": {}}
    assert unknown_keys(typo, known) == ["dagsterDaemon.runMonitoring.enable", "runLaunchr"]


def test_helm_values_match_the_instance_of_dagster_yaml() -> None:
    values, instance = helm_values(), yaml.safe_load((REPO / "dagster.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    # the chart runs `dagster code-server start -h 0.0.0.0 -p PORT` + codeServerArgs
    assert ["dagster", "code-server", "start", *deployment["codeServerArgs"]] == (
        ROLES["code-server"]
    )
    assert {s["name"] for s in deployment["envSecrets"]} == {"glisk-secrets"}
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    postgres = values["postgresql"]
    assert postgres["enabled"] is False and postgres["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["type"] == instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    # dagster.yaml's queue settings, and no maxConcurrentRuns: the chart would write
    # max_concurrent_runs into run_coordinator, which Dagster refuses beside `concurrency`
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert "maxConcurrentRuns" not in queued
    assert snake_case_keys(queued) == instance["run_coordinator"]["config"]
    concurrency = values["concurrency"]
    assert (
        concurrency["runs"]["maxConcurrentRuns"]
        == (instance["concurrency"]["runs"]["max_concurrent_runs"])
    )
    assert concurrency["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] is instance["run_monitoring"]["enabled"] is True
    assert (
        monitoring["freeSlotsAfterRunEndSeconds"]
        == (instance["run_monitoring"]["free_slots_after_run_end_seconds"])
    )


# --- what every file behind Alchemy answers a duplicate with ---------------------------------


def test_every_deployment_behind_alchemy_answers_duplicates_200_the_code_409() -> None:
    from glisk_pipeline.settings import Settings

    # the code keeps the specified contract; the deployments are behind Alchemy, which
    # retries every non-200 and pauses an endpoint that keeps failing
    assert Settings.model_fields["WEBHOOK_DUPLICATE_STATUS"].default == 409
    assert compose()["services"]["webhook"]["environment"]["WEBHOOK_DUPLICATE_STATUS"] == "200"
    example = (REPO / ".env.example").read_text()
    assert re.findall(r"^WEBHOOK_DUPLICATE_STATUS=(.*)$", example, re.M) == ["200"]
    config = by_kind("ConfigMap")
    assert config["data"]["WEBHOOK_DUPLICATE_STATUS"] == "200"
    # the sidecar Deployment and the Dagster code location (Helm) both read that ConfigMap
    sidecar = by_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in sidecar["envFrom"]
    (deployment,) = helm_values()["dagster-user-deployments"]["deployments"]
    assert {m["name"] for m in deployment["envConfigMaps"]} == {config["metadata"]["name"]}


def test_env_example_ships_no_contract_address_placeholder() -> None:
    example = (REPO / ".env.example").read_text()
    assert re.findall(r"^GLISK_NFT_CONTRACT_ADDRESS=(.*)$", example, re.M) == [""]
    assert re.findall(r"^GLISK_ALLOW_START_BLOCK_ZERO=(.*)$", example, re.M) == ["false"]
