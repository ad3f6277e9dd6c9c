"""Copy new images into the active artifact store, addressed by content."""

from __future__ import annotations

import logging
from typing import Annotated

from tqdm.auto import tqdm
from zenml import log_metadata, step
from zenml.client import Client
from zenml.io import fileio

from clearsight.dataset import DatasetManifest, IngestionReport
from clearsight.names import ArtifactName
from clearsight.storage import ContentStore
from materializers import DatasetManifestMaterializer, IngestionReportMaterializer

logger = logging.getLogger(__name__)


@step(
    enable_cache=False,  # must check the store itself: it is cheap and exact
    output_materializers={
        ArtifactName.DATASET: DatasetManifestMaterializer,
        ArtifactName.INGESTION_REPORT: IngestionReportMaterializer,
    },
)
def store_images(
    candidate: DatasetManifest, report: IngestionReport
) -> tuple[
    Annotated[DatasetManifest, ArtifactName.DATASET],
    Annotated[IngestionReport, ArtifactName.INGESTION_REPORT],
]:
    """Upload the images the store lacks; images already stored are reused.

    The store lives under the active stack's artifact store, so the same step
    writes to local disk on the embedded stack and to S3/MinIO in production.

    Args:
        candidate: The scanned manifest, whose uris are source paths.
        report: The scan report, completed here with the upload counts.

    Returns:
        The versioned dataset (uris in the store) and the ingestion report.
    """
    root = Client().active_stack.artifact_store.path
    store = ContentStore(root, fileio)
    dataset, uploaded, already = store.store_manifest(
        candidate,
        progress=lambda items: tqdm(items, desc="Storing images", unit="img"),
    )
    logger.info(
        "Stored %d new images under %s; %d were already there.",
        uploaded,
        store.images_root,
        already,
    )
    final = report.model_copy(update={"uploaded": uploaded, "already_stored": already})
    log_metadata(  # images per origin: the folder (ingest) or the review app (review)
        metadata={"provenance": dataset.provenance_counts()},
        artifact_name=ArtifactName.DATASET,
        infer_artifact=True,
    )
    return dataset, final
