"""ZenML's Seldon Core deployer on Kubernetes: what can be checked without a cluster.

The SeldonDeployment is the one ZenML's own ``SeldonDeploymentService.provision``
sends to the Kubernetes API (captured by an in-memory custom-objects API).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import pytest
import yaml
from kubernetes import client as k8s_client
from zenml.integrations.seldon.flavors.seldon_model_deployer_flavor import (
    SeldonModelDeployerConfig,
)
from zenml.integrations.seldon.seldon_client import SeldonClient
from zenml.integrations.seldon.services.seldon_deployment import (
    SeldonDeploymentConfig,
    SeldonDeploymentService,
)

from stack.register import model_deployer_components
from stack.seldon import kubernetes as k8s
from stack.settings import ProductionSettings
from tests.conftest import ROOT

MANIFEST = ROOT / "stack" / "kubernetes" / "seldon-deployment.yaml"
MODEL_URI = "s3://clearsight-artifacts/served-models/image-classifier/v7"
IMAGE = "registry.example/clearsight-serving:0.1.0"


class InMemoryCustomObjects:
    """The two calls of ``CustomObjectsApi`` that creating a deployment makes."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.namespaces: list[str] = []
        self.deleted: list[str] = []

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        if name not in self.objects:
            raise k8s_client.rest.ApiException(status=404, reason="Not Found")
        return json.loads(json.dumps(self.objects[name]))

    def create_namespaced_custom_object(self, group, version, namespace, plural, body, **_):
        assert (group, version, plural) == ("machinelearning.seldon.io", "v1", "seldondeployments")
        self.namespaces.append(namespace)
        self.objects[body["metadata"]["name"]] = json.loads(json.dumps(body))
        return body

    def list_namespaced_custom_object(
        self, group, version, namespace, plural, field_selector=None, label_selector=None, **_
    ):
        wanted = dict(pair.split("=", 1) for pair in (label_selector or "").split(",") if pair)
        items = [
            json.loads(json.dumps(body))
            for body in self.objects.values()
            if all(body["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        return {"items": items}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, **_):
        self.deleted.append(name)
        return self.objects.pop(name)


@pytest.fixture()
def api(monkeypatch) -> InMemoryCustomObjects:
    """ZenML's real SeldonClient, talking to an in-memory Kubernetes API."""
    seldon = SeldonClient(context=None, namespace="seldon", kube_client=k8s_client.ApiClient())
    objects = InMemoryCustomObjects()
    monkeypatch.setattr(seldon, "_custom_objects_api", objects)
    monkeypatch.setattr(SeldonDeploymentService, "_get_client", lambda self: seldon)
    return objects


def serving(**overrides) -> k8s.KubernetesServing:
    values = {"image": IMAGE, "secret_name": "clearsight-rclone-s3", "replicas": 3, "workers": 2}
    return k8s.KubernetesServing(**{**values, **overrides})


def config(**overrides) -> SeldonDeploymentConfig:
    values = {
        "model_name": "image-classifier",
        "model_uri": MODEL_URI,
        "serving": serving(),
        "registered_version": "7",
        "model_version": "12",
        "pipeline_name": "deploy",
        "pipeline_step_name": "deploy_champion",
        "explicit_secret": True,
    }
    return k8s.seldon_deployment_config(**{**values, **overrides})


def test_shipped_manifest_has_the_generated_pod_spec():
    """stack/kubernetes/seldon-deployment.yaml cannot drift from what the pipeline deploys."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    (predictor,) = manifest["spec"]["predictors"]
    shipped = serving(image="<registry>/clearsight-serving:0.1.0", replicas=2)
    uri = "s3://clearsight-models/image-classifier/champion"
    assert predictor["componentSpecs"] == [{"spec": k8s.pod_spec(uri, shipped)}]
    assert predictor["replicas"] == shipped.replicas
    assert predictor["graph"]["name"] == k8s.CONTAINER_NAME


def test_zenml_provisions_our_wrapper_with_the_model_from_the_artifact_store(api):
    service = SeldonDeploymentService(uuid=uuid4(), config=config())
    service.provision()

    (name,) = api.objects
    assert name == service.seldon_deployment_name == f"zenml-{service.uuid}"
    assert api.namespaces == ["seldon"]
    body = api.objects[name]
    assert body["apiVersion"] == "machinelearning.seldon.io/v1"
    assert body["kind"] == "SeldonDeployment"
    labels = body["metadata"]["labels"]
    assert labels["app"] == "zenml"  # what ZenML finds its deployments by
    assert labels["zenml.service_uuid"] == str(service.uuid)
    assert labels["zenml.model_name"] == "image-classifier"
    assert labels["zenml.model_type"] == "custom"
    assert labels["zenml.pipeline_name"] == "deploy"
    assert labels["zenml.pipeline_step_name"] == "deploy_champion"
    assert labels["zenml.registered_version"] == "7"

    assert body["spec"]["replicas"] == 3
    (predictor,) = body["spec"]["predictors"]
    assert predictor["replicas"] == 3
    graph = predictor["graph"]
    assert graph["type"] == "MODEL"
    assert "modelUri" not in graph  # custom: the pod spec brings the model itself
    (component,) = predictor["componentSpecs"]
    pod = component["spec"]
    (container,) = pod["containers"]
    assert container["name"] == graph["name"]  # Seldon binds the graph node by name
    assert container["image"] == IMAGE
    env = {e["name"]: e.get("value") or e["valueFrom"] for e in container["env"]}
    assert env == {
        "CLEARSIGHT_MODEL_DIR": "/mnt/models",
        "GUNICORN_WORKERS": "2",
        "CLEARSIGHT_API_KEYS": "required",  # /health/ping, the probe, stays open
        "CLEARSIGHT_CATALOG_URL": {"secretKeyRef": {"name": "clearsight-catalog", "key": "url"}},
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ping", "port": "http"}
    assert container["resources"]["limits"]["memory"] == "3Gi"
    (init,) = pod["initContainers"]
    assert init["image"] == k8s.RCLONE_IMAGE
    assert init["args"] == [MODEL_URI, "/mnt/models"]
    assert init["envFrom"] == [{"secretRef": {"name": "clearsight-rclone-s3"}}]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mounts == init_mounts == {"model": "/mnt/models"}
    assert [v["name"] for v in pod["volumes"]] == ["model"]


def test_the_deployment_carries_its_config_back_to_zenml(api):
    """ZenML rebuilds the service (and so the served version) from the resource."""
    service = SeldonDeploymentService(uuid=uuid4(), config=config())
    service.provision()
    deployment = SeldonClient.get_deployment(service._get_client(), service.seldon_deployment_name)
    restored = SeldonDeploymentConfig.create_from_deployment(deployment)
    assert k8s.served_registered_version(restored) == "7"
    assert restored.spec == k8s.pod_spec(MODEL_URI, serving())
    assert restored.secret_name == "clearsight-rclone-s3"


def test_the_deployers_own_secret_is_left_to_the_deployer():
    """Without an explicit secret ZenML creates one from the artifact store's credentials."""
    made = config(serving=serving(secret_name="zenml-seldon-core-abc"), explicit_secret=False)
    assert made.secret_name is None  # so perform_deploy_model creates/updates it
    assert made.spec["initContainers"][0]["envFrom"][0]["secretRef"]["name"] == (
        "zenml-seldon-core-abc"
    )


def test_invalid_serving_settings_are_refused_before_deploying(monkeypatch):
    monkeypatch.delenv(k8s.SERVING_IMAGE_ENV, raising=False)
    with pytest.raises(ValueError, match="CLEARSIGHT_SERVING_IMAGE"):
        k8s.resolve_image(None)
    with pytest.raises(ValueError, match="build and push"):
        k8s.resolve_image("<registry>/clearsight-serving:0.1.0")
    monkeypatch.setenv(k8s.SERVING_IMAGE_ENV, IMAGE)
    assert k8s.resolve_image(None) == IMAGE
    assert k8s.resolve_image("other/image:1") == "other/image:1"
    with pytest.raises(ValueError):
        serving(replicas=0)
    with pytest.raises(ValueError):
        serving(secret_name="")


def production_settings(**overrides) -> ProductionSettings:
    values = {name: "" for name in ProductionSettings.__dataclass_fields__}
    values.update(
        seldon_mode="local",
        k8s_context=None,
        k8s_namespace="seldon",
        seldon_base_url="",
        seldon_secret=None,
    )
    return ProductionSettings(**{**values, **overrides})


def test_kubernetes_mode_registers_a_valid_seldon_deployer_config():
    builder, deployer = model_deployer_components(
        production_settings(
            seldon_mode="kubernetes",
            k8s_context="prod",
            seldon_base_url="http://ingress.example/",
            seldon_secret="clearsight-rclone-s3",
        )
    )
    assert (builder.flavor, builder.type.value) == ("local", "image_builder")
    assert (deployer.name, deployer.flavor, deployer.type.value) == (
        "seldon_k8s",
        "seldon",
        "model_deployer",
    )
    validated = SeldonModelDeployerConfig(**deployer.configuration)
    assert validated.kubernetes_context == "prod"
    assert validated.kubernetes_namespace == "seldon"
    assert validated.base_url == "http://ingress.example"
    assert validated.kubernetes_secret_name == "clearsight-rclone-s3"
    assert validated.secret is None
    # ZenML refuses the config without the keys it requires (even when null).
    for required in ("base_url", "secret", "kubernetes_secret_name"):
        partial = {k: v for k, v in deployer.configuration.items() if k != required}
        with pytest.raises(ValueError):
            SeldonModelDeployerConfig(**partial)


def test_local_mode_keeps_the_local_deployer_and_bad_settings_are_refused():
    (local,) = model_deployer_components(production_settings())
    assert (local.name, local.flavor) == ("seldon_local", "local_seldon")
    with pytest.raises(ValueError, match="CLEARSIGHT_SELDON_BASE_URL"):
        model_deployer_components(production_settings(seldon_mode="kubernetes"))
    with pytest.raises(ValueError, match="'local' .* or 'kubernetes'"):
        model_deployer_components(production_settings(seldon_mode="k8s"))


class FakeService:
    def __init__(self, version: str | None, running: bool = True) -> None:
        self.uuid = uuid4()
        self.is_running = running
        self.config = SimpleNamespace(
            model_name="image-classifier", extra_args={"registered_version": version}
        )
        self.prediction_url = f"http://ingress/seldon/seldon/zenml-{self.uuid}/api/v0.1/predictions"
        self.seldon_deployment_name = f"zenml-{self.uuid}"


class FakeDeployer:
    """Records the order of deploys and deletes.

    ``fail_after_create`` behaves as ZenML 0.98's ``deploy_model`` does when
    the service's start raises (e.g. the Kubernetes API refuses a later call):
    the SeldonDeployment has been created on the cluster, then ZenML deletes
    only its own service record and raises ``RuntimeError``.
    """

    def __init__(
        self,
        services: list[FakeService],
        new_running: bool = True,
        fail_after_create: bool = False,
        seldon_client: SeldonClient | None = None,
    ) -> None:
        self.services = services
        self.new_running = new_running
        self.fail_after_create = fail_after_create
        self.seldon_client = seldon_client
        self.calls: list[tuple] = []

    def find_model_server(self, service_type):
        assert service_type == SeldonDeploymentService.SERVICE_TYPE
        return list(self.services)

    def delete_model_server(self, uuid, timeout=0, force=False):
        self.calls.append(("delete", uuid))

    def deploy_model(self, config, service_type, timeout):
        self.calls.append(("deploy", config))
        if self.fail_after_create:
            service = SeldonDeploymentService(uuid=uuid4(), config=config)
            service.provision()  # ZenML's own code creates the SeldonDeployment
            raise RuntimeError(
                f"Failed to deploy model server for {config.model_name}: the Kubernetes API "
                "answered 500"
            )
        new = FakeService(k8s.served_registered_version(config), running=self.new_running)
        self.services.append(new)
        return new

    def get_model_server_logs(self, uuid, follow=False, tail=None):
        return iter(["ImportError: no module named clearsight"])


def export_v7(target: Path) -> dict[str, str]:
    """What the deploy step's export of champion v7 writes and returns."""
    target.mkdir(parents=True)
    (target / "model.keras").write_bytes(b"weights")
    (target / "serving.json").write_text(json.dumps({"top_k": 3}))
    return {"registered_version": "7", "zenml_model_version": "12"}


def deploy(deployer, root: Path) -> dict:
    return k8s.deploy_on_kubernetes(
        deployer,
        model_name="image-classifier",
        export=export_v7,
        models_root=str(root),
        serving={"image": IMAGE, "secret_name": "s", "replicas": 2, "workers": 1},
        explicit_secret=True,
        timeout=5,
    )


def test_new_deployment_is_available_before_the_old_one_is_deleted(tmp_path):
    old, crashed = FakeService("6"), FakeService("5", running=False)
    deployer = FakeDeployer([old, crashed])
    result = deploy(deployer, tmp_path)

    kinds = [kind for kind, _ in deployer.calls]
    assert kinds == ["delete", "deploy", "delete"]
    assert deployer.calls[0][1] == crashed.uuid and deployer.calls[2][1] == old.uuid
    sent = deployer.calls[1][1]
    uploaded = tmp_path / "image-classifier" / "v7"
    assert sent.model_uri == str(uploaded)
    assert sent.spec["initContainers"][0]["args"][0] == str(uploaded)
    assert (uploaded / "model.keras").read_bytes() == b"weights"
    assert json.loads((uploaded / "serving.json").read_text()) == {"top_k": 3}
    assert result["changed"] is True and result["registered_version"] == "7"
    assert result["service"] == str(deployer.services[-1].uuid)
    assert set(result) == {
        "prediction_url",
        "changed",
        "service",
        "api_keys",
        "registered_version",
        "zenml_model_version",
    }
    assert result["api_keys"] is True


def test_the_champion_already_served_is_kept(tmp_path):
    current = FakeService("7")
    deployer = FakeDeployer([current])
    result = deploy(deployer, tmp_path)
    assert deployer.calls == []
    assert result["changed"] is False and result["service"] == str(current.uuid)


def test_a_deployment_that_never_becomes_available_leaves_the_old_one_serving(
    tmp_path,
):
    old = FakeService("6")
    deployer = FakeDeployer([old], new_running=False)
    with pytest.raises(RuntimeError, match="previous one keeps serving") as raised:
        deploy(deployer, tmp_path)
    assert "no module named clearsight" in str(raised.value)  # the failed pods' last logs
    # the failed deployment is deleted; the old one is left alone
    new = deployer.services[-1]
    assert deployer.calls[0][0] == "deploy"
    assert deployer.calls[1:] == [("delete", new.uuid)]


def test_a_deployment_that_zenml_fails_to_start_is_deleted_from_the_cluster(api, tmp_path):
    """ZenML's deploy_model raises after creating the SeldonDeployment: we delete it."""
    seldon = SeldonDeploymentService(uuid=uuid4(), config=config())._get_client()
    # the currently served version (v6), running on the cluster
    serving_v6 = SeldonDeploymentService(uuid=uuid4(), config=config(registered_version="6"))
    serving_v6.provision()
    old = FakeService("6")
    deployer = FakeDeployer([old], fail_after_create=True, seldon_client=seldon)

    with pytest.raises(RuntimeError, match="removed the failed SeldonDeployment") as raised:
        deploy(deployer, tmp_path)

    (failed,) = api.deleted
    assert failed.startswith("zenml-") and failed in str(raised.value)
    assert "the Kubernetes API answered 500" in str(raised.value)
    assert list(api.objects) == [serving_v6.seldon_deployment_name]  # v6 keeps serving
    assert [kind for kind, _ in deployer.calls] == ["deploy"]  # the old service untouched


def test_re_registering_the_seldon_deployer_updates_it_in_place():
    """ZenML's own update drops null values that its seldon config requires."""
    from zenml.client import Client

    from stack.register import ensure_component

    client = Client()
    settings = production_settings(seldon_mode="kubernetes", seldon_base_url="http://a.example")
    _, first = model_deployer_components(settings)
    assert ensure_component(client, first) in {"created", "unchanged"}
    assert ensure_component(client, first) == "unchanged"
    moved = model_deployer_components(
        production_settings(
            seldon_mode="kubernetes", seldon_base_url="http://b.example", k8s_namespace="models"
        )
    )[1]
    assert ensure_component(client, moved) == "updated"
    stored = client.get_stack_component(moved.type, moved.name).configuration
    assert SeldonModelDeployerConfig(**stored).base_url == "http://b.example"
    assert stored["kubernetes_namespace"] == "models"
    assert stored["secret"] is None and stored["kubernetes_secret_name"] is None
