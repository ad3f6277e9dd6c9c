"""Read the monitored window from the prediction log and lay out Evidently's tables."""

from __future__ import annotations

import logging
from typing import Annotated

import pandas as pd
from zenml import step

from clearsight.features import DEFAULT_EMBEDDING_COMPONENTS
from clearsight.monitoring import (
    MonitorRules,
    MonitorWindow,
    check_rules,
    feature_columns,
    load_window,
    reference_table,
    window_bounds,
)
from clearsight.names import ArtifactName
from steps.monitoring.target import reference_and_classes, serving_target

logger = logging.getLogger(__name__)


@step(enable_cache=False)  # the log grows between runs: always read it
def monitoring_window(
    model_name: str,
    rules: MonitorRules,
    model_version: int | None = None,
    catalog_url: str | None = None,
    end: str | None = None,
    embedding_components: int = DEFAULT_EMBEDDING_COMPONENTS,
) -> tuple[
    Annotated[pd.DataFrame, ArtifactName.MONITOR_REFERENCE],
    Annotated[pd.DataFrame, ArtifactName.MONITOR_CURRENT_FEATURES],
    Annotated[pd.DataFrame, ArtifactName.MONITOR_CURRENT_PREDICTIONS],
    Annotated[MonitorWindow, ArtifactName.MONITOR_WINDOW],
]:
    """The version's reference and the window's logged features, predictions and figures.

    Args:
        model_name: The served model.
        rules: The monitor's rules (``window_hours``; ``critical_classes`` are checked).
        model_version: The ZenML model version to judge; the champion when empty.
        catalog_url: The catalog holding the prediction log; resolved when empty.
        end: The window's end (ISO 8601, UTC when naive); the run's start when empty.
        embedding_components: The reference's ``embedding_i`` columns (as promote.yaml).

    Returns:
        The reference (train split: features and predicted label), the window's
        rows with complete features, the window's predicted labels, and the
        window with its counts, uncertain share and accuracy. A table with no
        row is replaced by the reference (Evidently needs rows); the window's
        counts say so and nothing is decided on it.
    """
    target = serving_target(model_name, model_version)
    reference, classes = reference_and_classes(target)
    check_rules(rules, classes, f"{model_name} v{target.zenml_version}")
    columns = feature_columns(embedding_components)
    reference = reference_table(reference, columns, classes)
    window, features, predictions = load_window(
        model_name,
        target.zenml_version,
        classes,
        columns,
        window_bounds(rules.window_hours, end),
        catalog_url,
        target.registered_version,
    )
    figures = window.figures
    logger.info(
        "%s v%s, %s to %s: %d predictions (%d without features), %d labelled.",
        model_name,
        window.model_version,
        window.start.isoformat(timespec="minutes"),
        window.end.isoformat(timespec="minutes"),
        figures.predictions,
        figures.without_features,
        figures.labelled,
    )
    if figures.other_versions:
        logger.warning(
            "The window also holds predictions of other versions (%s): not counted. Is the "
            "champion deployed? python run.py deploy",
            figures.other_versions,
        )
    if features.empty:
        logger.warning(
            "No prediction in the window has monitoring features: the data drift report "
            "compares the reference with itself and data drift is not judged."
        )
        features = reference
    if predictions.empty:
        predictions = reference[["prediction"]]
    return reference, features, predictions, window
