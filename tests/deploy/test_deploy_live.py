"""The manifests against the running code: the real sidecar and router, started with the
rendered configs and container args on the embedded broker, answer the manifests' probe
paths, export every metric (and label) the alerting rules use, and stop on SIGTERM within
the pods' grace periods. The Compose producer script feeds the sidecar."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import (
    DEPLOY,
    KUBE_STATE_METRICS,
    REPO,
    alerting_rules,
    configmap_file,
    container,
    find,
    image_env,
    rendered,
    rule_metrics,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

#: Labels Prometheus adds to every scraped series (target labels), not the code.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "le"}
#: The process that exports the metrics of each rule group of the PrometheusRule. The
#: kube-state-metrics groups have none: their names must be in KUBE_STATE_METRICS, the
#: explicit list of what the rules take from kube-state-metrics.
EXPORTER = {
    "drift-detector.sidecar": "sidecar",
    "drift-detector.router": "router",
    "drift-detector.kubernetes": None,
    "drift-detector.audit-verify": None,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait_until(
    check: Any, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90.0
) -> Any:
    """Poll ``check()`` (an HTTP endpoint of a child: no event to wait on) until truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def scrape(port: int) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
    """(family name -> type, sample name -> label sets) of /metrics."""
    status, body = http_get(port, "/metrics")
    assert status == 200
    families: dict[str, str] = {}
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        families[family.name] = family.type
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return families, samples


def exported(name: str, families: dict[str, str], samples: dict[str, Any]) -> bool:
    if name in samples or name in families:
        return True
    for suffix, kind in (
        ("_total", "counter"),
        ("_count", "histogram"),
        ("_bucket", "histogram"),
        ("_sum", "histogram"),
    ):
        if name.endswith(suffix) and families.get(name.removesuffix(suffix)) == kind:
            return True
    return False


def rule_group(prefix: str) -> list[dict[str, Any]]:
    rule = find(rendered("standalone"), "PrometheusRule", "drift-detector")
    (group,) = [g for g in rule["spec"]["groups"] if g["name"] == prefix]
    return list(group["rules"])


def test_every_rule_group_names_the_process_that_exports_its_metrics() -> None:
    """No rule goes unchecked: each group's metrics are scraped from the process EXPORTER
    names, or (no process) each one is an allowed kube-state-metrics series."""
    groups = {g for g, _ in alerting_rules(rendered("standalone"))}
    assert groups == set(EXPORTER)
    for group, rule in alerting_rules(rendered("standalone")):
        names = rule_metrics(rule["expr"])
        assert names
        if EXPORTER[group] is None:
            assert names <= KUBE_STATE_METRICS, (rule["alert"], names - KUBE_STATE_METRICS)
        else:
            assert not names & KUBE_STATE_METRICS, rule["alert"]


def grouping_labels(expr: str) -> set[str]:
    labels: set[str] = set()
    for group in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        labels |= {x.strip() for x in group.split(",") if x.strip()}
    return labels - TARGET_LABELS


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of container args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg)


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "detector", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )


@pytest.fixture
def stack(
    bootstrap_servers: str, kafka: Any, unique: Any, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    objects = rendered("base")
    topic = kafka.create_topic(unique("predictions"), partitions=2)
    alerts = unique("alerts")
    pod_name = unique("drift-detector-pod")

    # The pod's environment: the image's ENV, the env ConfigMap, the Downward API; the
    # cluster and names pointed at this test's broker and topics.
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(image_env())
    env.update(find(objects, "ConfigMap", "drift-detector-env")["data"])
    sidecar_port, router_port = free_port(), free_port()
    env.update(
        POD_NAME=pod_name,
        DETECTOR_BOOTSTRAP_SERVERS=bootstrap_servers,
        DETECTOR_ROUTER_BOOTSTRAP_SERVERS=bootstrap_servers,
        DETECTOR_INPUT_TOPIC=topic,
        DETECTOR_ALERT_TOPIC=alerts,
        DETECTOR_ROUTER_ALERT_TOPIC=alerts,
        DETECTOR_GROUP_ID=unique("group"),
        DETECTOR_ROUTER_GROUP_ID=unique("router"),
        DETECTOR_HTTP_PORT=str(sidecar_port),
        DETECTOR_ROUTER_HTTP_PORT=str(router_port),
    )

    # The rendered config files, with the loopback instead of 0.0.0.0 and the test
    # broker's short session timeout; the router's secret files as local placeholders.
    detector_tree = yaml.safe_load(configmap_file(objects, "detector.yaml"))
    detector_tree["server"]["host"] = "127.0.0.1"
    detector_tree["kafka"]["session_timeout_ms"] = 6000
    (tmp_path / "detector.yaml").write_text(yaml.safe_dump(detector_tree))
    router_text = configmap_file(objects, "router.yaml")
    for path in set(re.findall(r"_file:\s*(\S+)", router_text)):
        local = tmp_path / Path(path).name
        local.write_text("a" * 32 if "routing" in path else "http://127.0.0.1:9/slack")
        router_text = router_text.replace(path, str(local))
    router_tree = yaml.safe_load(router_text)
    router_tree["server"]["host"] = "127.0.0.1"
    router_tree.setdefault("kafka", {})["session_timeout_ms"] = 6000
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(router_tree))

    sidecar_c = container(find(objects, "Deployment", "drift-detector"), "detector")
    router_c = container(find(objects, "Deployment", "drift-router"), "router")
    local_paths = {
        "/etc/drift-detector/detector.yaml": str(tmp_path / "detector.yaml"),
        "/etc/drift-detector/router.yaml": str(tmp_path / "router.yaml"),
    }

    def args_of(c: dict[str, Any]) -> list[str]:
        out = []
        for arg in c["args"]:
            arg = expand(arg, env)
            for remote, local in local_paths.items():
                arg = arg.replace(remote, local)
            out.append(arg)
        return out

    # Events: the Compose producer script (the demo's streams), and one bad record.
    produce = subprocess.run(
        [
            sys.executable,
            str(DEPLOY / "compose/produce.py"),
            f"--bootstrap-servers={bootstrap_servers}",
            f"--topic={topic}",
            "--events=600",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert produce.returncode == 0, produce.stderr
    produced = int(re.search(r"produced (\d+) events", produce.stdout).group(1))  # type: ignore[union-attr]
    kafka.produce(topic, [b"not json"], partition=0)

    sidecar_log, router_log = tmp_path / "sidecar.log", tmp_path / "router.log"
    sidecar = start(args_of(sidecar_c), env, sidecar_log)
    router = start(args_of(router_c), env, router_log)
    try:
        yield {
            "objects": objects,
            "sidecar": (sidecar, sidecar_port, sidecar_log, sidecar_c, args_of(sidecar_c)),
            "router": (router, router_port, router_log, router_c),
            "produced": produced + 1,
            "pod_name": pod_name,
        }
    finally:
        for proc in (sidecar, router):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_sidecar_and_router_answer_what_the_manifests_ask(stack: dict[str, Any]) -> None:
    objects = stack["objects"]
    sidecar, s_port, s_log, s_container, s_args = stack["sidecar"]
    router, r_port, r_log, r_container = stack["router"]
    assert f"--transactional-id={stack['pod_name']}" in s_args

    # The sidecar consumes everything and checkpoints it.
    def caught_up() -> bool:
        status, body = http_get(s_port, "/metrics")
        if status != 200:
            return False
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
        # Dead letters count once their checkpoint commits (the first checkpoint may be
        # the one that commits the audit log's assignment records alone).
        return (
            values.get("drift_detector_events_consumed_total", 0) >= stack["produced"]
            and values.get("drift_detector_checkpoint_duration_seconds_count", 0) >= 1
            and values.get("drift_detector_dead_letters_total", 0) >= 1
        )

    wait_until(caught_up, sidecar, s_log)

    # Every probe path of the sidecar's container answers 200 once caught up.
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        path = s_container[probe]["httpGet"]["path"]
        wait_until(lambda path=path: http_get(s_port, path)[0] == 200, sidecar, s_log)
    for probe in ("livenessProbe", "readinessProbe"):
        path = r_container[probe]["httpGet"]["path"]
        wait_until(lambda path=path: http_get(r_port, path)[0] == 200, router, r_log)

    # Every metric the rules use is exported, with the labels they group by.
    ports = {"sidecar": s_port, "router": r_port}
    for prefix, exporter in EXPORTER.items():
        if exporter is None:  # kube-state-metrics' (the test above)
            continue
        families, samples = scrape(ports[exporter])
        for rule in rule_group(prefix):
            for name in rule_metrics(rule["expr"]):
                assert exported(name, families, samples), f"{rule['alert']}: {name} not in /metrics"
                labels = grouping_labels(rule["expr"])
                if samples.get(name):  # (the router's: next test)
                    have = set().union(*(set(s) for s in samples[name]))
                    assert labels <= have, (rule["alert"], name, labels - have)
    # The dead-letter rule divides by reason-labelled series that now exist.
    _, samples = scrape(s_port)
    assert {s["reason"] for s in samples["drift_detector_dead_letters_total"]} == {"not_json"}
    assert {"topic", "partition"} <= set(samples["drift_detector_consumer_lag"][0])

    # The rules' job selector is the Service a ServiceMonitor scrapes (its default job).
    restore = [
        r
        for r in rule_group("drift-detector.sidecar")
        if r["alert"] == "DriftDetectorRestoreFailing"
    ]
    (job,) = re.findall(r'job="([^"]+)"', restore[0]["expr"])
    find(objects, "Service", job)

    # SIGTERM: both stop cleanly within their pods' grace periods.
    for proc, name in ((sidecar, "drift-detector"), (router, "drift-router")):
        grace = find(objects, "Deployment", name)["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=grace) == 0


def test_router_rule_labels_are_the_router_metrics_labels() -> None:
    """The router's dead-letter counter has no series until a notification fails, so its
    labels are read from the metric itself."""
    from detector.router.metrics import RouterMetrics

    metrics = RouterMetrics(process_metrics=False)
    for rule in rule_group("drift-detector.router"):
        labels = grouping_labels(rule["expr"])
        for name in rule_metrics(rule["expr"]):
            assert name == "drift_router_dead_letters_total"
            assert labels <= set(metrics.dead_letters._labelnames)
