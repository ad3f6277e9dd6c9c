"""Link the training dataset to the ZenML model version."""

from __future__ import annotations

import logging

from zenml import get_step_context, step
from zenml.client import Client
from zenml.model.utils import link_artifact_version_to_model_version

from clearsight.dataset import DatasetManifest

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def link_dataset(dataset: DatasetManifest) -> None:
    """Record on the model version which dataset version it was trained on.

    Never cached: a re-run whose training was reused from cache still creates a
    new model version, and that version must point to its dataset too (the
    promote pipeline reads the test split from it).

    Args:
        dataset: The dataset the model was trained on.
    """
    context = get_step_context()
    artifact = Client().get_artifact_version(context.inputs["dataset"][0].id)
    link_artifact_version_to_model_version(artifact, context.model_version)
    logger.info(
        "Model version %s #%s trained on dataset %s (version %s, fingerprint %s).",
        context.model_version.model.name,
        context.model_version.number,
        artifact.name,
        artifact.version,
        dataset.fingerprint[:12],
    )
