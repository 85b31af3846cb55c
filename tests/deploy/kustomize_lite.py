"""A small renderer for the subset of Kustomize that deploy/kubernetes uses.

No kustomize binary can be installed here (only PyPI, npm and Debian packages are
reachable), so the tests render the overlays with this. It implements, with Kustomize's
meaning:

- ``resources`` (files, and directories holding a kustomization), ``components``
  (directories holding a ``kind: Component``);
- ``configMapGenerator`` (``files``, ``envs``, ``literals``; ``behavior`` create, merge,
  replace) with ``generatorOptions.disableNameSuffixHash: true`` only (no hash suffixes, so
  no name references to rewrite);
- ``patches`` (``path`` or inline ``patch``; strategic merge when the patch is an object,
  JSON 6902 when it is a list of operations, which then needs a ``target``);
- ``namespace``, ``labels`` (``pairs`` on metadata only: ``includeSelectors`` and
  ``includeTemplates`` false), ``images`` (``newName``, ``newTag``), ``replicas``.

Anything else in a kustomization raises :class:`UnsupportedError`, so a manifest never
silently renders differently here than with ``kubectl kustomize``. Strategic merge
merges mappings key by key and lists of mappings that all have a ``name`` by name (the
patch strategy of containers, volumes, env, ports, volumeMounts); other lists are replaced.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_KNOWN_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "configMapGenerator",
    "generatorOptions",
    "patches",
    "namespace",
    "labels",
    "images",
    "replicas",
}
#: Kinds that are not namespaced (of those a manifest here could hold).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class UnsupportedError(Exception):
    """The kustomization uses a feature this renderer does not implement."""


def load_yaml_docs(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no kustomization file")


def build(directory: Path | str, kustomization: Obj | None = None) -> list[Obj]:
    """The objects ``kustomize build DIRECTORY`` would print, in resource order; with
    ``kustomization``, as if that mapping were DIRECTORY's kustomization file (an overlay
    with other components, say)."""
    return _build(Path(directory), expect_kind="Kustomization", k=kustomization)


def _build(directory: Path, expect_kind: str, k: Obj | None = None) -> list[Obj]:
    path = kustomization_file(directory)
    if k is None:
        k = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(k) - _KNOWN_KEYS
    if unknown:
        raise UnsupportedError(f"{path}: unsupported keys {sorted(unknown)}")
    kind = k.get("kind", "Kustomization")
    if kind != expect_kind:
        raise UnsupportedError(f"{path}: kind {kind!r}, expected {expect_kind!r}")

    objects: list[Obj] = []
    for entry in k.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects.extend(_build(target, "Kustomization"))
        else:
            objects.extend(load_yaml_docs(target))
    for entry in k.get("components", []):
        objects = _apply_component((directory / entry).resolve(), objects)
    _check_generator_options(path, k.get("generatorOptions"))
    for spec in k.get("configMapGenerator", []):
        _generate_configmap(directory, spec, objects)
    for patch in k.get("patches", []):
        _apply_patch(directory, patch, objects)
    if "namespace" in k:
        for obj in objects:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = k["namespace"]
    for label in k.get("labels", []):
        if label.get("includeSelectors") or label.get("includeTemplates"):
            raise UnsupportedError(f"{path}: labels with includeSelectors/includeTemplates")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for image in k.get("images", []):
        _set_image(image, objects)
    for replicas in k.get("replicas", []):
        found = [
            o
            for o in objects
            if o.get("kind") in _WORKLOADS and o["metadata"]["name"] == replicas["name"]
        ]
        if not found:
            raise ValueError(f"{path}: replicas: no workload named {replicas['name']!r}")
        for obj in found:
            obj["spec"]["replicas"] = replicas["count"]
    return objects


def _apply_component(directory: Path, objects: list[Obj]) -> list[Obj]:
    # A component's resources are added to, and its patches applied over, the parent's.
    path = kustomization_file(directory)
    k: Obj = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if k.get("kind") != "Component":
        raise UnsupportedError(f"{path}: a component must be kind: Component")
    unknown = set(k) - {"apiVersion", "kind", "resources", "patches"}
    if unknown:
        raise UnsupportedError(f"{path}: unsupported keys in a component {sorted(unknown)}")
    objects = list(objects)
    for entry in k.get("resources", []):
        objects.extend(load_yaml_docs((directory / entry).resolve()))
    for patch in k.get("patches", []):
        _apply_patch(directory, patch, objects)
    return objects


def _check_generator_options(path: Path, options: Obj | None) -> None:
    if options is None:
        return
    if set(options) != {"disableNameSuffixHash"} or options["disableNameSuffixHash"] is not True:
        raise UnsupportedError(f"{path}: generatorOptions other than disableNameSuffixHash: true")


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as Kustomize reads ``envs`` files (# comments and blanks skipped)."""
    data: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in stripped:
            raise ValueError(f"{path}:{number}: not KEY=VALUE")
        key, value = stripped.split("=", 1)
        data[key] = value
    return data


def _generate_configmap(directory: Path, spec: Obj, objects: list[Obj]) -> None:
    unknown = set(spec) - {"name", "files", "envs", "literals", "behavior"}
    if unknown:
        raise UnsupportedError(f"configMapGenerator {spec.get('name')}: {sorted(unknown)}")
    data: dict[str, str] = {}
    for entry in spec.get("files", []):
        key, _, file = entry.rpartition("=") if "=" in entry else ("", "", entry)
        file_path = directory / file
        data[key or file_path.name] = file_path.read_text(encoding="utf-8")
    for entry in spec.get("envs", []):
        data.update(parse_env_file(directory / entry))
    for entry in spec.get("literals", []):
        key, value = entry.split("=", 1)
        data[key] = value
    behavior = spec.get("behavior", "create")
    existing = [o for o in objects if o.get("kind") == "ConfigMap" and _name(o) == spec["name"]]
    if behavior == "create":
        if existing:
            raise ValueError(f"ConfigMap {spec['name']} exists: use behavior merge or replace")
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": spec["name"]},
                "data": data,
            }
        )
        return
    if len(existing) != 1:
        raise ValueError(f"ConfigMap {spec['name']}: behavior {behavior} needs one to exist")
    if behavior == "merge":
        existing[0].setdefault("data", {}).update(data)
    elif behavior == "replace":
        existing[0]["data"] = data
    else:
        raise UnsupportedError(f"configMapGenerator behavior {behavior!r}")


def _name(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name"))


def _apply_patch(directory: Path, patch: Obj, objects: list[Obj]) -> None:
    unknown = set(patch) - {"path", "patch", "target"}
    if unknown:
        raise UnsupportedError(f"patch keys {sorted(unknown)}")
    text = (
        (directory / patch["path"]).read_text(encoding="utf-8")
        if "path" in patch
        else patch["patch"]
    )
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(docs) == 1 and isinstance(docs[0], list):
        target = patch.get("target")
        if not target:
            raise ValueError("a JSON 6902 patch needs a target")
        matched = [o for o in objects if _matches(o, target)]
        if not matched:
            raise ValueError(f"patch target {target} matches nothing")
        for obj in matched:
            json6902(obj, docs[0])
        return
    for doc in docs:
        target = patch.get("target") or {"kind": doc.get("kind"), "name": _name(doc)}
        matched = [o for o in objects if _matches(o, target)]
        if not matched:
            raise ValueError(f"patch for {target} matches nothing")
        for obj in matched:
            merged = strategic_merge(obj, doc)
            obj.clear()
            obj.update(merged)


def _matches(obj: Obj, target: Obj) -> bool:
    unknown = set(target) - {"kind", "name", "group", "version"}
    if unknown:
        raise UnsupportedError(f"patch target keys {sorted(unknown)}")
    if "kind" in target and obj.get("kind") != target["kind"]:
        return False
    return "name" not in target or _name(obj) == target["name"]


def strategic_merge(base: Any, patch: Any) -> Any:
    """``patch`` merged into a copy of ``base`` (the subset described in the module doc)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and _named(base) and _named(patch):
        out_list = copy.deepcopy(base)
        index = {item["name"]: i for i, item in enumerate(out_list)}
        for item in patch:
            if item["name"] in index:
                i = index[item["name"]]
                out_list[i] = strategic_merge(out_list[i], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def _named(items: list[Any]) -> bool:
    return all(isinstance(item, dict) and "name" in item for item in items)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} must start with /")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json6902(obj: Obj, operations: list[Obj]) -> None:
    """Apply RFC 6902 ``add``, ``replace`` and ``remove`` operations in place."""
    for op in operations:
        parts = _pointer(op["path"])
        parent: Any = obj
        for part in parts[:-1]:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        last = parts[-1]
        kind = op["op"]
        if kind not in ("add", "replace", "remove"):
            raise UnsupportedError(f"JSON 6902 op {kind!r}")
        if isinstance(parent, list):
            if kind == "add":
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            elif kind == "replace":
                parent[int(last)] = op["value"]
            else:
                del parent[int(last)]
        else:
            if kind in ("replace", "remove") and last not in parent:
                raise KeyError(f"{op['path']}: no such member to {kind}")
            if kind == "remove":
                del parent[last]
            else:
                parent[last] = op["value"]


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(name, tag, digest) of an image reference (a registry port is not a tag)."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    name, tag = image, None
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        name, tag = image[:colon], image[colon + 1 :]
    return name, tag, digest


def pod_spec(obj: Obj) -> Obj | None:
    """The pod spec of a Pod, of a workload's pod template, or of a CronJob's job template
    (where Kustomize's images transformer looks too); None for other kinds."""
    spec = obj.get("spec", {})
    if obj.get("kind") == "Pod":
        return spec or None
    if obj.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    pod = spec.get("template", {}).get("spec")
    return pod or None


def pod_containers(obj: Obj) -> list[Obj]:
    """The containers and init containers of a workload's pod template (or a Pod)."""
    pod = pod_spec(obj)
    if not pod:
        return []
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def _set_image(entry: Obj, objects: list[Obj]) -> None:
    unknown = set(entry) - {"name", "newName", "newTag"}
    if unknown:
        raise UnsupportedError(f"images keys {sorted(unknown)}")
    for obj in objects:
        for container in pod_containers(obj):
            name, tag, digest = split_image(container["image"])
            if name != entry["name"]:
                continue
            name = entry.get("newName", name)
            tag = entry.get("newTag", tag)
            container["image"] = (
                name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
            )
