"""Test support for the integration tests: event streams, configs, sidecar processes."""

from __future__ import annotations

import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from detector.config import Settings, load_settings
from detector.core.engine import PartitionDetectors
from detector.core.records import InputRecord
from detector.kafka.runner import Sidecar

REPO = Path(__file__).resolve().parents[2]
BASE_TS_MS = 1_700_000_000_000

AlertKey = tuple[str, str, str, int, int]  # model, feature, drift_type, partition, offset


def prediction_events(
    model: str, n: int, *, shift_at: int, shift: float = 2.0, seed: int = 7
) -> list[dict[str, Any]]:
    """A seeded stream of one model's events; feature ``x`` shifts its mean at ``shift_at``."""
    rng = random.Random(f"{seed}-{model}")
    events = []
    for i in range(n):
        mu = shift if i >= shift_at else 0.0
        events.append(
            {
                "event_id": f"{model}-{i}",
                "model": model,
                "model_version": "v1",
                "timestamp": BASE_TS_MS + i * 1000,
                "features": {
                    "x": rng.gauss(mu, 1.0),
                    "y": rng.gauss(0.0, 1.0),
                    "c": rng.choice("abc"),
                },
                "prediction": rng.random(),
            }
        )
    return events


def wavy_events(
    model: str, n: int, *, period: int, shift: float = 3.0, seed: int = 11
) -> list[dict[str, Any]]:
    """Feature ``x`` jumps between two means every ``period`` events: drift, again and again."""
    rng = random.Random(f"{seed}-{model}")
    return [
        {
            "event_id": f"{model}-{i}",
            "model": model,
            "model_version": "v2",
            "timestamp": BASE_TS_MS + i * 1000,
            "features": {"x": rng.gauss(shift * ((i // period) % 2), 1.0), "y": rng.random()},
            "prediction": rng.gauss(0.0, 1.0),
        }
        for i in range(n)
    ]


#: Small windows and immediate re-arming: many alerts from a short stream.
DENSE_DETECTION = {"reference_size": 64, "window_size": 64, "block_size": 4, "rearm_after": 0}


def interleave(streams: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Round-robin merge that keeps each stream's order."""
    out: list[dict[str, Any]] = []
    for i in range(max(len(s) for s in streams)):
        out.extend(stream[i] for stream in streams if i < len(stream))
    return out


def write_config(
    path: Path, bootstrap: str, detection: dict[str, Any] | None = None, **kafka: Any
) -> Path:
    """A config file for the tests: short session timeout and checkpoint interval."""
    settings: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "session_timeout_ms": 6000,
            "checkpoint_interval_s": 0.5,
            **kafka,
        },
        "log": {"level": "info", "format": "json"},
    }
    if detection:
        settings["detection"] = detection
    path.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return path


def drifting_models(
    kafka: Any, unique: Any, tmp_path: Path, n: int, at: int, **extra: Any
) -> tuple[str, str, Path]:
    """Two models drifting at ``at`` of ``n`` events on a new 2-partition topic; the
    sidecar's config for it: (input topic, alert topic, config file)."""
    source = kafka.create_topic(unique("in"), partitions=2)
    events = interleave(
        [
            prediction_events("churn", n, shift_at=at),
            prediction_events("fraud", n, shift_at=at + n // 6, shift=1.5),
        ]
    )
    kafka.produce(source, events, keys=[e["model"].encode() for e in events])
    alert_topic = unique("alerts")
    config = write_config(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        input_topic=source,
        alert_topic=alert_topic,
        group_id=unique("group"),
        **extra,
    )
    return source, alert_topic, config


def with_audit(config: Path, **audit: Any) -> Path:
    """The config file, with these ``audit`` settings added."""
    tree = yaml.safe_load(config.read_text())
    tree["audit"] = {**(tree.get("audit") or {}), **audit}
    config.write_text(yaml.safe_dump(tree))
    return config


def run_through(kafka: Any, settings: Settings) -> None:
    """A sidecar in this process, until it has committed the whole input topic."""
    topic = settings.kafka.input_topic
    with sidecar_thread(settings):
        kafka.wait_committed(settings.kafka.group_id, topic, kafka.end_offsets(topic))


def settings_for(config: Path) -> Settings:
    return load_settings(config, env={})


def expected_alerts(settings: Settings, records: Sequence[Any]) -> set[AlertKey]:
    """Run the pure core over the input records (as read back from Kafka), per partition."""
    by_partition: dict[int, list[InputRecord]] = {}
    topic = settings.kafka.input_topic
    for r in records:
        by_partition.setdefault(r.partition, []).append(
            InputRecord(topic, r.partition, r.offset, r.value)
        )
    keys: set[AlertKey] = set()
    for partition, batch in by_partition.items():
        core = PartitionDetectors(settings.detection, topic, partition)
        core.set_max_message_bytes(settings.kafka.max_message_bytes)
        for d in core.process(batch).detections:
            keys.add((d.model, d.feature, d.drift_type, d.partition, d.offset))
    return keys


def alert_key_of(alert: dict[str, Any]) -> AlertKey:
    trig = alert["trigger"]
    return (
        alert["model"],
        alert["feature"],
        alert["drift_type"],
        trig["partition"],
        trig["offset"],
    )


@dataclass
class AlertView:
    """The alert topic as a read_committed consumer must see it, and what was aborted."""

    committed: list[AlertKey]
    aborted: list[AlertKey]
    open: list[AlertKey]
    librdkafka: list[AlertKey]  # what librdkafka's read_committed consumer returned


def alert_view(kafka: Any, topic: str) -> AlertView:
    """Read ``topic`` twice: with transaction markers applied here, and with librdkafka.

    On Tansu the two differ by the records of aborted transactions (it sends no aborted
    transaction list in Fetch responses, so librdkafka cannot drop them); on Kafka they agree.
    """
    import orjson
    from txnread import read_partition

    committed: list[AlertKey] = []
    aborted: list[AlertKey] = []
    still_open: list[AlertKey] = []
    for partition in kafka.partitions(topic):
        log = read_partition(kafka.bootstrap_servers, topic, partition)
        committed += [alert_key_of(orjson.loads(r.value)) for r in log.committed]
        aborted += [alert_key_of(orjson.loads(r.value)) for r in log.aborted]
        still_open += [alert_key_of(orjson.loads(r.value)) for r in log.open]
    seen = [alert_key_of(r.json()) for r in kafka.read_all(topic)]
    return AlertView(committed, aborted, still_open, seen)


def wait_open_alert(kafka: Any, topic: str, watch: Any, timeout_s: float = 20.0) -> bool:
    """Poll the alert topic until an alert of a still-open transaction is on the broker.

    That is the worst moment for a crash: delivered, not committed. False if none showed up
    (the work was done and committed first); ``watch`` is a process that must stay alive.
    """
    import time

    from txnread import read_partition

    deadline = time.monotonic() + timeout_s
    partitions = kafka.partitions(topic)
    while time.monotonic() < deadline:
        if watch.proc.poll() is not None:
            raise AssertionError(f"sidecar exited:\n{watch.output()[-3000:]}")
        for partition in partitions:
            if read_partition(kafka.bootstrap_servers, topic, partition).open:
                return True
        time.sleep(0.02)  # polling the broker's log: no event to wait on
    return False


def external_broker() -> bool:
    return bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))


@dataclass
class SidecarProcess:
    """``python -m detector run`` (or another ``command``, such as ``route``) as a child
    process, output captured to a file."""

    config: Path
    log_path: Path
    transactional_id: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_start: int = 0
    command: str = "run"
    ready_event: str = "sidecar starting"

    def start(self, wait_ready: bool = True) -> SidecarProcess:
        """Start; with ``wait_ready``, return once it has subscribed (signal handlers set)."""
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = [sys.executable, "-m", "detector", self.command, "--config", str(self.config)]
        if self.transactional_id:
            cmd += ["--transactional-id", self.transactional_id]
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        finally:
            out.close()
        if wait_ready:
            self.wait_event(self.ready_event)
        return self

    def events(self) -> list[dict[str, Any]]:
        """This incarnation's JSON log lines."""
        import orjson

        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            lines = f.read().splitlines()
        out = []
        for line in lines:
            if line.startswith(b"{"):
                try:
                    out.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue
        return out

    def wait_event(self, name: str, where: Any = None, timeout_s: float = 60.0) -> dict[str, Any]:
        """Poll the log until an event ``name`` (matching ``where``) shows up."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.events():
                if event.get("event") == name and (where is None or where(event)):
                    return event
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"sidecar exited:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {name!r} event within {timeout_s} s")
            time.sleep(0.02)  # polling a log file: no event to wait on

    def assignment(self) -> list[int]:
        """Partitions held according to the latest assign/revoke event."""
        held: list[int] = []
        for event in self.events():
            if event.get("event") == "partitions assigned":
                held = list(event["partitions"])
            elif event.get("event") in ("partitions revoked", "partitions lost"):
                held = []
        return held

    def terminate(self, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def wait(self, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def sidecar_thread(settings: Settings) -> Iterator[Sidecar]:
    """Run a Sidecar in a thread of the test process; stop and join on exit."""
    sidecar = Sidecar(settings)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            sidecar.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="sidecar", daemon=True)
    thread.start()
    try:
        yield sidecar
    finally:
        sidecar.stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "sidecar did not stop"
    if errors:
        raise errors[0]


# --- the HTTP endpoint and logs of a running sidecar ------------------------------------

Labels = tuple[tuple[str, str], ...]


def config_with_server(
    path: Path,
    bootstrap: str,
    *,
    port: int = 0,
    log: dict[str, str] | None = None,
    detection: dict[str, Any] | None = None,
    **kafka: Any,
) -> Path:
    """support.write_config plus a server port and log settings."""
    write_config(path, bootstrap, detection, **kafka)
    tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    tree["server"] = {"host": "127.0.0.1", "port": port}
    tree["log"] = log or {"level": "debug", "format": "json"}
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return path


def http_get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def scrape(port: int) -> dict[str, dict[Labels, float]]:
    """/metrics as {sample name: {sorted label pairs: value}}."""
    status, _, body = http_get(port, "/metrics")
    assert status == 200
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def by_label(samples: dict[str, dict[Labels, float]], name: str, *keys: str) -> dict[Any, float]:
    """The series of ``name`` keyed by the values of ``keys`` (one key: the value itself)."""
    out: dict[Any, float] = {}
    for labels, value in samples.get(name, {}).items():
        as_dict = dict(labels)
        key = tuple(as_dict[k] for k in keys)
        out[key[0] if len(key) == 1 else key] = value
    return out


def wait_checkpointed(sidecar: SidecarProcess, ends: dict[int, int]) -> None:
    """Wait for the checkpoints that committed ``ends``: their metrics are then updated."""
    for partition, end in ends.items():
        sidecar.wait_event(
            "checkpoint",
            where=lambda e, p=str(partition), end=end: e.get("offsets", {}).get(p, -1) >= end,
        )


_EMITTED = re.compile(rb'"emitted_at":"[^"]*"')


def without_emitted_at(lines: list[bytes]) -> list[bytes]:
    """Alert JSON lines, sorted, with ``emitted_at`` blanked (all that may differ)."""
    return sorted(_EMITTED.sub(b'"emitted_at":null', line) for line in lines)


#: Small windows, fairness on ``segment.sex`` and a short calibration: with
#: :func:`every_drift_type`'s events, an alert of each drift type.
EVERY_DRIFT_DETECTION = {
    "reference_size": 256,
    "window_size": 256,
    "block_size": 8,
    "segments": {"protected": ["sex"], "min_group_size": 100, "window": 2000},
    "estimated_performance": {"reference_size": 1000},
}


def every_drift_type(n: int = 20_000, seed: int = 3) -> list[dict[str, Any]]:
    """Three models whose streams change halfway, between them every drift type:

    - ``churn`` (``n // 2`` events): ``x``'s mean, ``y``'s variance, ``c``'s categories,
      ``z``'s missing rate and the prediction all change;
    - ``credit``: the approval scores of ``segment.sex`` F fall and those of M rise, the
      overall scores keep their distribution (fairness), labels inline;
    - ``score``: calibrated scores become less confident (estimated performance, and the
      labelled error rate rises: performance), labels inline."""
    rng = random.Random(seed)
    churn, credit, score = [], [], []
    for i in range(n // 2):
        after = i >= n // 4
        features: dict[str, Any] = {
            "x": rng.gauss(2.0 if after else 0.0, 1.0),
            "y": rng.gauss(0.0, 3.0 if after else 1.0),
            "c": rng.choice("aaaab" if after else "abc"),
        }
        if rng.random() >= (0.5 if after else 0.02):
            features["z"] = rng.random()
        churn.append(
            {
                "event_id": f"churn-{i}",
                "model": "churn",
                "model_version": "v1",
                "timestamp": BASE_TS_MS + i * 1000,
                "features": features,
                "prediction": rng.random() * (0.3 if after else 1.0),
            }
        )
    for i in range(n):
        after = i >= n // 2
        sex = rng.choice("FM")
        approval = rng.random()
        if after:
            upper = rng.random() < (0.3 if sex == "F" else 0.7)
            approval = 0.5 + approval / 2 if upper else approval / 2
        credit.append(
            {
                "event_id": f"credit-{i}",
                "model": "credit",
                "timestamp": BASE_TS_MS + i * 1000,
                "features": {"income": rng.gauss(50.0, 10.0)},
                "prediction": round(approval, 6),
                "label": int(rng.random() < approval),
                "segment": {"sex": sex, "region": rng.choice(["north", "south"])},
            }
        )
        z = rng.gauss(0.0, 0.7 if after else 3.0)
        p = 1.0 / (1.0 + math.exp(-z))
        score.append(
            {
                "event_id": f"score-{i}",
                "model": "score",
                "timestamp": BASE_TS_MS + i * 1000,
                "features": {"z": z},
                "prediction": round(p, 6),
                "label": int(rng.random() < p),
            }
        )
    return interleave([churn, credit, score])
