"""What the deployment tests share: the rendered overlays and ways to look into them."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kustomize_lite

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = ("standalone", "model-server", "console")
#: Every kustomization a team may build: the base and each overlay.
BUILDS = {"base": KUBERNETES / "base", **{o: KUBERNETES / "overlays" / o for o in OVERLAYS}}
#: The Kubernetes versions the manifests are validated against (kubernetes-validate's
#: bundled OpenAPI schemas): the oldest release still in common support and the newest.
KUBERNETES_VERSIONS = ("1.29.0", "1.34.0")

Obj = dict[str, Any]


@functools.cache
def rendered(name: str) -> tuple[Obj, ...]:
    return tuple(kustomize_lite.build(BUILDS[name]))


def find(objects: tuple[Obj, ...] | list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def container(deployment: Obj, name: str) -> Obj:
    for c in deployment["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name} in {deployment['metadata']['name']}")


#: (kind, name, container) of each detector process in the manifests, and its command.
DETECTOR_CONTAINERS = (
    ("drift-detector", "detector", "run"),
    ("drift-router", "router", "route"),
    ("drift-console", "console", "console"),
)


def detector_containers(objects: tuple[Obj, ...]) -> list[tuple[Obj, Obj, str]]:
    """(deployment, container, command) for every container that runs `detector`."""
    out = []
    for deployment_name, container_name, command in DETECTOR_CONTAINERS:
        for o in objects:
            if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment_name:
                out.append((o, container(o, container_name), command))
    return out


def flags_of(args: list[str]) -> list[str]:
    """The --flags in a container's args (``--x=v`` and ``--x v`` forms)."""
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


@functools.cache
def help_flags(command: str) -> frozenset[str] | None:
    """The flags ``detector COMMAND --help`` lists, or None when the command does not exist."""
    proc = subprocess.run(
        [sys.executable, "-m", "detector", command, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    if proc.returncode != 0:
        return None
    return frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", proc.stdout))


def configmap_file(objects: tuple[Obj, ...], key: str) -> str:
    cm = find(objects, "ConfigMap", "drift-detector-config")
    return str(cm["data"][key])


def dockerfile_instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        instruction, _, rest = full.partition(" ")
        out.append((instruction.upper(), rest.strip()))
    return out


def image_env() -> dict[str, str]:
    """The ENV the runtime stage of the image sets (the lowest layer of a container's env)."""
    env: dict[str, str] = {}
    stages = 0
    for instruction, rest in dockerfile_instructions():
        if instruction == "FROM":
            stages += 1
            env = {}
        elif instruction == "ENV":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                env[key] = value.strip('"')
    return env
