"""Record an ingestion in the metadata catalog."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import step

from clearsight.catalog import Catalog, display_url, resolve_catalog_url
from clearsight.dataset import DatasetManifest, IngestionReport
from clearsight.names import ArtifactName

logger = logging.getLogger(__name__)


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
        catalog_url: Database URL. When empty, the ``CLEARSIGHT_CATALOG_URL``
            environment variable (where URLs holding a password belong), else
            the SQLite catalog in the project's ``.state`` folder.

    Returns:
        The ingestion id and the catalog's size after the write.
    """
    url = resolve_catalog_url(catalog_url)
    catalog = Catalog(url)
    try:
        ingestion_id = catalog.record_ingestion(dataset, report)
        total = catalog.image_count()
    finally:
        catalog.close()
    logger.info(
        "Catalog %s: ingestion #%d recorded, %d images present in total (removed ones "
        "kept in the history, not counted).",
        display_url(url),
        ingestion_id,
        total,
    )
    return {
        "ingestion_id": ingestion_id,
        "catalog_images": total,
        "fingerprint": dataset.fingerprint,
        "dry_run": report.dry_run,
    }
