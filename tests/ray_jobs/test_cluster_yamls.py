"""The cluster examples of ray_jobs/clusters/, checked against the schemas their tools apply.

- cluster-launcher-aws.yaml: Ray's own ray-schema.json (what `ray up` validates with).
- kuberay-*.yaml: the openAPIV3Schema of KubeRay's CRDs (tests/ray_jobs/data/README.md says where
  from). Kubernetes prunes a field its schema does not know rather than refusing it, so beyond
  jsonschema (types, enums, required keys) every key must be a property of its schema node.
- Every node installs the project from requirements.lock, as `make install` does, on the ray the
  lock pins.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "ray_jobs" / "clusters"
KUBERAY_TAG = "v1.7.0"
KUBERAY_FILES = {"RayCluster": "kuberay-raycluster.yaml", "RayJob": "kuberay-rayjob.yaml"}
#: Kubernetes' ObjectMeta fields a manifest may set; the CRD schema leaves the root `metadata` open.
OBJECT_META = {"name", "namespace", "labels", "annotations", "generateName"}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTERS / name).read_text())


def locked_ray_version() -> str:
    match = re.search(r"^ray==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert match, "requirements.lock pins no ray"
    return match.group(1)


def crd_schema(kind: str) -> dict[str, Any]:
    path = ROOT / "tests" / "ray_jobs" / "data" / f"kuberay-{KUBERAY_TAG}-{kind.lower()}s-v1.schema.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()))


def pruned_keys(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Paths of the keys Kubernetes would silently drop: not a property of their schema node,
    which neither declares additionalProperties nor keeps unknown fields."""
    if isinstance(value, list):
        items = schema.get("items", {})
        return [key for i, item in enumerate(value) for key in pruned_keys(item, items, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return []
    properties = schema.get("properties", {})
    others = schema.get("additionalProperties")
    keeps_unknown = bool(others) or schema.get("x-kubernetes-preserve-unknown-fields", False)
    found = []
    for key, item in value.items():
        where = f"{path}.{key}"
        if key in properties:
            found += pruned_keys(item, properties[key], where)
        elif isinstance(others, dict):
            found += pruned_keys(item, others, where)
        elif not keeps_unknown:
            found.append(where)
    return found


def schema_errors(validator: jsonschema.protocols.Validator, document: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def crd_problems(manifest: dict[str, Any], kind: str) -> list[str]:
    """What the API server would refuse (jsonschema) or prune (unknown keys) in a KubeRay manifest."""
    schema = crd_schema(kind)
    problems = schema_errors(jsonschema.Draft4Validator(schema), manifest)  # OpenAPI 3.0 is draft 4's dialect
    body = {key: value for key, value in manifest.items() if key != "metadata"}
    problems += [f"{path[1:]}: not in the {kind} schema" for path in pruned_keys(body, schema, "")]
    unknown_meta = sorted(set(manifest.get("metadata", {})) - OBJECT_META)
    return problems + [f"metadata.{key}: not an ObjectMeta field" for key in unknown_meta]


def launcher_problems(config: dict[str, Any]) -> list[str]:
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    return schema_errors(jsonschema.Draft7Validator(schema), config)


def install_steps(commands: list[str]) -> list[str]:
    """The installs among shell commands, in order: 'uv' (with pip), 'lock' (uv, the whole lock),
    'project' (uv, without dependencies)."""
    steps = []
    for command in commands:
        if re.search(r"\bpip install .*\buv\b", command) and "uv pip" not in command:
            steps.append("uv")
        elif "uv pip install" in command and re.search(r"-r \S*requirements\.lock\b", command):
            steps.append("lock")
        elif "uv pip install" in command and "--no-deps" in command:
            steps.append("project")
    return steps


def dockerfile_runs() -> list[str]:
    """The Dockerfile's RUN commands, one entry per `&&`-joined command."""
    text = (CLUSTERS / "Dockerfile").read_text().replace("\\\n", " ")
    runs = [line[len("RUN ") :] for line in text.splitlines() if line.startswith("RUN ")]
    return [command.strip() for run in runs for command in run.split("&&")]


def images(value: Any) -> list[str]:
    """Every `image` of a KubeRay manifest's containers."""
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in ([item] if key == "image" else images(item))]
    if isinstance(value, list):
        return [found for item in value for found in images(item)]
    return []


def cluster_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["rayClusterSpec"] if manifest["kind"] == "RayJob" else manifest["spec"]


@pytest.mark.parametrize("kind", KUBERAY_FILES)
def test_kuberay_manifest_matches_the_crd(kind: str) -> None:
    manifest = load(KUBERAY_FILES[kind])
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", kind)
    assert crd_problems(manifest, kind) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda spec: spec["headGroupSpec"].update(rayStartParam=spec["headGroupSpec"].pop("rayStartParams")),
         "spec.headGroupSpec.rayStartParam: not in the RayCluster schema"),
        (lambda spec: spec["workerGroupSpecs"][1]["template"]["spec"]["containers"][0].update(volumeMount=[]),
         "spec.workerGroupSpecs[1].template.spec.containers[0].volumeMount: not in the RayCluster schema"),
        (lambda spec: spec["workerGroupSpecs"][0].pop("groupName"),
         "spec.workerGroupSpecs.0: 'groupName' is a required property"),
        (lambda spec: spec["workerGroupSpecs"][0].update(maxReplicas="16"),
         "spec.workerGroupSpecs.0.maxReplicas: '16' is not of type 'integer'"),
        (lambda spec: spec["authOptions"].update(mode="tokens"),
         "spec.authOptions.mode: 'tokens' is not one of ['disabled', 'token']"),
    ],
    ids=["misspelled-key", "misspelled-nested-key", "missing-required-key", "wrong-type", "bad-enum"],
)
def test_crd_check_catches_mistakes(change: Callable[[dict[str, Any]], Any], expected: str) -> None:
    manifest = load(KUBERAY_FILES["RayCluster"])
    change(manifest["spec"])
    assert expected in crd_problems(manifest, "RayCluster")


def test_crd_check_allows_open_maps_and_checks_metadata() -> None:
    manifest = load(KUBERAY_FILES["RayCluster"])
    manifest["spec"]["headGroupSpec"]["rayStartParams"]["any-ray-start-flag"] = "1"  # a string map
    manifest["metadata"]["label"] = {"team": "video"}
    assert crd_problems(manifest, "RayCluster") == ["metadata.label: not an ObjectMeta field"]


def test_launcher_yaml_matches_rays_schema() -> None:
    config = load("cluster-launcher-aws.yaml")
    assert launcher_problems(config) == []
    assert config["provider"]["type"] == "aws"
    # and `ray up`'s own checks before it asks AWS for anything (node types, worker counts, ...)
    validate_config(prepare_config(config))


def test_launcher_check_catches_mistakes() -> None:
    config = load("cluster-launcher-aws.yaml")
    config["setup_command"] = config.pop("setup_commands")
    del config["provider"]
    problems = launcher_problems(config)
    assert "<root>: 'provider' is a required property" in problems
    assert any("'setup_command' was unexpected" in problem for problem in problems)


def test_every_node_installs_from_the_lock() -> None:
    assert install_steps(dockerfile_runs()) == ["uv", "lock", "project"]
    config = load("cluster-launcher-aws.yaml")
    assert install_steps(config["setup_commands"]) == ["uv", "lock", "project"]
    # the lock the setup commands name is the one file_mounts ships
    assert config["file_mounts"]["/home/ray/lavie"] == "."
    assert all("/home/ray/lavie" in command for command in config["setup_commands"] if "uv pip" in command)


def test_install_steps_sees_a_missing_lock() -> None:
    assert install_steps(["pip install uv", "uv pip install -r requirements.txt", "uv pip install --no-deps ."]) == [
        "uv",
        "project",
    ]


def test_images_run_the_locked_ray() -> None:
    version = locked_ray_version()
    base = re.search(r"^FROM (\S+)", (CLUSTERS / "Dockerfile").read_text(), re.MULTILINE)
    assert base and base.group(1).startswith(f"rayproject/ray:{version}-")
    assert load("cluster-launcher-aws.yaml")["docker"]["image"].startswith(f"rayproject/ray:{version}-")
    for name in KUBERAY_FILES.values():
        manifest = load(name)
        assert cluster_spec(manifest)["rayVersion"] == version
        tags = {image.rsplit(":", 1)[1] for image in images(manifest)}
        assert tags == {version}, f"{name}: images {sorted(tags)}, the lock has ray {version}"
