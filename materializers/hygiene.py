"""The near-duplicate clusters of an ingestion as an HTML page with thumbnails.

Shown on the dashboard page of the dataset and of the ingestion report: which
copies were found, which split they were kept in, which ones were moved there
to prevent leakage, and which clusters were left out as label conflicts.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Sequence

from zenml.io import fileio

from clearsight.decode import DecodeOptions, preview
from clearsight.leakage import NearDuplicateCluster

logger = logging.getLogger(__name__)

THUMBNAIL = 96
#: Clusters shown with thumbnails; the rest are counted (a page must stay light).
MAX_CLUSTERS_SHOWN = 50


def near_duplicates_html(
    clusters: Sequence[NearDuplicateCluster],
    *,
    max_distance: int | None = None,
    search_off: bool = False,
    decoding: DecodeOptions | None = None,
) -> str:
    """Render the clusters, conflicts first, each image with a thumbnail.

    Args:
        clusters: The clusters of the ingestion.
        max_distance: The search distance in bits, when known.
        search_off: The search was switched off (``max_distance: null``).
        decoding: The dataset's decoding rules, for thumbnails as the model sees them.

    Returns:
        A complete HTML document.
    """
    options = decoding or DecodeOptions()
    conflicts = [c for c in clusters if c.conflict]
    kept = [c for c in clusters if not c.conflict and not c.spread]
    moved = sum(m.moved_from is not None for c in kept for m in c.members)
    within = f" within {max_distance} bits" if max_distance is not None else ""
    heading = (
        f"{len(clusters)} near-duplicate clusters{within}: {len(kept)} kept together in "
        f"one split, {len(conflicts)} label conflict{'' if len(conflicts) == 1 else 's'} "
        "(left out); leakage prevented: "
        f"{moved} images placed in their copies' split instead of their own"
    )
    if search_off:
        heading = "Near-duplicate search switched off (near_duplicates.max_distance: null)"
    parts = [
        "<html><body style='font-family:sans-serif'>",
        f"<h3>{html.escape(heading)}</h3>",
    ]
    shown = (conflicts + kept)[:MAX_CLUSTERS_SHOWN]
    for cluster in shown:
        title = (
            "label conflict, all left out"
            if cluster.conflict
            else "left in several split folders (leakage: report)"
            if cluster.spread
            else "kept in one split"
        )
        parts.append(
            f"<h4>cluster <code>{cluster.id}</code>: {len(cluster.members)} images, {title}</h4>"
            "<div style='display:flex;flex-wrap:wrap;gap:8px'>"
        )
        for member in cluster.members:
            where = member.split or "left out"
            if member.moved_from:
                where += f" (moved from {member.moved_from})"
            parts.append(
                "<figure style='margin:0;width:150px;font-size:12px'>"
                f"{_thumbnail(member.path, options)}"
                f"<figcaption><b>{html.escape(member.label)}</b>, {html.escape(where)}<br>"
                f"{member.distance} bits to its nearest copy<br>"
                f"<span style='word-break:break-all'>{html.escape(member.path)}</span>"
                "</figcaption></figure>"
            )
        parts.append("</div>")
    if len(clusters) > len(shown):
        parts.append(f"<p>and {len(clusters) - len(shown)} more clusters</p>")
    parts.append("</body></html>")
    return "".join(parts)


def _thumbnail(path: str, options: DecodeOptions) -> str:
    try:
        with fileio.open(path, "rb") as handle:
            image = preview(handle.read(), THUMBNAIL, options=options)
    except Exception as error:  # noqa: BLE001 - a page must render without a missing file
        logger.warning("No thumbnail for %s: %s", path, error)
        return f"<div style='width:{THUMBNAIL}px;height:{THUMBNAIL}px;background:#eee'></div>"
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img src='data:image/png;base64,{data}' alt=''>"
