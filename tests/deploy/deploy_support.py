"""What the deployment tests share: the rendered overlays and ways to look into them."""

from __future__ import annotations

import functools
import itertools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kustomize_lite
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = ("standalone", "model-server", "console")
#: The components an overlay may name (deploy/README.md), and the components each needs.
COMPONENT_NEEDS: dict[str, frozenset[str]] = {
    "prometheus-operator": frozenset(),
    "audit-signing": frozenset(),
    # The CronJob checks signatures with the public key of audit-signing's Secret.
    "audit-verify": frozenset({"audit-signing"}),
}
#: Overlays whose components a team may drop, one by one ("drop this line ...").
TRIMMABLE = ("standalone", "model-server")

Obj = dict[str, Any]


def _kustomization(directory: Path) -> Obj:
    tree: Obj = yaml.safe_load(kustomize_lite.kustomization_file(directory).read_text())
    return tree


def _component_names(directory: Path) -> tuple[str, ...]:
    return tuple(Path(c).name for c in _kustomization(directory).get("components", []))


def _variants() -> dict[str, tuple[Path, tuple[str, ...]]]:
    """Each trimmable overlay with each subset of its components that keeps what the
    remaining ones need: (directory, components) by name, e.g. ``standalone-without-
    audit-signing+audit-verify``."""
    out: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for overlay in TRIMMABLE:
        directory = KUBERNETES / "overlays" / overlay
        names = _component_names(directory)
        for n in range(len(names)):
            for kept in itertools.combinations(names, n):
                if any(not COMPONENT_NEEDS[c] <= set(kept) for c in kept):
                    continue
                dropped = "+".join(c for c in names if c not in kept)
                out[f"{overlay}-without-{dropped}"] = (directory, kept)
    return out


VARIANTS = _variants()
#: Every kustomization a team may build: the base, each overlay, and each trimmable
#: overlay with fewer of its components.
BUILDS = {
    "base": KUBERNETES / "base",
    **{o: KUBERNETES / "overlays" / o for o in OVERLAYS},
    **{name: directory for name, (directory, _) in VARIANTS.items()},
}
#: The Kubernetes versions the manifests are validated against (kubernetes-validate's
#: bundled OpenAPI schemas): the oldest release still in common support and the newest.
KUBERNETES_VERSIONS = ("1.29.0", "1.34.0")


@functools.cache
def rendered(name: str) -> tuple[Obj, ...]:
    if name in VARIANTS:
        directory, kept = VARIANTS[name]
        tree = _kustomization(directory)
        tree["components"] = [f"../../components/{c}" for c in kept]
        return tuple(kustomize_lite.build(directory, tree))
    return tuple(kustomize_lite.build(BUILDS[name]))


@functools.cache
def components(name: str) -> frozenset[str]:
    """The components a build includes, its parents' included."""
    if name in VARIANTS:
        return frozenset(VARIANTS[name][1])
    directory = BUILDS[name]
    found = set(_component_names(directory))
    for resource in _kustomization(directory).get("resources", []):
        parent = (directory / resource).resolve()
        for other, path in BUILDS.items():
            if path.resolve() == parent and other not in VARIANTS:
                found |= components(other)
    return frozenset(found)


def find(objects: tuple[Obj, ...] | list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_of(workload: Obj) -> Obj:
    """The pod spec of a Deployment's or a CronJob's template."""
    pod = kustomize_lite.pod_spec(workload)
    assert pod is not None, f"{workload['kind']}/{workload['metadata']['name']}: no pod template"
    return pod


def workloads(objects: tuple[Obj, ...]) -> list[Obj]:
    """Every object with a pod template (Deployments, the CronJob)."""
    return [o for o in objects if o["kind"] in ("Deployment", "CronJob")]


def container(workload: Obj, name: str) -> Obj:
    for c in pod_of(workload)["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name} in {workload['metadata']['name']}")


#: (kind, name, container) of each detector process in the manifests, and its command.
DETECTOR_CONTAINERS = (
    ("Deployment", "drift-detector", "detector", ("run",)),
    ("Deployment", "drift-router", "router", ("route",)),
    ("Deployment", "drift-console", "console", ("console",)),
    ("CronJob", "drift-audit-verify", "verify", ("audit", "verify")),
)


def detector_containers(objects: tuple[Obj, ...]) -> list[tuple[Obj, Obj, tuple[str, ...]]]:
    """(workload, container, command) for every container that runs `detector`."""
    out = []
    for kind, workload_name, container_name, command in DETECTOR_CONTAINERS:
        for o in objects:
            if o["kind"] == kind and o["metadata"]["name"] == workload_name:
                out.append((o, container(o, container_name), command))
    return out


def flags_of(args: list[str]) -> list[str]:
    """The --flags in a container's args (``--x=v`` and ``--x v`` forms)."""
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of ``--flag=value`` or ``--flag value`` in ``args`` (None without it)."""
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None


@functools.cache
def help_flags(command: str | tuple[str, ...]) -> frozenset[str] | None:
    """The flags ``detector COMMAND --help`` lists, or None when the command does not exist."""
    words = (command,) if isinstance(command, str) else command
    proc = subprocess.run(
        [sys.executable, "-m", "detector", *words, "--help"],
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


# --- alerting rules -------------------------------------------------------------------------

#: The kube-state-metrics series the PrometheusRule may use: explicitly allowed here, as
#: the code does not export them (every other metric a rule names must be scraped from the
#: running sidecar or router, tests/deploy/test_deploy_live.py). Names as in
#: kube-state-metrics v2.7.0 and later (docs/metrics/workload/{pod,job,cronjob}-metrics.md;
#: last_terminated_exitcode is new in v2.7.0, cronjob_status_last_successful_time in v2.5.0).
KUBE_STATE_METRICS = frozenset(
    {
        "kube_pod_container_status_last_terminated_exitcode",
        "kube_pod_container_status_last_terminated_reason",
        "kube_pod_container_status_restarts_total",
        "kube_job_failed",
        "kube_job_owner",
        "kube_cronjob_status_last_successful_time",
        "kube_cronjob_created",
    }
)
#: Metric name prefixes of the code's own metrics (prometheus_client's process collector
#: included).
CODE_METRIC_PREFIXES = ("drift_detector_", "drift_router_", "process_")

_PROMQL_WORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan"}
    # Aggregation operators, which may stand before their by/without clause.
    | {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile"}
)


def rule_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions
    (followed by ``(``), keywords, label names in ``by/on/...(...)`` or matchers
    (``{...}``), durations (``[...]``) or strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r" \1 ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name in _PROMQL_WORDS:
            continue
        names.add(name)
    return names


def rule_selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(metric, {label: (operator, value)}) of each ``metric{...}`` selector in ``expr``."""
    out = []
    for match in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr):
        labels = {
            m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', match.group(2))
        }
        out.append((match.group(1), labels))
    return out


def alerting_rules(objects: tuple[Obj, ...]) -> list[tuple[str, Obj]]:
    """(group name, rule) of every rule of every PrometheusRule."""
    return [
        (group["name"], rule)
        for o in objects
        if o["kind"] == "PrometheusRule"
        for group in o["spec"]["groups"]
        for rule in group["rules"]
    ]
