"""Clearsight's framework-free core.

Image validation and hashing, dataset layout discovery, de-duplication,
deterministic splits, the metadata catalog, content-addressed storage,
preprocessing, model building and metrics. Nothing here imports ZenML: the
ZenML steps in ``steps/`` are thin adapters around these functions, and the
serving side reuses the same preprocessing.
"""

__version__ = "0.1.0"
