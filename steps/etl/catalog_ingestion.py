"""Record an ingestion in the metadata catalog."""

from __future__ import annotations

import logging
import os
from typing import Annotated

from zenml import step

from clearsight.catalog import Catalog
from clearsight.dataset import DatasetManifest, IngestionReport
from clearsight.errors import CatalogError
from clearsight.names import ArtifactName

logger = logging.getLogger(__name__)

CATALOG_URL_ENV = "CLEARSIGHT_CATALOG_URL"


@step(enable_cache=False)
def catalog_ingestion(
    dataset: DatasetManifest,
    report: IngestionReport,
    catalog_url: str | None = None,
) -> Annotated[dict, ArtifactName.CATALOG_ENTRY]:
    """Upsert the dataset's images and add one ingestion row, in one transaction.

    Args:
        dataset: The dataset to record (stored, or a dry run's candidate).
        report: The ingestion report.
        catalog_url: Database URL. When empty, read from the
            ``CLEARSIGHT_CATALOG_URL`` environment variable, which is where
            URLs holding a password belong.

    Returns:
        The ingestion id and the catalog's size after the write.
    """
    url = catalog_url or os.environ.get(CATALOG_URL_ENV)
    if not url:
        raise CatalogError(
            f"No catalog URL: set the step parameter catalog_url or {CATALOG_URL_ENV}."
        )
    catalog = Catalog(url)
    try:
        ingestion_id = catalog.record_ingestion(dataset, report)
        total = catalog.image_count()
    finally:
        catalog.close()
    logger.info(
        "Catalog: ingestion #%d recorded, %d images known in total.",
        ingestion_id,
        total,
    )
    return {
        "ingestion_id": ingestion_id,
        "catalog_images": total,
        "fingerprint": dataset.fingerprint,
        "dry_run": report.dry_run,
    }
