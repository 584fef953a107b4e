"""The Kubernetes Job of a Dagster run, as dagster-k8s builds it from deploy/helm/values.yaml:
the launcher's run config (runLauncher.config.k8sRunLauncher) with the code location's
container context merged over it, as K8sContainerContext.create_for_run does, then
construct_dagster_k8s_job, the function K8sRunLauncher.launch_run calls. The pod must be one
that a namespace enforcing Pod Security "restricted" admits, with the planned resources.

What the chart puts where (dagster-io/dagster, helm/dagster/charts/dagster-user-deployments/
templates/helpers/_helpers.tpl, "dagsterUserDeployments.k8sContainerContext", 031a3e8c; and
helm/dagster/templates/helpers/instance/_run-launcher.tpl): the container context holds the
deployment's image pull policy and secrets, env config maps and secrets, volumes, labels,
`resources`, namespace, service account and env, and no security context; the launcher's
runK8sConfig is rendered into run_k8s_config with its keys in snake_case.
"""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import (
    DagsterK8sJobConfig,
    UserDefinedDagsterK8sConfig,
    construct_dagster_k8s_job,
)

from tests.support.deploy_support import REPO, snake_case_keys
from tests.support.pod_security import restricted_violations

# The plan docs/deploy.md states for a run pod.
PLANNED = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
RELEASE, NAMESPACE = "dagster", "glisk"


def values() -> dict[str, Any]:
    return yaml.safe_load((REPO / "deploy" / "helm" / "values.yaml").read_text())


def chart_container_context(doc: dict[str, Any]) -> dict[str, Any]:
    """The code location's container context the chart renders (see the module docstring)."""
    chart = doc["dagster-user-deployments"]
    (deployment,) = chart["deployments"]
    k8s: dict[str, Any] = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [f"{RELEASE}-{deployment['name']}-user-env"]
        + [c["name"] for c in deployment.get("envConfigMaps", [])],
        "namespace": NAMESPACE,
        "service_account_name": f"{RELEASE}-dagster-user-deployments-user-deployments",
    }
    if chart.get("imagePullSecrets"):
        k8s["image_pull_secrets"] = chart["imagePullSecrets"]
    if deployment.get("envSecrets"):
        k8s["env_secrets"] = [s["name"] for s in deployment["envSecrets"]]
    for key, name in (("volumeMounts", "volume_mounts"), ("volumes", "volumes")):
        if deployment.get(key):
            k8s[name] = deployment[key]
    for key in ("labels", "resources", "env"):
        if deployment.get(key):
            k8s[key] = deployment[key]
    return {"k8s": k8s}


def run_job(doc: dict[str, Any]) -> dict[str, Any]:
    """The run's Job as K8sRunLauncher would create it, as a manifest (camelCase)."""
    launcher = doc["runLauncher"]["config"]["k8sRunLauncher"]
    (deployment,) = doc["dagster-user-deployments"]["deployments"]
    from_launcher = K8sContainerContext(
        image_pull_policy=launcher.get("imagePullPolicy"),
        image_pull_secrets=doc.get("imagePullSecrets"),
        env_config_maps=[c["name"] for c in launcher.get("envConfigMaps", [])],
        env_secrets=[s["name"] for s in launcher.get("envSecrets", [])],
        resources=launcher.get("resources"),
        security_context=launcher.get("securityContext"),
        namespace=NAMESPACE,
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
            snake_case_keys(launcher["runK8sConfig"])
        ),
    )
    context = K8sContainerContext().merge(from_launcher)
    if deployment["includeConfigInLaunchedRuns"]["enabled"]:
        context = context.merge(
            K8sContainerContext.create_from_config(chart_container_context(doc))
        )
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(
            job_image=image,
            dagster_home="/opt/dagster/dagster_home",
            instance_config_map=f"{RELEASE}-instance",
            postgres_password_secret=doc["global"]["postgresqlSecretName"],
        ),
        args=["dagster", "api", "execute_run", "{}"],
        job_name="dagster-run-0123456789",
        pod_name="dagster-run-0123456789",
        component="run_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": "__ASSET_JOB"},
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def test_run_pod_is_admitted_under_pod_security_restricted() -> None:
    job = run_job(values())
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    assert pod["automountServiceAccountToken"] is False
    assert job["spec"]["backoffLimit"] == 0


def test_without_the_run_config_the_chart_leaves_run_pods_unadmitted() -> None:
    """The defect this guards: the code location's security contexts do not reach runs."""
    doc = values()
    run_config = doc["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    del run_config["podSpecConfig"]["securityContext"], run_config["containerConfig"]
    pod = run_job(doc)["spec"]["template"]["spec"]
    assert "runAsNonRoot is not true" in " ".join(restricted_violations(pod))


def test_run_pod_gets_the_planned_resources() -> None:
    doc = values()
    (container,) = run_job(doc)["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == PLANNED
    assert "250m" in (REPO / "docs" / "deploy.md").read_text()
    # a runK8sConfig resources block would be replaced by the code location's: none is set
    launcher = doc["runLauncher"]["config"]["k8sRunLauncher"]
    assert "resources" not in launcher["runK8sConfig"].get("containerConfig", {})


def test_code_location_resources_replace_the_launchers() -> None:
    """dagster-k8s' merge order, which makes a launcher-level resources block inert."""
    doc = values()
    launcher = doc["runLauncher"]["config"]["k8sRunLauncher"]
    launcher["runK8sConfig"]["containerConfig"]["resources"] = {"requests": {"cpu": "2"}}
    (container,) = run_job(doc)["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == "250m"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_sidecar_and_migration_pods_are_admitted_under_restricted(kind: str) -> None:
    docs = [
        d
        for path in sorted((REPO / "deploy" / "k8s").rglob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if d and d["kind"] == kind
    ]
    assert docs
    for doc in docs:
        assert restricted_violations(doc["spec"]["template"]["spec"]) == [], doc["metadata"]
