"""Log the model in MLflow's format and register it in the model registry."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import mlflow
import mlflow.tensorflow
import numpy as np
import tensorflow as tf
from mlflow.models import infer_signature
from zenml import get_step_context, log_metadata, step

from clearsight.dataset import DatasetManifest
from clearsight.models import model_temperature
from clearsight.names import ArtifactName
from clearsight.preprocess import preprocess_batch
from steps.training.data import read_bytes

logger = logging.getLogger(__name__)


@step(experiment_tracker=True)
def register_model(
    model: tf.keras.Model,
    dataset: DatasetManifest,
    test_metrics: dict[str, Any],
    registered_model_name: str | None = None,
) -> Annotated[dict[str, Any], ArtifactName.REGISTERED_MODEL]:
    """Register the model in MLflow and link it to the ZenML model version.

    The MLflow model carries a signature and an input example (one real,
    preprocessed test image). The registered version is tagged with the
    dataset fingerprint and the ZenML model version; the MLflow coordinates
    are also the output artifact's metadata (``log_model_metadata`` copies
    them to the ZenML model version).

    Args:
        model: The trained classifier.
        dataset: The dataset it was trained on.
        test_metrics: Output of the evaluation step.
        registered_model_name: Registry name; defaults to the ZenML model name.

    Returns:
        The registered model's name, version, run id and model URI.
    """
    context = get_step_context()
    zenml_model = context.model
    name = registered_model_name or zenml_model.name
    image_size = int(model.input_shape[1])
    example_record = dataset.split("test")[0]
    example = preprocess_batch([read_bytes(example_record.uri)], image_size, dataset.decoding)
    signature = infer_signature(example, model.predict(example, verbose=0))
    # mlflow.tensorflow rather than mlflow.keras: MLflow 3.17's Keras flavor writes
    # the input example before creating the model folder and fails.
    info = mlflow.tensorflow.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example.astype(np.float32),
        registered_model_name=name,
        metadata={
            "classes": dataset.classes,
            "image_size": image_size,
            "temperature": model_temperature(model),
            # The serving wrapper decodes requests by the rules the training data had.
            "decoding": dataset.decoding.model_dump(mode="json"),
        },
    )
    run_id = mlflow.active_run().info.run_id
    mlflow_client = mlflow.MlflowClient()
    versions = mlflow_client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    version = max(int(v.version) for v in versions)
    tags = {
        "dataset_fingerprint": dataset.fingerprint,
        "zenml_model_version": str(zenml_model.number),
        "zenml_pipeline_run": context.pipeline_run.name,
        "test_accuracy": f"{test_metrics['accuracy']:.4f}",
        "test_macro_f1": f"{test_metrics['macro_f1']:.4f}",
        "classes": ",".join(dataset.classes),
        "temperature": f"{model_temperature(model):.4f}",
    }
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(name, str(version), key, value)

    registered = {
        "registered_model_name": name,
        "registered_model_version": version,
        "mlflow_run_id": run_id,
        "model_uri": f"models:/{name}/{version}",
        "logged_model_uri": info.model_uri,
        "classes": list(dataset.classes),
        "image_size": image_size,
    }
    log_metadata(
        metadata={k: v for k, v in registered.items() if k != "classes"},
        infer_artifact=True,
    )
    logger.info("Registered %s version %s (MLflow run %s).", name, version, run_id)
    return registered
