"""The Kubernetes manifests: every rendered object is valid, and what they say about the
sidecar and the router (ports, probes, flags, configs, secrets, sizes) matches the code."""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_support import (
    BUILDS,
    DEPLOY,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    Obj,
    configmap_file,
    container,
    detector_containers,
    find,
    flags_of,
    help_flags,
    image_env,
    rendered,
)

from detector.config import ENV_VARS, load_settings
from detector.ops.secrets import ENV_KEYS, FILE_ENV_KEYS, is_secret_key
from detector.router.settings import ENV_VARS as ROUTER_ENV_VARS
from detector.router.settings import load_router_settings

SCHEMAS = Path(__file__).parent / "schemas"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.monitoring.coreos.com-v1.json",
}
ALL_BUILDS = list(BUILDS)


def _sizing() -> Any:
    spec = importlib.util.spec_from_file_location("sizing", DEPLOY / "sizing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validate(obj: Obj, version: str) -> None:
    """Raise unless ``obj`` is valid: built-in kinds against the Kubernetes OpenAPI schemas
    of ``version`` (strict: unknown fields fail), CRD kinds against their vendored schema."""
    crd = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if crd is None:
        kubernetes_validate.validate(obj, version, strict=True)
        return
    schema = json.loads((SCHEMAS / crd).read_text())
    jsonschema.Draft202012Validator(schema).validate(obj)


def env_data(objects: tuple[Obj, ...]) -> dict[str, str]:
    return dict(find(objects, "ConfigMap", "drift-detector-env")["data"])


def container_env(objects: tuple[Obj, ...]) -> dict[str, str]:
    """What the process sees: the image's ENV, overridden by the env ConfigMap."""
    return {**image_env(), **env_data(objects)}


def sidecar_settings(objects: tuple[Obj, ...], tmp_path: Path) -> Any:
    """The sidecar's settings as the pod gets them: the mounted file and the env ConfigMap."""
    path = tmp_path / "detector.yaml"
    path.write_text(configmap_file(objects, "detector.yaml"))
    return load_settings(path, env=container_env(objects))


def router_settings(objects: tuple[Obj, ...], tmp_path: Path) -> Any:
    """The router's settings, its secret files replaced by placeholders in ``tmp_path``."""
    text = configmap_file(objects, "router.yaml")
    for path in set(re.findall(r"_file:\s*(\S+)", text)):
        local = tmp_path / Path(path).name
        # Valid shapes for each secret: a webhook URL, a 32-character routing key.
        local.write_text("a" * 32 if "routing" in path else "https://hooks.example.invalid/x")
        text = text.replace(path, str(local))
    config = tmp_path / "router.yaml"
    config.write_text(text)
    return load_router_settings(config, env=container_env(objects))


# --- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("build", ALL_BUILDS)
def test_every_rendered_object_is_valid(build: str, version: str) -> None:
    objects = rendered(build)
    assert objects
    for obj in objects:
        try:
            validate(obj, version)
        except Exception as exc:  # name the object
            raise AssertionError(
                f"{build}: {obj['kind']}/{obj['metadata']['name']}: {exc}"
            ) from exc


@pytest.mark.parametrize(
    ("kind", "name", "mutate"),
    [
        ("Deployment", "drift-detector", lambda o: o["spec"].update(replica=3)),
        (
            "Deployment",
            "drift-detector",
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["livenessProbe"][
                "httpGet"
            ].update(port=[8080]),
        ),
        ("PodDisruptionBudget", "drift-detector", lambda o: o["spec"].update(maxUnavailabel=1)),
        (
            "ServiceMonitor",
            "drift-detector",
            lambda o: o["spec"]["endpoints"][0].update(prot="http"),
        ),
        (
            "PrometheusRule",
            "drift-detector",
            lambda o: o["spec"]["groups"][0]["rules"][0].update(exprr="up"),
        ),
        ("PrometheusRule", "drift-detector", lambda o: o["spec"]["groups"][0].pop("name")),
    ],
)
def test_validation_rejects_a_broken_object(kind: str, name: str, mutate: Any) -> None:
    """The validation above can fail: one misspelt or mistyped field is caught."""
    obj = copy.deepcopy(find(rendered("standalone"), kind, name))
    validate(obj, KUBERNETES_VERSIONS[-1])
    mutate(obj)
    with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
        validate(obj, KUBERNETES_VERSIONS[-1])


def test_every_object_kind_is_validated_by_a_schema() -> None:
    kinds = {(o["apiVersion"], o["kind"]) for b in ALL_BUILDS for o in rendered(b)}
    custom = {k for k in kinds if "monitoring.coreos.com" in k[0]}
    assert custom == set(CRD_SCHEMAS)


# --- the sidecar -------------------------------------------------------------------------


def _pod(deployment: Obj) -> Obj:
    return dict(deployment["spec"]["template"]["spec"])


def _port(c: Obj, name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    assert name in ports, f"{c['name']}: no port named {name}"
    return int(ports[name])


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_sidecar_identity_probes_ports_and_grace_period(build: str, tmp_path: Path) -> None:
    objects = rendered(build)
    deployment = find(objects, "Deployment", "drift-detector")
    c = container(deployment, "detector")
    settings = sidecar_settings(objects, tmp_path)

    # A transactional id per pod, from the pod's name.
    assert "--transactional-id=$(POD_NAME)" in c["args"]
    pod_name = [e for e in c["env"] if e["name"] == "POD_NAME"]
    assert pod_name == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    assert settings.kafka.processing_guarantee == "exactly-once"

    # Probes on the paths the sidecar serves, on the port it listens on, on all interfaces.
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert _port(c, c[probe]["httpGet"]["port"]) == settings.server.port
    assert settings.server.host == "0.0.0.0"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == settings.server.port
    assert annotations["prometheus.io/path"] == "/metrics"

    # SIGTERM commits a last checkpoint: the grace period outlasts one.
    grace = _pod(deployment)["terminationGracePeriodSeconds"]
    assert grace > settings.kafka.checkpoint_interval_s + 10


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_selectors_reach_the_pods(build: str) -> None:
    """PDB, Services and ServiceMonitors select the pods and ports they are meant for."""
    objects = rendered(build)
    for name, service_name in (
        ("drift-detector", "drift-detector-metrics"),
        ("drift-router", "drift-router-metrics"),
    ):
        deployment = find(objects, "Deployment", name)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
        service = find(objects, "Service", service_name)
        assert _selects(service["spec"]["selector"], pod_labels)
        target_ports = {p["targetPort"] for p in service["spec"]["ports"]}
        for port in target_ports:
            _port(container(deployment, "detector" if name == "drift-detector" else "router"), port)
        monitors = [
            o for o in objects if o["kind"] == "ServiceMonitor" and o["metadata"]["name"] == name
        ]
        if build != "base":
            (monitor,) = monitors
            assert _selects(
                monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"]
            )
            for endpoint in monitor["spec"]["endpoints"]:
                assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
                assert endpoint["path"] == "/metrics"
    sidecar = find(objects, "Deployment", "drift-detector")
    pdb = find(objects, "PodDisruptionBudget", "drift-detector")
    assert _selects(
        pdb["spec"]["selector"]["matchLabels"], sidecar["spec"]["template"]["metadata"]["labels"]
    )
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_overlays_differ_by_values_not_copies() -> None:
    """Replicas, namespace and image come from the overlays; the sidecar pod of the
    model-server overlay holds the model server and the detector."""
    standalone, model_server = rendered("standalone"), rendered("model-server")
    assert find(standalone, "Deployment", "drift-detector")["spec"]["replicas"] == 3
    assert find(model_server, "Deployment", "drift-detector")["spec"]["replicas"] == 4
    assert {o["metadata"]["namespace"] for o in standalone} == {"ml-monitoring"}
    assert {o["metadata"]["namespace"] for o in rendered("console")} == {"ml-monitoring"}
    pod = _pod(find(model_server, "Deployment", "drift-detector"))
    assert [c["name"] for c in pod["containers"]] == ["detector", "model-server"]
    service = find(model_server, "Service", "fraud-model")
    labels = find(model_server, "Deployment", "drift-detector")["spec"]["template"]["metadata"][
        "labels"
    ]
    assert _selects(service["spec"]["selector"], labels)
    for build in OVERLAYS:
        images = {c["image"] for d, c, _ in detector_containers(rendered(build))}
        assert images == {"registry.example.com/ml/drift-detector:0.1.0"}


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_memory_limit_holds_the_state_the_detection_limits_allow(
    build: str, tmp_path: Path
) -> None:
    """requests = limits >= what deploy/sizing.py's measured figures give for the
    partitions per pod the Deployment is annotated with, at the configured limits."""
    sizing = _sizing()
    objects = rendered(build)
    deployment = find(objects, "Deployment", "drift-detector")
    partitions = int(deployment["metadata"]["annotations"]["drift-detector/partitions-per-pod"])
    detection = sidecar_settings(objects, tmp_path).detection
    needed = sizing.memory_limit_bytes(
        partitions, detection.max_models, detection.max_features_per_model
    )
    resources = container(deployment, "detector")["resources"]
    limit = _bytes(resources["limits"]["memory"])
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    assert limit >= needed, (
        f"{build}: limit {limit / 2**20:.0f} MiB < needed {needed / 2**20:.0f} MiB"
    )
    assert limit < 2 * needed, f"{build}: limit {limit / 2**20:.0f} MiB is twice what is needed"
    assert resources["requests"]["cpu"]


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def test_sizing_formula_grows_with_partitions_and_limits() -> None:
    sizing = _sizing()
    one = sizing.memory_limit_bytes(1, 20, 100)
    assert sizing.memory_limit_bytes(2, 20, 100) > one
    assert sizing.memory_limit_bytes(1, 40, 100) > one
    assert sizing.memory_limit_bytes(1, 20, 200) > one


# --- every container ---------------------------------------------------------------------


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_containers_are_locked_down_and_sized(build: str) -> None:
    for obj in rendered(build):
        if obj["kind"] != "Deployment":
            continue
        pod = _pod(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            where = f"{build}: {obj['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"], (
                where
            )
            if build != "base":
                image = c["image"]
                assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), where


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_every_flag_in_the_manifests_exists(build: str) -> None:
    """Each --flag a container passes to `detector` is one its --help lists."""
    checked = 0
    for deployment, c, command in detector_containers(rendered(build)):
        assert c["args"][0] == command
        known = help_flags(command)
        assert known is not None, f"`detector {command} --help` fails"
        unknown = set(flags_of(c["args"][1:])) - known
        assert not unknown, (
            f"{deployment['metadata']['name']}: {unknown} not in `detector {command} --help`"
        )
        checked += 1
    assert checked >= 2


def test_console_flags_exist() -> None:
    known = help_flags("console")
    assert known is not None, "`detector console --help` fails"
    checked = 0
    for _, c, command in detector_containers(rendered("console")):
        if command == "console":
            assert set(flags_of(c["args"][1:])) <= known
            checked += 1
    assert checked == 1


def test_help_flags_reads_real_flags() -> None:
    assert {"--transactional-id", "--config", "--http-port"} <= set(help_flags("run") or ())
    assert "--transactional-id" not in (help_flags("route") or ())


# --- configs and secrets ------------------------------------------------------------------


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_router_config_loads_and_grace_period_covers_delivery(build: str, tmp_path: Path) -> None:
    objects = rendered(build)
    settings = router_settings(objects, tmp_path)
    deployment = find(objects, "Deployment", "drift-router")
    c = container(deployment, "router")
    assert settings.server.host == "0.0.0.0"
    assert _port(c, "http") == settings.server.port
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == settings.server.port
    timeout_s = settings.delivery.timeout / 1000
    assert _pod(deployment)["terminationGracePeriodSeconds"] >= timeout_s + 20
    assert "model" in settings.route.group_by  # more than one instance may run


KNOWN_VARIABLES = set(ENV_VARS) | set(ROUTER_ENV_VARS) | set(ENV_KEYS) | set(FILE_ENV_KEYS)


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_env_configmap_sets_only_variables_the_code_reads(build: str) -> None:
    data = env_data(rendered(build))
    assert set(data) <= KNOWN_VARIABLES, set(data) - KNOWN_VARIABLES


def _secret_mounts(pod: Obj, c: Obj) -> list[str]:
    secret_volumes = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
    return [m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in secret_volumes]


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_secrets_are_mounted_files_never_values(build: str) -> None:
    """No secret in an env value (plain, ConfigMap or secretKeyRef) nor in a ConfigMap;
    each secret file a config or variable names is inside a mounted Secret volume."""
    objects = rendered(build)
    assert not [o for o in objects if o["kind"] == "Secret"]
    env = env_data(objects)
    for key in env:
        if is_secret_key(key):
            assert key in FILE_ENV_KEYS, f"{key} holds a secret value"
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        pod = _pod(obj)
        for c in pod["containers"]:
            mounts = _secret_mounts(pod, c)
            for e in c.get("env", []):
                assert "secretKeyRef" not in e.get("valueFrom", {}), (c["name"], e["name"])
                if is_secret_key(e["name"]):
                    assert e["name"].endswith("_FILE"), (c["name"], e["name"])
            for e in c.get("envFrom", []):
                assert "secretRef" not in e
            if any("configMapRef" in e for e in c.get("envFrom", [])):
                for key in env:
                    if key in FILE_ENV_KEYS:
                        assert any(env[key].startswith(m + "/") for m in mounts), (c["name"], key)
    router = find(objects, "Deployment", "drift-router")
    mounts = _secret_mounts(_pod(router), container(router, "router"))
    files = re.findall(r"_file:\s*(\S+)", configmap_file(objects, "router.yaml"))
    assert files
    for path in files:
        assert any(path.startswith(m + "/") for m in mounts), path
    for key in ("detector.yaml", "router.yaml"):
        tree = yaml.safe_load(configmap_file(objects, key))
        for k, v in tree.get("kafka", {}).get("librdkafka", {}).items():
            if is_secret_key(k):
                assert str(v).startswith("file:"), k


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_configmap_references_exist(build: str) -> None:
    objects = rendered(build)
    configmaps = {
        o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"
    }
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        pod = _pod(obj)
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                data = configmaps[volume["configMap"]["name"]]
                for item in volume["configMap"].get("items", []):
                    assert item["key"] in data
        for c in pod["containers"]:
            for e in c.get("envFrom", []):
                assert e["configMapRef"]["name"] in configmaps
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["key"] in configmaps[ref["name"]], (c["name"], ref)
