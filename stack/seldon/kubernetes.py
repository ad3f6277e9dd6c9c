"""Serve the champion on Kubernetes with ZenML's own Seldon Core model deployer.

ZenML's ``seldon`` flavor (``zenml.integrations.seldon``) creates one
``SeldonDeployment`` per service. For a *custom* deployment it takes the pod
specification as given and wraps it as the only ``componentSpecs`` entry of a
predictor whose graph node is named ``classifier`` (Seldon Core matches the
graph node to the container of the same name). :func:`pod_spec` builds that
pod specification: Seldon's rclone storage initializer copies the exported
model folder (``model.keras`` + ``serving.json``) from the artifact store into
``/mnt/models``, and the serving image (``stack/kubernetes/Dockerfile.serving``)
runs ``clearsight.seldon_model.ImageClassifier`` on it.
``stack/kubernetes/seldon-deployment.yaml`` is the same pod specification for
``kubectl apply``; a unit test keeps the two equal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from zenml.integrations.seldon.services.seldon_deployment import (
    SeldonDeploymentConfig,
    SeldonDeploymentService,
)

CONTAINER_NAME = "classifier"  # the graph node ZenML's SeldonDeployment.build names
MODEL_MOUNT = "/mnt/models"
MODEL_VOLUME = "model"
RCLONE_IMAGE = "seldonio/rclone-storage-initializer:1.19.0"
IMPLEMENTATION = "custom"
SERVING_IMAGE_ENV = "CLEARSIGHT_SERVING_IMAGE"


@dataclass(frozen=True)
class KubernetesServing:
    """How the serving pods run: image, size, workers, probe and storage secret.

    Attributes:
        image: The serving image built from ``stack/kubernetes/Dockerfile.serving``.
        secret_name: Kubernetes secret with the ``RCLONE_CONFIG_S3_*`` variables
            the storage initializer reads.
        replicas: Pods behind the predictor.
        workers: gunicorn workers per pod.
        cpu_request: CPU requested per pod.
        memory_request: Memory requested per pod.
        memory_limit: Memory limit per pod.
        readiness_delay: Seconds before the first readiness probe (TensorFlow loads).
        readiness_period: Seconds between readiness probes.
        rclone_image: The storage initializer image.
    """

    image: str
    secret_name: str
    replicas: int = 2
    workers: int = 2
    cpu_request: str = "1"
    memory_request: str = "2Gi"
    memory_limit: str = "3Gi"
    readiness_delay: int = 20
    readiness_period: int = 5
    rclone_image: str = RCLONE_IMAGE

    def __post_init__(self) -> None:
        """Refuse settings that could only fail on the cluster."""
        if not self.image:
            raise ValueError("No serving image.")
        if not self.secret_name:
            raise ValueError("No Kubernetes secret for the storage initializer.")
        if self.replicas < 1 or self.workers < 1:
            raise ValueError("replicas and workers must be at least 1.")


def resolve_image(image: str | None) -> str:
    """The serving image: the given one, else ``$CLEARSIGHT_SERVING_IMAGE``.

    Raises:
        ValueError: None is set, or it is still the manifests' placeholder.
    """
    resolved = image or os.environ.get(SERVING_IMAGE_ENV, "")
    if not resolved or "<" in resolved:
        raise ValueError(
            f"No serving image ({resolved or 'unset'}): build and push "
            "stack/kubernetes/Dockerfile.serving, then set "
            f"{SERVING_IMAGE_ENV}=<registry>/clearsight-serving:<tag> (or serving_image under "
            "steps.deploy_champion.parameters in configs/deploy.yaml)."
        )
    return resolved


def pod_spec(model_uri: str, serving: KubernetesServing) -> dict[str, Any]:
    """The pod specification of the serving pods (``componentSpecs[0].spec``).

    Args:
        model_uri: Folder holding ``model.keras`` and ``serving.json``, as the
            storage initializer reads it (``s3://bucket/path``).
        serving: Image, resources, workers and secret.

    Returns:
        A Kubernetes ``PodSpec`` as plain JSON-compatible data.
    """
    return {
        "volumes": [{"name": MODEL_VOLUME, "emptyDir": {}}],
        "initContainers": [
            {
                "name": "model-initializer",
                "image": serving.rclone_image,
                "args": [model_uri.rstrip("/"), MODEL_MOUNT],
                "envFrom": [{"secretRef": {"name": serving.secret_name}}],
                "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT}],
            }
        ],
        "containers": [
            {
                "name": CONTAINER_NAME,
                "image": serving.image,
                "env": [
                    {"name": "CLEARSIGHT_MODEL_DIR", "value": MODEL_MOUNT},
                    {"name": "GUNICORN_WORKERS", "value": str(serving.workers)},
                ],
                "volumeMounts": [
                    {"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": True}
                ],
                "readinessProbe": {
                    "httpGet": {"path": "/health/ping", "port": "http"},
                    "initialDelaySeconds": serving.readiness_delay,
                    "periodSeconds": serving.readiness_period,
                },
                "resources": {
                    "requests": {"cpu": serving.cpu_request, "memory": serving.memory_request},
                    "limits": {"memory": serving.memory_limit},
                },
            }
        ],
    }


def seldon_deployment_config(
    *,
    model_name: str,
    model_uri: str,
    serving: KubernetesServing,
    registered_version: str,
    model_version: str = "",
    pipeline_name: str = "",
    pipeline_step_name: str = "",
    explicit_secret: bool = False,
) -> SeldonDeploymentConfig:
    """The configuration ZenML's Seldon deployer turns into our ``SeldonDeployment``.

    Args:
        model_name: Registered model name (also the predictor's name).
        model_uri: Artifact-store folder of the exported model.
        serving: How the pods run.
        registered_version: MLflow registry version served; kept in the
            configuration and as the label ``zenml.registered_version``.
        model_version: ZenML model version served (links the service to it).
        pipeline_name: Pipeline that deploys (a label on the resource).
        pipeline_step_name: Step that deploys (a label on the resource).
        explicit_secret: ``serving.secret_name`` was chosen by the user. When
            False it is the deployer's own secret, left for the deployer to
            create or update from the artifact store's credentials.

    Returns:
        A custom-deployment ``SeldonDeploymentConfig``.
    """
    return SeldonDeploymentConfig(
        model_name=model_name,
        model_version=model_version,
        model_uri=model_uri,
        implementation=IMPLEMENTATION,
        is_custom_deployment=True,
        spec=pod_spec(model_uri, serving),
        replicas=serving.replicas,
        secret_name=serving.secret_name if explicit_secret else None,
        parameters=None,
        resources=None,
        pipeline_name=pipeline_name,
        pipeline_step_name=pipeline_step_name,
        service_name=f"{model_name}-seldon-k8s-v{registered_version}",
        extra_args={"registered_version": registered_version},
    )


def served_registered_version(config: SeldonDeploymentConfig) -> str | None:
    """The MLflow registry version a Seldon service was deployed with, if ours."""
    value = (config.extra_args or {}).get("registered_version")
    return str(value) if value is not None else None


def seldon_servers_for(deployer: Any, model_name: str) -> list[SeldonDeploymentService]:
    """Every Seldon Core service of a model, whichever model version it serves.

    ``find_model_server(model_name=...)`` matches only services linked to the
    model's latest version, which misses the champion after a rollback.
    """
    return [
        service
        for service in deployer.find_model_server(service_type=SeldonDeploymentService.SERVICE_TYPE)
        if service.config.model_name == model_name
    ]
