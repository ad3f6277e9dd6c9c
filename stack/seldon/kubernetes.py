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
``kubectl apply``; a unit test keeps the two equal. The pods require API keys
(``CLEARSIGHT_API_KEYS=required``) and read them, and write their prediction
log, in the catalog database named by the secret ``clearsight-catalog`` (key
``url``). :func:`deploy_on_kubernetes` is the deploy step's blue-green swap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zenml.integrations.seldon.services.seldon_deployment import (
    SeldonDeploymentConfig,
    SeldonDeploymentService,
)
from zenml.io import fileio

logger = logging.getLogger(__name__)

CONTAINER_NAME = "classifier"  # the graph node ZenML's SeldonDeployment.build names
MODEL_MOUNT = "/mnt/models"
MODEL_VOLUME = "model"
RCLONE_IMAGE = "seldonio/rclone-storage-initializer:1.19.0"
IMPLEMENTATION = "custom"
SERVING_IMAGE_ENV = "CLEARSIGHT_SERVING_IMAGE"
#: Secret holding the catalog URL (key ``url``) the pods read API keys from and log to.
CATALOG_SECRET = "clearsight-catalog"


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
        api_keys: Clients must send an API key (``CLEARSIGHT_API_KEYS``); off
            only behind the Istio JWT policy (``stack/kubernetes/seldon-jwt.yaml``).
        catalog_secret: Secret whose key ``url`` is the catalog database URL.
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
    api_keys: bool = True
    catalog_secret: str = CATALOG_SECRET

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
                    {
                        "name": "CLEARSIGHT_API_KEYS",
                        "value": "required" if serving.api_keys else "off",
                    },
                    {
                        "name": "CLEARSIGHT_CATALOG_URL",
                        "valueFrom": {
                            "secretKeyRef": {"name": serving.catalog_secret, "key": "url"}
                        },
                    },
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


def upload_model_folder(folder: Path, destination: str) -> str:
    """Copy an exported model folder to the artifact store; returns ``destination``."""
    destination = destination.rstrip("/")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        target = f"{destination}/{path.relative_to(folder).as_posix()}"
        fileio.makedirs(target.rpartition("/")[0])
        fileio.copy(str(path), target, overwrite=True)
    return destination


def _seldon_labels(model_name: str, version: str) -> dict[str, str]:
    """The labels ZenML puts on the SeldonDeployment of one served version."""
    from zenml.integrations.seldon.seldon_client import SeldonClient

    labels = {"zenml.model_name": model_name, "zenml.registered_version": version}
    SeldonClient.sanitize_labels(labels)
    return labels


def _seldon_deployment_names(deployer: Any, model_name: str, version: str) -> set[str]:
    """Names of the SeldonDeployments already serving this model version."""
    try:
        found = deployer.seldon_client.find_deployments(labels=_seldon_labels(model_name, version))
    except Exception:  # noqa: BLE001 - an unreachable cluster fails in deploy_model itself
        return set()
    return {deployment.name for deployment in found}


def _delete_new_seldon_deployments(
    deployer: Any, model_name: str, version: str, before: set[str]
) -> list[str]:
    """Delete the SeldonDeployments of this version created since ``before`` was taken."""
    removed = []
    for name in sorted(_seldon_deployment_names(deployer, model_name, version) - before):
        try:
            deployer.seldon_client.delete_deployment(name=name, force=True)
            removed.append(name)
        except Exception as error:  # noqa: BLE001 - report, then let the caller raise
            logger.error("Could not delete the failed SeldonDeployment %s: %s", name, error)
    return removed


def _service_log_tail(deployer: Any, uuid: Any, lines: int = 20) -> str:
    try:
        return "\n".join(deployer.get_model_server_logs(uuid, tail=lines))
    except Exception:  # noqa: BLE001 - logs are a courtesy in an error message
        return ""


def deploy_on_kubernetes(
    deployer: Any,
    *,
    model_name: str,
    export: Callable[[Path], dict[str, str]],
    models_root: str,
    serving: dict[str, Any],
    explicit_secret: bool,
    pipeline_name: str = "",
    pipeline_step_name: str = "",
    timeout: int = 600,
) -> dict[str, Any]:
    """Serve the champion with ZenML's Seldon Core deployer; blue-green as locally.

    ZenML 0.98's ``deploy_model`` replaces a server by deleting it first
    (``continuous_deployment_mode``), which would leave a gap. So the new
    SeldonDeployment is created beside the old one and the old one is deleted
    only once the new one is available; Seldon Core's readiness probe keeps
    traffic off pods that are not ready.

    Args:
        deployer: The stack's ``SeldonModelDeployer``.
        model_name: Registered model whose ``champion`` alias is served.
        export: Writes the champion's model folder (``model.keras`` +
            ``serving.json``) into the given folder and returns its
            ``registered_version`` and ``zenml_model_version``.
        models_root: Artifact-store folder the model folders are uploaded to.
        serving: Keyword arguments of :class:`KubernetesServing`.
        explicit_secret: The secret in ``serving`` was chosen by the user, not
            the deployer's own.
        pipeline_name: Recorded on the SeldonDeployment's labels.
        pipeline_step_name: Recorded on the SeldonDeployment's labels.
        timeout: Seconds to wait for the new deployment to become available.

    Returns:
        The prediction URL, the versions served, whether anything changed and
        whether the pods require API keys.
    """
    pods = KubernetesServing(**serving)  # invalid settings fail before anything moves
    existing = []
    for service in seldon_servers_for(deployer, model_name):
        if service.is_running:
            existing.append(service)
        else:  # a failed or vanished deployment serves nobody: clear it away
            deployer.delete_model_server(service.uuid, timeout=60, force=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / model_name
        served = export(folder)
        version = served["registered_version"]
        for service in existing:
            if served_registered_version(service.config) == version:
                logger.info("Champion v%s is already served.", version)
                return {
                    "prediction_url": service.prediction_url,
                    "changed": False,
                    "service": str(service.uuid),
                    "api_keys": pods.api_keys,
                    **served,
                }
        model_uri = upload_model_folder(
            folder, f"{models_root.rstrip('/')}/{model_name}/v{version}"
        )
    config = seldon_deployment_config(
        model_name=model_name,
        model_uri=model_uri,
        serving=pods,
        registered_version=version,
        model_version=served["zenml_model_version"],
        pipeline_name=pipeline_name,
        pipeline_step_name=pipeline_step_name,
        explicit_secret=explicit_secret,
    )
    before = _seldon_deployment_names(deployer, model_name, version)
    try:
        new = deployer.deploy_model(
            config=config, service_type=SeldonDeploymentService.SERVICE_TYPE, timeout=timeout
        )
    except Exception as error:
        # ZenML deletes its service record but leaves the SeldonDeployment it
        # created: find it by its labels and delete it by name.
        removed = _delete_new_seldon_deployments(deployer, model_name, version, before)
        raise RuntimeError(
            f"Deploying {model_name} v{version} on Kubernetes failed: {error}. The previous "
            f"deployment keeps serving; removed the failed SeldonDeployment(s): "
            f"{', '.join(removed) or 'none was created'}."
        ) from error
    if not new.is_running:
        logs = _service_log_tail(deployer, new.uuid)
        with contextlib.suppress(Exception):
            deployer.delete_model_server(new.uuid, timeout=60, force=True)
        raise RuntimeError(
            f"The SeldonDeployment for {model_name} v{version} ({new.seldon_deployment_name}) "
            f"was not available within {timeout} s; it was deleted and the previous one keeps "
            "serving." + (f" Its last log lines:\n{logs}" if logs else "")
        )
    for old in existing:
        if old.uuid != new.uuid:
            deployer.delete_model_server(old.uuid, timeout=timeout)
    logger.info("Serving %s v%s at %s", model_name, version, new.prediction_url)
    return {
        "prediction_url": new.prediction_url,
        "changed": True,
        "service": str(new.uuid),
        "api_keys": pods.api_keys,
        **served,
    }
