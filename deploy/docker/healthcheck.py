#!/usr/bin/env python3
"""The image's HEALTHCHECK: GET /healthz of the detector process in this container.

The port is ``$DETECTOR_HEALTHCHECK_PORT`` when set; else, when the container runs
``detector route`` (PID 1's command line), ``$DETECTOR_ROUTER_HTTP_PORT`` (8081); else
``$DETECTOR_HTTP_PORT`` (8080). Exit 0 when /healthz answers 200, 1 otherwise. Standard
library only: the runtime image has no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path


def command_of(cmdline_path: Path) -> list[str]:
    try:
        raw = cmdline_path.read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def health_port(environ: Mapping[str, str], command: list[str]) -> int:
    if environ.get("DETECTOR_HEALTHCHECK_PORT"):
        return int(environ["DETECTOR_HEALTHCHECK_PORT"])
    if "route" in command:
        return int(environ.get("DETECTOR_ROUTER_HTTP_PORT") or 8081)
    return int(environ.get("DETECTOR_HTTP_PORT") or 8080)


def check(port: int, host: str = "127.0.0.1", timeout_s: float = 4.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout_s) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    port = health_port(os.environ, command_of(Path("/proc/1/cmdline")))
    return 0 if check(port) else 1


if __name__ == "__main__":
    sys.exit(main())
