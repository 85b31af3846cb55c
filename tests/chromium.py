"""Headless Chromium (Debian's ``chromium``; ``make test`` installs it) driven over the
DevTools protocol (websockets): the HTML report's test (tests/unit/test_report.py) and the
review console's (tests/integration/test_console.py)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"


class Chromium:
    """Headless Chromium and one page, over the DevTools protocol (websockets)."""

    def __init__(self, user_data: Path) -> None:
        if not os.access(CHROMIUM, os.X_OK):
            pytest.fail(
                f"{CHROMIUM} is missing: `make test` installs it (as root), or run "
                "'apt-get install chromium'"
            )
        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={user_data}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: stopped whole in close()
        )
        self.stderr: list[str] = []
        self.closing = contextlib.ExitStack()
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.lines: queue.Queue[str | None] = queue.Queue()
        lines = self.lines

        def drain() -> None:
            assert self.process.stderr is not None
            for raw in self.process.stderr:
                line = raw.decode("utf-8", "replace")
                self.stderr.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()

    def connect(self) -> None:
        """Wait for DevTools (its port on standard error) and attach to the page."""
        lines = self.lines
        port = None
        while port is None:
            try:
                line = lines.get(timeout=60)
            except queue.Empty:
                pytest.fail("Chromium did not open DevTools within 60 s")
            if line is None:
                pytest.fail(f"Chromium exited: {''.join(self.stderr)[-2000:]}")
            found = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if found:
                port = int(found.group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
            targets = json.loads(answer.read())
        page = next(t for t in targets if t["type"] == "page")
        from websockets.sync.client import connect

        self.socket = self.closing.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        )

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a method; events received meanwhile are kept in ``events``."""
        self.next_id += 1
        mine = self.next_id
        self.socket.send(json.dumps({"id": mine, "method": method, "params": params}))
        for message in self._messages():
            if message.get("id") == mine:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})  # type: ignore[no-any-return]
        raise AssertionError("unreachable")

    def wait_for(self, method: str) -> dict[str, Any]:
        """The next event ``method`` (earlier ones are in ``events`` too)."""
        for message in self._messages():
            if message.get("method") == method:
                return message
        raise AssertionError("unreachable")

    def errors(self) -> list[dict[str, Any]]:
        """The page's errors so far: uncaught exceptions, console errors, log errors
        (blocked loads and CSP violations among them)."""
        return [
            e
            for e in self.events
            if e["method"] == "Runtime.exceptionThrown"
            or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
            or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        ]

    def _messages(self) -> Iterator[dict[str, Any]]:
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if "method" in message:
                self.events.append(message)
            yield message

    def close(self) -> None:
        try:
            self.closing.close()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
