"""deploy/kubernetes/: strictly valid for Kubernetes and KEDA, offline; its parts agree with one another."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from producers import keys
from tests.deploy.helpers import DEPLOY, SCHEMAS, known_variables, metric_names, stages, yaml_documents

KUBERNETES = DEPLOY / "kubernetes"
MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
#: The oldest and the newest Kubernetes whose schemas kubernetes-validate carries.
VERSIONS = sorted({kubernetes_validate.utils.all_versions()[0], kubernetes_validate.latest_version()})
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
#: The metadata each KEDA scaler takes (keda.sh/docs, "Redis Lists" and "Prometheus"): a typo is ignored by
#: KEDA, so it is caught here.
KEDA_PARAMETERS = {
    "redis": {
        "address",
        "host",
        "port",
        "addressFromEnv",
        "hostFromEnv",
        "portFromEnv",
        "usernameFromEnv",
        "passwordFromEnv",
        "listName",
        "listLength",
        "activationListLength",
        "enableTLS",
        "unsafeSsl",
        "databaseIndex",
    },
    "prometheus": {
        "serverAddress",
        "query",
        "queryParameters",
        "threshold",
        "activationThreshold",
        "namespace",
        "customHeaders",
        "ignoreNullValues",
        "unsafeSsl",
        "authModes",
        "timeout",
    },
}


def resources() -> dict[str, dict[str, Any]]:
    """Every manifest by kind (one of each kind here)."""
    found: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for document in yaml_documents(path):
            assert document["kind"] not in found, f"a second {document['kind']} in {path.name}"
            found[document["kind"]] = document
    return found


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = resources()["Deployment"]["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (worker,) = pod_spec()["containers"]
    return dict(worker)


def triggers() -> dict[str, dict[str, Any]]:
    return {trigger["type"]: trigger for trigger in resources()["ScaledObject"]["spec"]["triggers"]}


def strict(schema: Any) -> Any:
    """A CRD's OpenAPI schema with unknown fields refused, as kubernetes-validate --strict does for core kinds."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    open_ended = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in schema and not open_ended:
        result["additionalProperties"] = False
    return result


def scaled_object_schema() -> dict[str, Any]:
    crd = yaml.safe_load((SCHEMAS / "keda.sh_scaledobjects.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = strict(version["schema"]["openAPIV3Schema"])
    return schema


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_kubernetes_manifest_is_strictly_valid(path: Path, version: str) -> None:
    for document in yaml_documents(path):
        if document["kind"] in KEDA_KINDS:
            continue
        kubernetes_validate.validate(document, version, strict=True)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    deployment = copy.deepcopy(resources()["Deployment"])
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 60

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_the_scaled_object_is_valid_against_kedas_crd() -> None:
    scaled = resources()["ScaledObject"]
    spec = scaled["spec"]

    jsonschema.Draft7Validator(scaled_object_schema()).validate(scaled)
    # The CRD's one CEL rule (x-kubernetes-validations), which jsonschema does not run.
    assert spec["minReplicaCount"] <= spec.get("maxReplicaCount", 100)


def test_the_crd_check_refuses_a_misspelt_field() -> None:
    scaled = copy.deepcopy(resources()["ScaledObject"])
    scaled["spec"]["minReplicas"] = 2

    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        jsonschema.Draft7Validator(scaled_object_schema()).validate(scaled)


@pytest.mark.parametrize("kind", sorted(KEDA_PARAMETERS))
def test_each_keda_trigger_uses_only_parameters_its_scaler_knows(kind: str) -> None:
    metadata = triggers()[kind]["metadata"]

    assert set(metadata) <= KEDA_PARAMETERS[kind], set(metadata) - KEDA_PARAMETERS[kind]
    assert all(isinstance(value, str) for value in metadata.values())


def test_the_trigger_authentication_reads_a_key_the_credentials_secret_has() -> None:
    found = resources()
    auth = found["TriggerAuthentication"]
    secret = found["Secret"]

    (ref,) = auth["spec"]["secretTargetRef"]

    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert ref["parameter"] == "password"
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]
    assert triggers()["redis"]["authenticationRef"]["name"] == auth["metadata"]["name"]


def test_keda_scales_the_worker_deployment_and_never_to_zero() -> None:
    spec = resources()["ScaledObject"]["spec"]

    assert spec["scaleTargetRef"]["name"] == resources()["Deployment"]["metadata"]["name"]
    assert spec["minReplicaCount"] >= 1, "the scheduler runs in the workers: with none, nothing leaves the lanes"
    assert "replicas" not in resources()["Deployment"]["spec"], "KEDA owns the replica count"


def test_the_queue_trigger_watches_the_list_the_fleet_consumes_on_the_workers_redis() -> None:
    metadata = triggers()["redis"]["metadata"]
    redis_url = urlsplit(resources()["Secret"]["stringData"]["TEAMS_NOTIFY_REDIS_URL"])

    assert metadata["listName"] == keys.QUEUE
    assert metadata["address"] == f"{redis_url.hostname}:{redis_url.port}"
    assert metadata["databaseIndex"] == redis_url.path.strip("/")
    assert metadata["enableTLS"] == str(redis_url.scheme == "rediss").lower()


def test_the_busy_slot_target_is_below_the_slots_of_one_worker() -> None:
    args = container()["args"]
    slots = int(args[args.index("-c") + 1])

    threshold = float(triggers()["prometheus"]["metadata"]["threshold"])

    assert args[0] == "worker"
    assert 0.5 * slots <= threshold < slots


def test_the_scaling_query_names_only_metrics_the_worker_exports() -> None:
    query = triggers()["prometheus"]["metadata"]["query"]

    named = set(re.findall(r"\bteams_notify_[a-z0-9_]+", query))

    assert named
    assert named <= metric_names(), named - metric_names()


def test_the_worker_has_time_to_finish_a_send_in_flight_when_stopped() -> None:
    assert pod_spec()["terminationGracePeriodSeconds"] >= 45  # a send lasts 30 s at most
    assert resources()["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_pod_runs_as_the_images_unprivileged_user_with_a_read_only_root() -> None:
    security = pod_spec()["securityContext"]
    _, runtime = stages()

    assert f"{security['runAsUser']}:{security['runAsGroup']}" == runtime.one("USER")
    assert security["runAsNonRoot"] is True
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod_spec()["automountServiceAccountToken"] is False


def test_probes_service_and_configmap_agree_on_the_metrics_port() -> None:
    found = resources()
    (port,) = container()["ports"]
    (service_port,) = found["Service"]["spec"]["ports"]

    assert str(port["containerPort"]) == found["ConfigMap"]["data"]["TEAMS_NOTIFY_METRICS_PORT"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container()[probe]["httpGet"] == {"path": "/metrics", "port": port["name"]}
    assert service_port["targetPort"] == port["name"]
    assert found["Service"]["metadata"]["annotations"]["prometheus.io/port"] == str(port["containerPort"])


def test_the_service_and_the_disruption_budget_select_the_worker_pods() -> None:
    found = resources()
    pod_labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = found["Deployment"]["spec"]["selector"]["matchLabels"]

    assert selector.items() <= pod_labels.items()
    assert found["Service"]["spec"]["selector"] == selector
    assert found["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
    assert found["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_settings_come_from_the_configmap_and_the_secret_and_name_known_variables() -> None:
    found = resources()
    env_from = container()["envFrom"]
    config_keys = set(found["ConfigMap"]["data"])
    secret_keys = set(found["Secret"]["stringData"])

    assert env_from == [
        {"configMapRef": {"name": found["ConfigMap"]["metadata"]["name"]}},
        {"secretRef": {"name": found["Secret"]["metadata"]["name"]}},
    ]
    assert config_keys <= known_variables()
    assert secret_keys - {"REDIS_PASSWORD"} <= known_variables()
    assert not config_keys & secret_keys
    assert not {key for key in config_keys if re.search("SECRET|PASSWORD|REDIS_URL", key)}


def test_the_certificate_secret_is_optional_and_mounted_read_only() -> None:
    (volume,) = [v for v in pod_spec()["volumes"] if "secret" in v]
    (mount,) = [m for m in container()["volumeMounts"] if m["name"] == volume["name"]]

    assert volume["secret"]["optional"] is True
    assert mount["readOnly"] is True


def test_the_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    image = container()["image"]

    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS if p.name != "secret.example.yaml")
    assert [entry["name"] for entry in kustomization["images"]] == [image]
    assert kustomization["namespace"] == resources()["Namespace"]["metadata"]["name"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) is not installed")
def test_kustomize_builds_strictly_valid_manifests_in_the_fleets_namespace() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=120, check=True
    )
    documents = [doc for doc in yaml.safe_load_all(built.stdout) if doc]

    assert sorted(doc["kind"] for doc in documents) == sorted(k for k in resources() if k != "Secret")
    for document in documents:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "teams-notify"
        if document["kind"] == "ScaledObject":
            jsonschema.Draft7Validator(scaled_object_schema()).validate(document)
        elif document["kind"] not in KEDA_KINDS:
            kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "teams-notify:0.1.0"
