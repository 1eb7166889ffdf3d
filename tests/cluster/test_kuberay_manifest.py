"""deploy/kubernetes/rayservice.yaml against the code it deploys.

The manifest names Python import paths, command-line options, configuration
keys and a Ray version, none of which Kubernetes checks before the pods are
running. Here each is checked against stream-detect and the installed Ray:
the Serve application is built (``.bind()`` only; Ray is not started), the
ConfigMap's configuration is validated, and the Deployment's command is
parsed by the real command line.
"""

from __future__ import annotations

import importlib
import posixpath
import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray import serve
from ray.serve.schema import ServeDeploySchema

import stream_detect
from stream_detect.cli import build_parser
from stream_detect.cluster.ray_engine import app_name, detector_app
from stream_detect.config import DEFAULT_MODEL_NAME, ModelConfig, parse_config

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "rayservice.yaml"
KINDS = {"RayService", "ConfigMap", "Deployment", "Service"}
GPU = "nvidia.com/gpu"
RAY_CLIENT_PORT = 10001
# Ray versions written in the manifest's text: the Dockerfile's base image and pip pin in its comments.
BASE_IMAGE = re.compile(r"rayproject/ray:([0-9][0-9A-Za-z.]*)-py")
RAY_PIN = re.compile(r"ray\[serve\]==([0-9][0-9A-Za-z.]*)")

Document = dict[str, Any]


@pytest.fixture(scope="module")
def manifest() -> dict[str, Document]:
    """The manifest's documents by kind (one of each)."""
    documents = [document for document in yaml.safe_load_all(MANIFEST.read_text()) if document is not None]
    kinds = [document["kind"] for document in documents]
    assert sorted(kinds) == sorted(KINDS), f"{MANIFEST.name}: expected one each of {sorted(KINDS)}, got {kinds}"
    return {document["kind"]: document for document in documents}


def only_container(pod_template: Document) -> Document:
    containers = pod_template["spec"]["containers"]
    assert len(containers) == 1, f"expected one container, got {[c.get('name') for c in containers]}"
    container: Document = containers[0]
    return container


def gpus(container: Document, part: str) -> int:
    return int(container.get("resources", {}).get(part, {}).get(GPU, 0))


def cluster_spec(manifest: dict[str, Document]) -> Document:
    spec: Document = manifest["RayService"]["spec"]["rayClusterConfig"]
    return spec


def gpu_groups(manifest: dict[str, Document]) -> list[Document]:
    groups = cluster_spec(manifest).get("workerGroupSpecs") or []
    return [group for group in groups if gpus(only_container(group["template"]), "limits") > 0]


def serve_application(manifest: dict[str, Document]) -> Document:
    """The one application of ``serveConfigV2``, validated by Ray Serve's own schema."""
    serve_config = yaml.safe_load(manifest["RayService"]["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)
    applications = serve_config["applications"]
    assert len(applications) == 1, f"expected one Serve application, got {[a.get('name') for a in applications]}"
    application: Document = applications[0]
    return application


def stream_detect_config(manifest: dict[str, Document]) -> Any:
    data = manifest["ConfigMap"]["data"]
    return parse_config(yaml.safe_load(data["config.yaml"]), origin="ConfigMap config.yaml")


def head_service(manifest: dict[str, Document]) -> str:
    """The Service KubeRay creates for a RayService's head: ``<RayService name>-head-svc``."""
    return f"{manifest['RayService']['metadata']['name']}-head-svc"


def test_the_head_has_no_gpu_and_runs_no_detector(manifest: dict[str, Document]) -> None:
    head = cluster_spec(manifest)["headGroupSpec"]
    assert head["rayStartParams"].get("num-cpus") == "0", "the head must offer no CPU, so replicas go to workers"
    container = only_container(head["template"])
    assert gpus(container, "limits") == 0 and gpus(container, "requests") == 0, "the head asks for a GPU"
    ports = {port["containerPort"] for port in container.get("ports", [])}
    assert RAY_CLIENT_PORT in ports, f"the head does not declare the Ray Client port {RAY_CLIENT_PORT}"


def test_the_gpu_workers_hold_every_detector_replica(manifest: dict[str, Document]) -> None:
    groups = gpu_groups(manifest)
    assert groups, f"no worker group has a {GPU} limit"
    for group in [cluster_spec(manifest)["headGroupSpec"], *cluster_spec(manifest)["workerGroupSpecs"]]:
        params = group.get("rayStartParams", {})
        assert all(isinstance(value, str) for value in params.values()), f"rayStartParams must be strings: {params}"
    gpus_in_cluster = 0
    for group in groups:
        assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
        gpus_in_cluster += group["replicas"] * gpus(only_container(group["template"]), "limits")
    args = serve_application(manifest)["args"]
    assert args["replica_gpus"] > 0, "the detector replicas ask for no GPU"
    wanted = args["replicas"] * args["replica_gpus"]
    assert wanted <= gpus_in_cluster, f"{wanted} GPUs of replicas, {gpus_in_cluster} in the GPU workers"


def test_every_pod_runs_one_image_of_the_installed_ray(manifest: dict[str, Document]) -> None:
    spec = cluster_spec(manifest)
    templates = [spec["headGroupSpec"]["template"], *(group["template"] for group in spec["workerGroupSpecs"]),
                 manifest["Deployment"]["spec"]["template"]]
    images = {only_container(template)["image"] for template in templates}
    assert len(images) == 1, f"the Ray client needs the cluster's Ray and Python: one image, got {sorted(images)}"
    tag = images.pop().rpartition(":")[2]
    assert tag.startswith(f"{stream_detect.__version__}-ray{ray.__version__}-"), \
        f"image tag {tag!r} is not stream-detect {stream_detect.__version__} on Ray {ray.__version__}"
    assert spec["rayVersion"] == ray.__version__
    text = MANIFEST.read_text()
    for pattern in (BASE_IMAGE, RAY_PIN):
        versions = set(pattern.findall(text))
        assert versions == {ray.__version__}, f"{pattern.pattern}: {sorted(versions)}, installed {ray.__version__}"


def test_the_serve_application_builds_without_starting_ray(manifest: dict[str, Document]) -> None:
    application = serve_application(manifest)
    assert application["name"] == app_name(DEFAULT_MODEL_NAME)
    assert application.get("route_prefix", "/") is None, "the detector would answer HTTP on Serve's port"
    module_name, _, attribute = application["import_path"].partition(":")
    assert module_name.startswith("stream_detect.") and attribute, application["import_path"]
    builder = getattr(importlib.import_module(module_name), attribute)
    assert builder is detector_app
    ModelConfig(**application["args"]["model"])
    assert not ray.is_initialized(), "Ray was already initialized (by another test): cannot tell what bind() does"
    built = builder(application["args"])
    assert isinstance(built, serve.Application)
    assert not ray.is_initialized(), "building the application started Ray"


def test_the_configmap_finds_the_rayservice_detector(manifest: dict[str, Document]) -> None:
    config = stream_detect_config(manifest)
    assert config.cluster is not None and config.cluster.deploy is False
    assert config.cluster.address == f"ray://{head_service(manifest)}:{RAY_CLIENT_PORT}"
    application = serve_application(manifest)
    assert {app_name(name) for name in config.named_models()} == {application["name"]}
    assert config.model == ModelConfig(**application["args"]["model"]), "the API would report another model"
    assert config.server.host == "0.0.0.0" and config.sources


def test_the_deployment_runs_stream_detect_against_the_head_service(manifest: dict[str, Document]) -> None:
    deployment = manifest["Deployment"]["spec"]
    assert deployment["replicas"] == 1, "a second process would run every camera again"
    pod = deployment["template"]
    container = only_container(pod)
    command = container["command"]
    (script,) = entry_points(group="console_scripts", name=command[0])
    assert script.value == "stream_detect.cli:main"
    args = build_parser().parse_args(command[1:])
    assert args.command == "run"
    assert args.cluster == f"ray://{head_service(manifest)}:{RAY_CLIENT_PORT}"

    configmap = manifest["ConfigMap"]
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    mounted = []
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source and source["name"] == configmap["metadata"]["name"]:
            mounted += [posixpath.join(mount["mountPath"], key) for key in configmap["data"]]
    assert args.config in mounted, f"--config {args.config} is not the ConfigMap's file (mounted: {mounted})"

    service = manifest["Service"]["spec"]
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    port_names = {port.get("name"): port["containerPort"] for port in container["ports"]}
    (port,) = service["ports"]
    target = port_names.get(port["targetPort"], port["targetPort"])
    assert port["port"] == 8000 and target == stream_detect_config(manifest).server.port
