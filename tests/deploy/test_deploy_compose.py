"""The Compose stack (deploy/compose): valid against the Compose Specification's JSON
schema, Kafka in KRaft mode on a pinned apache/kafka image, and configs and flags the
detector accepts."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_support import DEPLOY, flags_of, help_flags

from detector.config import load_settings
from detector.router.settings import load_router_settings

COMPOSE = DEPLOY / "compose"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"


def compose() -> dict[str, Any]:
    tree: dict[str, Any] = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    return tree


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "http://json-schema.org/draft/2019-09/schema#"
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_is_valid() -> None:
    errors = [e.message for e in validator().iter_errors(compose())]
    assert not errors, errors


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t["services"]["kafka"].update(healthcheck={"test": "x", "intervall": "5s"}),
        lambda t: t["services"]["detector"].update(depends_on={"kafka": {"condition": "healthy"}}),
        lambda t: t.update(servics={}),
    ],
)
def test_schema_rejects_a_broken_file(mutate: Any) -> None:
    tree = copy.deepcopy(compose())
    mutate(tree)
    assert list(validator().iter_errors(tree))


def test_kafka_is_kraft_on_a_pinned_official_image() -> None:
    services = compose()["services"]
    for name in ("kafka", "topics"):
        assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", services[name]["image"]), name
    env = services["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert not [k for k in env if "ZOOKEEPER" in k]
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1  # one node, transactions
    for name, service in services.items():
        assert not str(service.get("image", "")).endswith(":latest"), name


def test_every_service_of_the_path_is_there() -> None:
    assert {"kafka", "detector", "router", "receiver", "alertmanager", "producer"} <= set(
        compose()["services"]
    )


def test_detector_commands_flags_and_configs(tmp_path: Path) -> None:
    services = compose()["services"]
    configs = compose()["configs"]
    env = services["detector"]["environment"]
    for name, command in (("detector", "run"), ("router", "route")):
        args = services[name]["command"]
        assert args[0] == command
        assert set(flags_of(args[1:])) <= (help_flags(command) or set()), name
    detector = load_settings(COMPOSE / configs["detector"]["file"], env=env)
    assert detector.server.host == "0.0.0.0"
    assert (
        f"127.0.0.1:{detector.server.port}:{detector.server.port}" in services["detector"]["ports"]
    )
    assert detector.kafka.input_topic in services["topics"]["command"][4]
    # The router's secret file is the Compose secret's target.
    text = (COMPOSE / configs["router"]["file"]).read_text()
    (secret,) = services["router"]["secrets"]
    assert f"api_url_file: {secret['target']}" in text
    local = tmp_path / "slack-url"
    local.write_text((COMPOSE / compose()["secrets"][secret["source"]]["file"]).read_text())
    (tmp_path / "router.yaml").write_text(text.replace(secret["target"], str(local)))
    router = load_router_settings(tmp_path / "router.yaml", env=env)
    assert f"127.0.0.1:{router.server.port}:{router.server.port}" in services["router"]["ports"]
    assert router.kafka.alert_topic == detector.kafka.alert_topic


def test_local_receiver_answers_ok_and_prints_the_body() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(COMPOSE / "receiver.py"), "--host=127.0.0.1", "--port=0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # --port=0 binds a free port; find it from /proc (the process prints only bodies).
        port = _listening_port(proc.pid)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/slack", data=b'{"text": "hi"}', method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and response.read() == b"ok"
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == '/slack {"text": "hi"}'
    finally:
        proc.kill()
        proc.wait()


def _listening_port(pid: int, timeout_s: float = 20.0) -> int:
    import os
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        inodes = set()
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            raise AssertionError("receiver exited") from None
        for fd in fds:
            try:  # a descriptor listed a moment ago may be closed by now (start-up imports)
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] == "0A":  # LISTEN
                return int(fields[1].split(":")[1], 16)
        time.sleep(0.05)  # waiting for a child to bind: no event to wait on
    raise AssertionError("receiver did not listen")
