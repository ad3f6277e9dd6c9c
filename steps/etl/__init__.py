"""Ingestion steps: scan and validate, store by content, catalogue."""

from steps.etl.catalog_ingestion import catalog_ingestion
from steps.etl.scan_images import scan_images
from steps.etl.store_images import store_images

__all__ = ["catalog_ingestion", "scan_images", "store_images"]
