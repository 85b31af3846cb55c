"""The Kustomize subset renderer (tests/deploy/kustomize_lite.py) does what Kustomize does."""

from __future__ import annotations

from pathlib import Path

import kustomize_lite as k
import pytest
import yaml


def write(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(yaml.safe_dump_all(content if isinstance(content, list) else [content]))


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "app", "labels": {"a": "1"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "x"}},
        "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {
                "containers": [
                    {"name": "main", "image": "app", "env": [{"name": "A", "value": "1"}]},
                    {"name": "other", "image": "registry:5000/other:1.0"},
                ]
            },
        },
    },
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    write(tmp_path / "base/deployment.yaml", DEPLOYMENT)
    write(tmp_path / "base/app.env", "# comment\nX=1\n\nY=two=2\n")
    write(tmp_path / "base/conf.yaml", "a: 1\n")
    write(
        tmp_path / "base/kustomization.yaml",
        {
            "resources": ["deployment.yaml"],
            "generatorOptions": {"disableNameSuffixHash": True},
            "configMapGenerator": [
                {"name": "files", "files": ["conf.yaml"]},
                {"name": "env", "envs": ["app.env"]},
            ],
            "images": [{"name": "app", "newTag": "0.1"}],
        },
    )
    return tmp_path


def test_base_generates_configmaps_and_tags_images(tree: Path) -> None:
    objs = k.build(tree / "base")
    assert [o["kind"] for o in objs] == ["Deployment", "ConfigMap", "ConfigMap"]
    assert objs[1]["data"] == {"conf.yaml": "a: 1\n"}
    assert objs[2]["data"] == {"X": "1", "Y": "two=2"}
    images = [c["image"] for c in objs[0]["spec"]["template"]["spec"]["containers"]]
    assert images == ["app:0.1", "registry:5000/other:1.0"]  # a registry port is no tag


def test_overlay_merges_patches_and_sets_values(tree: Path) -> None:
    write(tree / "overlay/extra.env", "Y=3\nZ=4\n")
    write(
        tree / "overlay/patch.yaml",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "app"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "main", "env": [{"name": "B", "value": "2"}]},
                            {"name": "added", "image": "side:1"},
                        ]
                    }
                }
            },
        },
    )
    write(
        tree / "overlay/kustomization.yaml",
        {
            "namespace": "ns",
            "resources": ["../base"],
            "labels": [{"pairs": {"team": "ml"}}],
            "images": [{"name": "app", "newName": "reg.example/app", "newTag": "0.2"}],
            "replicas": [{"name": "app", "count": 5}],
            "generatorOptions": {"disableNameSuffixHash": True},
            "configMapGenerator": [{"name": "env", "behavior": "merge", "envs": ["extra.env"]}],
            "patches": [
                {"path": "patch.yaml"},
                {
                    "target": {"kind": "Deployment", "name": "app"},
                    "patch": "- op: add\n  path: /metadata/labels/x~1y\n  value: z\n"
                    "- op: remove\n  path: /spec/template/spec/containers/1\n",
                },
            ],
        },
    )
    objs = k.build(tree / "overlay")
    deployment, _, env = objs
    assert {o["metadata"]["namespace"] for o in objs} == {"ns"}
    assert deployment["metadata"]["labels"] == {"a": "1", "x/y": "z", "team": "ml"}
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "x"}}  # not touched
    assert deployment["spec"]["replicas"] == 5
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main", "added"]  # merged, added, removed
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert containers[0]["image"] == "reg.example/app:0.2"
    assert env["data"] == {"X": "1", "Y": "3", "Z": "4"}


def test_component_adds_resources(tree: Path) -> None:
    write(
        tree / "comp/svc.yaml", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    )
    write(
        tree / "comp/kustomization.yaml",
        {
            "apiVersion": "kustomize.config.k8s.io/v1alpha1",
            "kind": "Component",
            "resources": ["svc.yaml"],
        },
    )
    write(tree / "o/kustomization.yaml", {"resources": ["../base"], "components": ["../comp"]})
    assert [o["kind"] for o in k.build(tree / "o")] == [
        "Deployment",
        "ConfigMap",
        "ConfigMap",
        "Service",
    ]


def test_images_and_namespace_reach_a_cronjobs_containers(tree: Path) -> None:
    """Kustomize's images transformer sets the image of a CronJob's job template too."""
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "job"},
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "app"}]}}}
            },
        },
    }
    write(tree / "comp/cronjob.yaml", cronjob)
    write(
        tree / "comp/kustomization.yaml",
        {"kind": "Component", "resources": ["cronjob.yaml"]},
    )
    write(
        tree / "o/kustomization.yaml",
        {
            "resources": ["../base"],
            "components": ["../comp"],
            "namespace": "ns",
            "images": [{"name": "app", "newName": "registry.example/app", "newTag": "2"}],
        },
    )
    (job,) = [o for o in k.build(tree / "o") if o["kind"] == "CronJob"]
    assert job["metadata"]["namespace"] == "ns"
    assert k.pod_containers(job) == [{"name": "c", "image": "registry.example/app:2"}]
    assert k.pod_spec({"kind": "Service", "spec": {"ports": []}}) is None


@pytest.mark.parametrize(
    ("kustomization", "error"),
    [
        ({"resources": ["../base"], "namePrefix": "x-"}, k.UnsupportedError),
        (
            {"resources": ["../base"], "generatorOptions": {"disableNameSuffixHash": False}},
            k.UnsupportedError,
        ),
        (
            {"resources": ["../base"], "labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]},
            k.UnsupportedError,
        ),
        ({"resources": ["../base"], "replicas": [{"name": "nope", "count": 1}]}, ValueError),
        (
            {
                "resources": ["../base"],
                "configMapGenerator": [{"name": "env", "literals": ["A=1"]}],
            },
            ValueError,
        ),
        (
            {
                "resources": ["../base"],
                "patches": [{"patch": "- op: add\n  path: /x\n  value: 1\n"}],
            },
            ValueError,
        ),
        (
            {
                "resources": ["../base"],
                "patches": [{"patch": "kind: Deployment\nmetadata: {name: nope}\n"}],
            },
            ValueError,
        ),
    ],
)
def test_what_it_does_not_implement_or_cannot_apply_is_an_error(
    tree: Path, kustomization: dict[str, object], error: type[Exception]
) -> None:
    """Unsupported features and patches that match nothing fail, never render silently."""
    write(tree / "bad/kustomization.yaml", kustomization)
    with pytest.raises(error):
        k.build(tree / "bad")


def test_strategic_merge_replaces_unnamed_lists_and_deletes_nulls() -> None:
    base = {"a": [1, 2], "b": {"c": 1, "d": 2}, "e": [{"name": "n", "v": 1}]}
    patch = {"a": [3], "b": {"d": None}, "e": [{"name": "n", "w": 2}]}
    assert k.strategic_merge(base, patch) == {
        "a": [3],
        "b": {"c": 1},
        "e": [{"name": "n", "v": 1, "w": 2}],
    }


def test_json6902_replace_of_a_missing_member_fails() -> None:
    with pytest.raises(KeyError):
        k.json6902({"a": {}}, [{"op": "replace", "path": "/a/b", "value": 1}])
