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
from audit_keys import write_keys
from deploy_support import (
    BUILDS,
    CODE_METRIC_PREFIXES,
    COMPONENT_NEEDS,
    DEPLOY,
    KUBE_STATE_METRICS,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    Obj,
    alerting_rules,
    components,
    configmap_file,
    container,
    detector_containers,
    find,
    flag_value,
    flags_of,
    help_flags,
    image_env,
    pod_of,
    rendered,
    rule_metrics,
    rule_selectors,
    workloads,
)

from detector.config import ENV_VARS, load_settings
from detector.errors import ConfigError
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
        ("CronJob", "drift-audit-verify", lambda o: o["spec"].update(schedul="17 3 * * *")),
        (
            "CronJob",
            "drift-audit-verify",
            lambda o: o["spec"]["jobTemplate"]["spec"]["template"]["spec"].update(
                restartPolicy=["Never"]
            ),
        ),
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


def _pod(workload: Obj) -> Obj:
    return dict(pod_of(workload))


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
        if "prometheus-operator" not in components(build):
            assert not monitors
        else:
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


def test_sizing_plan_counts_the_state_archives_snapshots() -> None:
    """The archive keeps a whole-state snapshot per partition every archive_interval_s
    for retention_days: 9,600 copies of the changelog at the defaults."""
    sizing = _sizing()
    keyed = sizing.plan(50_000, 40, 20, 3, 12)
    assert keyed["archive_bytes_total"] == pytest.approx(keyed["changelog_bytes_total"] * 9_600)
    two_hourly = sizing.plan(50_000, 40, 20, 3, 12, archive_interval_s=7_200)
    assert two_hourly["archive_bytes_total"] == pytest.approx(keyed["archive_bytes_total"] / 2)
    unkeyed = sizing.plan(50_000, 40, 20, 3, 12, keyed_by_model=False)
    assert unkeyed["archive_bytes_total"] == pytest.approx(keyed["archive_bytes_total"] * 12)


# --- every container ---------------------------------------------------------------------


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_containers_are_locked_down_and_sized(build: str) -> None:
    for obj in workloads(rendered(build)):
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
    for workload, c, command in detector_containers(rendered(build)):
        assert tuple(c["args"][: len(command)]) == command
        words = " ".join(command)
        known = help_flags(command)
        assert known is not None, f"`detector {words} --help` fails"
        unknown = set(flags_of(c["args"][len(command) :])) - known
        assert not unknown, (
            f"{workload['metadata']['name']}: {unknown} not in `detector {words} --help`"
        )
        checked += 1
    assert checked >= 2
    if "audit-verify" in components(build):
        assert checked >= 3


def test_console_flags_exist() -> None:
    known = help_flags("console")
    assert known is not None, "`detector console --help` fails"
    checked = 0
    for _, c, command in detector_containers(rendered("console")):
        if command == ("console",):
            assert set(flags_of(c["args"][1:])) <= known
            checked += 1
    assert checked == 1


def test_help_flags_reads_real_flags() -> None:
    assert {"--transactional-id", "--config", "--http-port"} <= set(help_flags("run") or ())
    assert "--transactional-id" not in (help_flags("route") or ())
    assert {"--config", "--public-key"} <= set(help_flags(("audit", "verify")) or ())
    assert help_flags(("audit", "verfiy")) is None


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


def _secret_files(pod: Obj, c: Obj) -> dict[str, tuple[str, str | None]]:
    """Where each Secret volume mounted in ``c`` puts files: mount path -> (secret name,
    None for every key of the Secret) and file path -> (secret name, key) for ``items``."""
    volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
    out: dict[str, tuple[str, str | None]] = {}
    for mount in c.get("volumeMounts", []):
        secret = volumes.get(mount["name"])
        if secret is None:
            continue
        items = secret.get("items")
        if not items:
            out[mount["mountPath"]] = (secret["secretName"], None)
        for item in items or ():
            out[f"{mount['mountPath']}/{item['path']}"] = (secret["secretName"], item["key"])
    return out


def _in_secret(path: str, files: dict[str, tuple[str, str | None]]) -> bool:
    """Whether a mounted Secret puts a file at ``path``."""
    return path in files or any(
        key is None and path.startswith(where + "/") for where, (_, key) in files.items()
    )


#: Flags of `detector` commands that name a file from a Secret.
SECRET_FILE_FLAGS = ("--public-key", "--token-file")


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
    for obj in workloads(objects):
        pod = _pod(obj)
        for c in pod["containers"]:
            mounts = _secret_mounts(pod, c)
            files = _secret_files(pod, c)
            for e in c.get("env", []):
                assert "secretKeyRef" not in e.get("valueFrom", {}), (c["name"], e["name"])
                if is_secret_key(e["name"]):
                    assert e["name"].endswith("_FILE"), (c["name"], e["name"])
                if e["name"].endswith("_FILE"):  # a file the code reads: from a Secret
                    assert _in_secret(e.get("value", ""), files), (c["name"], e)
            for flag in SECRET_FILE_FLAGS:
                value = flag_value(c.get("args", []), flag)
                if value is not None:
                    assert _in_secret(value, files), (c["name"], flag, value)
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
    for obj in workloads(objects):
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


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_containers_set_only_variables_the_code_reads(build: str) -> None:
    """Each variable a detector container sets is one the code reads, or one its args
    expand (``$(POD_NAME)``)."""
    for workload, c, _ in detector_containers(rendered(build)):
        expanded = set(re.findall(r"\$\((\w+)\)", " ".join(c["args"])))
        names = {e["name"] for e in c.get("env", [])}
        assert names <= KNOWN_VARIABLES | expanded, (workload["metadata"]["name"], names)


# --- the audit signing key and the daily verification ---------------------------------------

SIGNING_SECRET = "drift-detector-audit-signing"
SIGNING_VARIABLE = "DETECTOR_AUDIT_SIGNING_KEY_FILE"


def _own_env(c: Obj) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def _settings_of(objects: tuple[Obj, ...], c: Obj, tmp_path: Path, **env: str) -> Any:
    """The settings `detector` reads in container ``c``: its --config (the mounted
    detector.yaml), the image's ENV, the env ConfigMap and its own env, then ``env``."""
    config = flag_value(c["args"], "--config")
    assert config == "/etc/drift-detector/detector.yaml", config
    path = tmp_path / "detector.yaml"
    path.write_text(configmap_file(objects, "detector.yaml"))
    return load_settings(path, env={**container_env(objects), **_own_env(c), **env})


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_the_sidecar_signs_with_the_key_file_of_the_mounted_secret(
    build: str, tmp_path: Path
) -> None:
    """With the audit-signing component, the sidecar's audit.signing_key_file is the path
    where the Secret's private key is mounted, and that variable is the one the code
    reads: with a real key at that path the config loads and names it. Without it, the
    sidecar does not sign and no pod mounts the Secret."""
    objects = rendered(build)
    sidecar = find(objects, "Deployment", "drift-detector")
    c = container(sidecar, "detector")
    path = _own_env(c).get(SIGNING_VARIABLE)
    if "audit-signing" not in components(build):
        assert path is None
        assert _settings_of(objects, c, tmp_path).audit.signing_key_file is None
        for obj in workloads(objects):
            for v in _pod(obj).get("volumes", []):
                assert v.get("secret", {}).get("secretName") != SIGNING_SECRET, obj
        return
    assert path is not None
    assert _secret_files(_pod(sidecar), c).get(path) == (SIGNING_SECRET, "ed25519.pem")
    private, _ = write_keys(tmp_path)
    settings = _settings_of(objects, c, tmp_path, **{SIGNING_VARIABLE: str(private)})
    assert settings.audit.enabled and settings.audit.signing_key_file == str(private)
    # The mounted path itself (which does not exist here) is what the sidecar is told.
    with pytest.raises(ConfigError, match=re.escape(f"signing_key_file: {path}: cannot read")):
        _settings_of(objects, c, tmp_path)


@pytest.mark.parametrize("build", ALL_BUILDS)
def test_only_the_sidecar_holds_the_private_key(build: str, tmp_path: Path) -> None:
    """The console and the verification read the same detector.yaml, and neither is given
    the private key: their config loads without it and signs nothing."""
    objects = rendered(build)
    for workload, c, command in detector_containers(objects):
        pod = _pod(workload)
        private = [
            where
            for where, (secret, key) in _secret_files(pod, c).items()
            if secret == SIGNING_SECRET and key in (None, "ed25519.pem")
        ]
        if command == ("run",) and "audit-signing" in components(build):
            assert private == ["/var/run/secrets/audit/ed25519.pem"]
        elif command != ("route",):
            assert not private, (workload["metadata"]["name"], private)
            assert SIGNING_VARIABLE not in _own_env(c)
            assert _settings_of(objects, c, tmp_path).audit.signing_key_file is None


def _cronjob(build: str) -> Obj:
    return find(rendered(build), "CronJob", "drift-audit-verify")


@pytest.mark.parametrize("build", [b for b in ALL_BUILDS if "audit-verify" in components(b)])
def test_audit_verify_runs_daily_on_the_sidecars_log_with_the_public_key(
    build: str, tmp_path: Path
) -> None:
    objects = rendered(build)
    cronjob = _cronjob(build)
    spec = cronjob["spec"]
    minute, hour, day, month, weekday = spec["schedule"].split()
    assert minute.isdigit() and hour.isdigit() and (day, month, weekday) == ("*", "*", "*")
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["failedJobsHistoryLimit"] >= 1  # the alert reads the failed Jobs
    job = spec["jobTemplate"]["spec"]
    assert "ttlSecondsAfterFinished" not in job
    pod = _pod(cronjob)
    assert pod["restartPolicy"] == "Never"
    c = container(cronjob, "verify")
    # A broken chain (exit 1) fails the Job at once, in the container that verifies.
    (rule,) = job["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"] == {"containerName": c["name"], "operator": "In", "values": [1]}
    # The sidecar's image, config, Kafka settings and credentials.
    sidecar = find(objects, "Deployment", "drift-detector")
    s = container(sidecar, "detector")
    assert c["image"] == s["image"]
    assert c["envFrom"] == s["envFrom"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    sidecar_volumes = {v["name"]: v for v in _pod(sidecar)["volumes"]}
    for name in ("config", "kafka-credentials"):
        assert volumes[name] == sidecar_volumes[name]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    sidecar_mounts = {m["name"]: m["mountPath"] for m in s["volumeMounts"]}
    for name in ("config", "kafka-credentials"):
        assert mounts[name] == sidecar_mounts[name]
    settings = _settings_of(objects, c, tmp_path)
    ours = sidecar_settings(objects, tmp_path)
    assert settings.audit.topic_for(settings.kafka) == ours.audit.topic_for(ours.kafka)
    assert settings.kafka.bootstrap_servers == ours.kafka.bootstrap_servers
    # The public key of the signing Secret, and only it.
    public = flag_value(c["args"], "--public-key")
    assert public is not None
    assert _secret_files(pod, c) == {
        "/var/run/secrets/kafka": ("drift-detector-kafka", None),
        public: (SIGNING_SECRET, "ed25519.pub.pem"),
    }
    assert COMPONENT_NEEDS["audit-verify"] <= components(build)


# --- alerting rules -------------------------------------------------------------------------


def _unexplained_metrics(expr: str) -> set[str]:
    """Metric names that are neither the code's (scraped by the live test) nor listed in
    KUBE_STATE_METRICS."""
    return {
        m
        for m in rule_metrics(expr)
        if m not in KUBE_STATE_METRICS and not m.startswith(CODE_METRIC_PREFIXES)
    }


@pytest.mark.parametrize("build", [b for b in ALL_BUILDS if "prometheus-operator" in components(b)])
def test_every_metric_a_rule_names_is_the_codes_or_an_allowed_kube_state_metric(
    build: str,
) -> None:
    rules = alerting_rules(rendered(build))
    assert rules
    used: set[str] = set()
    for group, rule in rules:
        names = rule_metrics(rule["expr"])
        assert names, rule["alert"]
        assert not _unexplained_metrics(rule["expr"]), (rule["alert"], names)
        kube = names & KUBE_STATE_METRICS
        # A group reads either the code's metrics or kube-state-metrics', not both, so
        # the live test knows which process must export a group's metrics.
        assert not kube or kube == names, (group, rule["alert"])
        assert bool(kube) == (group in KUBE_GROUPS), (group, rule["alert"])
        used |= names
    assert used >= KUBE_STATE_METRICS, KUBE_STATE_METRICS - used  # the list stays true
    # The check can fail: a misspelt kube-state-metrics name is not allowed.
    assert _unexplained_metrics("kube_pod_container_status_last_terminated_exit_code == 3")


KUBE_GROUPS = {"drift-detector.kubernetes", "drift-detector.audit-verify"}


def _regex(labels: dict[str, tuple[str, str]], name: str) -> re.Pattern[str] | None:
    if name not in labels:
        return None
    operator, value = labels[name]
    assert operator in ("=", "=~"), (name, operator)
    return re.compile(value if operator == "=~" else re.escape(value))


@pytest.mark.parametrize("build", [b for b in ALL_BUILDS if "prometheus-operator" in components(b)])
def test_kube_state_metrics_selectors_match_the_rendered_pods_and_cronjob(build: str) -> None:
    """Each container/pod selector selects the containers of the Deployments' pods it
    means (pod names: <deployment>-<replicaset hash>-<suffix>), and the CronJob rules
    name the CronJob the audit-verify component renders."""
    objects = rendered(build)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    checked = 0
    for group, rule in alerting_rules(objects):
        if group not in KUBE_GROUPS:
            continue
        for metric, labels in rule_selectors(rule["expr"]):
            containers = _regex(labels, "container")
            if containers is not None:
                pods = _regex(labels, "pod")
                assert pods is not None, (rule["alert"], metric)
                selected = [
                    (d["metadata"]["name"], c["name"])
                    for d in deployments
                    for c in _pod(d)["containers"]
                    if containers.fullmatch(c["name"])
                    and pods.fullmatch(f"{d['metadata']['name']}-5d8f7c9b64-x7k2q")
                ]
                assert ("drift-detector", "detector") in selected, (rule["alert"], metric)
                assert all(
                    (name, c) in {("drift-detector", "detector"), ("drift-router", "router")}
                    for name, c in selected
                ), selected
                checked += 1
            for label in ("owner_name", "cronjob"):
                if label in labels:
                    assert labels[label] == ("=", "drift-audit-verify"), (rule["alert"], label)
                    if "audit-verify" in components(build):
                        find(objects, "CronJob", labels[label][1])
                    checked += 1
    assert checked >= 6


def test_fatal_exit_rule_watches_the_exit_code_the_cli_stops_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A state that cannot be restored stops `detector run` with the exit code the rule
    DriftDetectorFatalExit looks for."""
    import detector.cli
    from detector.core.state import StateFormatError

    def fails(args: Any) -> int:
        raise StateFormatError("partition 0: not a detector state")

    monkeypatch.setattr(detector.cli, "_cmd_run", fails)
    code = detector.cli.main(["run"])
    rules = {r["alert"]: r for _, r in alerting_rules(rendered("standalone"))}
    expr = rules["DriftDetectorFatalExit"]["expr"]
    assert re.search(
        r"kube_pod_container_status_last_terminated_exitcode\{[^}]*\}\) == (\d+)", expr
    )
    (wanted,) = re.findall(r"\) == (\d+)", expr)
    assert code == int(wanted) == 3
