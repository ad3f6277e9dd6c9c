"""The hygiene findings of an ingestion as an HTML page with thumbnails.

:func:`hygiene_html` is the dashboard page of the ingestion report, conflicts
first: label conflicts (identical pixels or near-duplicates under different
labels, all left out), near-duplicate clusters (left spread over split folders,
kept together in one split, moved there to prevent leakage) and the chains of
similar images ignored, exact-pixel duplicates (one copy kept), known images
relabelled (old -> new label), and catalogued images no longer found (removed)
or found in other bytes (replaced). :func:`near_duplicates_html` is the
dataset's page: a manifest holds only the near-duplicate clusters.

Thumbnails are decoded as the model sees them; a file that cannot be read gets
a grey square. Each list shows at most :data:`MAX_GROUPS_SHOWN` groups with
thumbnails and :data:`MAX_ROWS_SHOWN` rows of text, and counts the rest.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections import Counter
from collections.abc import Sequence

from zenml.io import fileio

from clearsight.dataset import ExactCopies, IngestionReport, Vanished
from clearsight.decode import DecodeOptions, preview
from clearsight.leakage import NearDuplicateCluster, cluster_outcomes

logger = logging.getLogger(__name__)

THUMBNAIL = 96
#: Groups (clusters, sets of copies) shown with thumbnails per section; the
#: rest are counted (a page must stay light: one thumbnail is 10-30 KB).
MAX_GROUPS_SHOWN = 50
#: Rows of text (relabelled, removed, replaced images) shown per section.
MAX_ROWS_SHOWN = 200

_PAGE = "<html><body style='font-family:sans-serif'>"
_END = "</body></html>"
_ROW = "<div style='display:flex;flex-wrap:wrap;gap:8px'>"
_TABLE = "<table border='1' cellpadding='4' style='border-collapse:collapse;font-size:13px'>"


def hygiene_html(report: IngestionReport, *, decoding: DecodeOptions | None = None) -> str:
    """Render every hygiene finding of an ingestion, conflicts first.

    Args:
        report: The ingestion's report.
        decoding: The dataset's decoding rules, for thumbnails as the model sees them.

    Returns:
        A complete HTML document; a section appears only when it has findings.
    """
    options = decoding or DecodeOptions()
    outcomes = cluster_outcomes(report.near_duplicate_clusters)
    exact_conflicts = [c for c in report.exact_copies if c.conflict]
    duplicates = [c for c in report.exact_copies if not c.conflict]
    searched = report.near_duplicate_max_distance
    within = f" within {searched} bits" if searched is not None else ""
    found = [
        _count(len(exact_conflicts) + len(outcomes.conflicts), "label conflict"),
        _count(len(report.near_duplicate_clusters), "near-duplicate cluster") + within,
        _count(len(report.chains), "chain") + " ignored",
        _count(len(duplicates), "set") + " of exact duplicates",
        f"{len(report.relabelled)} relabelled",
        f"{len(report.removed)} removed",
        f"{len(report.replaced)} replaced",
    ]
    parts = [_PAGE, f"<h3>Dataset hygiene: {html.escape(', '.join(found))}</h3>"]
    if searched is None:
        parts.append(
            "<p>Near-duplicate search switched off (near_duplicates.max_distance: null).</p>"
        )

    if exact_conflicts or outcomes.conflicts:
        parts.append(
            "<h3>Label conflicts: the same picture under different labels, all left out "
            "(fix the labels and re-ingest)</h3>"
        )
        parts += _exact_sets_html(exact_conflicts, options)
        parts += _clusters_html(outcomes.conflicts, options)

    if report.near_duplicate_clusters:
        parts.append(
            f"<h3>{html.escape(_clusters_heading(report.near_duplicate_clusters, searched))}</h3>"
        )
        parts += _clusters_html(outcomes.spread + outcomes.kept, options)

    if report.chains:
        parts.append(
            f"<h3>Chains of similar images ignored ({len(report.chains)})</h3>"
            f"<p>Each joins more images than near_duplicates.max_cluster_size{within}: images of "
            "one kind rather than copies of one picture, so they were not treated as "
            "near-duplicates. Lower near_duplicates.max_distance if copies among them go "
            "unnoticed.</p><ul>"
            + "".join(f"<li>{size} images in one chain</li>" for size in report.chains)
            + "</ul>"
        )

    if duplicates:
        parts.append(
            f"<h3>Exact duplicates: {_count(len(duplicates), 'picture')} stored more than once "
            f"({_count(report.duplicates, 'copy', 'copies')} skipped, the first kept)</h3>"
        )
        parts += _exact_sets_html(duplicates, options)

    if report.relabelled:
        moves = Counter((r.previous_label, r.label) for r in report.relabelled)
        parts.append(
            f"<h3>Known images relabelled: {len(report.relabelled)}</h3>{_TABLE}"
            "<tr><th>old label</th><th>new label</th><th>images</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(old)}</td><td>{html.escape(new)}</td><td>{n}</td></tr>"
                for (old, new), n in sorted(moves.items())
            )
            + "</table>"
        )
        parts += _rows_html(
            [f"{r.previous_label} -> {r.label}: {r.path}" for r in report.relabelled]
        )

    verb = "would be" if report.dry_run else "marked"
    if report.removed:
        parts.append(
            f"<h3>Catalogued images no longer found: {len(report.removed)} ({verb} removed)</h3>"
        )
        parts += _rows_html(_vanished_rows(report.removed))
    if report.replaced:
        parts.append(
            f"<h3>Catalogued images now in other bytes with the same pixels: "
            f"{len(report.replaced)} (old bytes {verb} replaced)</h3>"
        )
        parts += _rows_html(_vanished_rows(report.replaced))

    parts.append(_END)
    return "".join(parts)


def near_duplicates_html(
    clusters: Sequence[NearDuplicateCluster],
    *,
    max_distance: int | None = None,
    search_off: bool = False,
    decoding: DecodeOptions | None = None,
) -> str:
    """Render near-duplicate clusters alone (a dataset's page), conflicts first.

    Args:
        clusters: The clusters of the ingestion.
        max_distance: The search distance in bits, when known.
        search_off: The search was switched off (``max_distance: null``).
        decoding: The dataset's decoding rules, for thumbnails as the model sees them.

    Returns:
        A complete HTML document.
    """
    options = decoding or DecodeOptions()
    outcomes = cluster_outcomes(clusters)
    heading = _clusters_heading(clusters, max_distance)
    if search_off:
        heading = "Near-duplicate search switched off (near_duplicates.max_distance: null)"
    parts = [_PAGE, f"<h3>{html.escape(heading)}</h3>"]
    parts += _clusters_html(outcomes.conflicts + outcomes.spread + outcomes.kept, options)
    parts.append(_END)
    return "".join(parts)


def _clusters_heading(clusters: Sequence[NearDuplicateCluster], max_distance: int | None) -> str:
    outcomes = cluster_outcomes(clusters)
    conflicts = len(outcomes.conflicts)
    within = f" within {max_distance} bits" if max_distance is not None else ""
    line = (
        f"{_count(len(clusters), 'near-duplicate cluster')}{within}: {len(outcomes.kept)} kept "
        f"together in one split, {_count(conflicts, 'label conflict')} (left out)"
    )
    if outcomes.spread:
        line += f", {len(outcomes.spread)} left in several split folders (leakage remains)"
    return (
        line + f"; leakage prevented: {outcomes.moved} images placed in their copies' split "
        "instead of their own"
    )


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _clusters_html(clusters: Sequence[NearDuplicateCluster], options: DecodeOptions) -> list[str]:
    parts = []
    for cluster in clusters[:MAX_GROUPS_SHOWN]:
        title = (
            "near-duplicates, label conflict, all left out"
            if cluster.conflict
            else "left in several split folders (leakage: report)"
            if cluster.spread
            else "kept in one split"
        )
        parts.append(
            f"<h4>cluster <code>{cluster.id}</code>: {len(cluster.members)} images, {title}</h4>"
            + _ROW
        )
        for member in cluster.members:
            where = member.split or "left out"
            if member.moved_from:
                where += f" (moved from {member.moved_from})"
            parts.append(
                _figure(
                    member.path,
                    member.label,
                    f"{html.escape(where)}<br>{member.distance} bits to its nearest copy",
                    options,
                )
            )
        parts.append("</div>")
    if len(clusters) > MAX_GROUPS_SHOWN:
        parts.append(f"<p>and {len(clusters) - MAX_GROUPS_SHOWN} more clusters</p>")
    return parts


def _exact_sets_html(sets: Sequence[ExactCopies], options: DecodeOptions) -> list[str]:
    parts = []
    for copies in sets[:MAX_GROUPS_SHOWN]:
        title = "label conflict, all left out" if copies.conflict else "one kept"
        parts.append(
            f"<h4>identical pixels <code>{copies.pixel_sha256[:12]}</code>: "
            f"{len(copies.files)} files, {title}</h4>{_ROW}"
        )
        for copy in copies.files:
            status = "kept" if copy.kept else "left out" if copies.conflict else "skipped"
            parts.append(_figure(copy.path, copy.label, status, options))
        parts.append("</div>")
    if len(sets) > MAX_GROUPS_SHOWN:
        parts.append(f"<p>and {len(sets) - MAX_GROUPS_SHOWN} more</p>")
    return parts


def _vanished_rows(images: Sequence[Vanished]) -> list[str]:
    return [
        f"{v.path} (sha256 {v.sha256[:12]})"
        + (f", now in {v.replaced_by[:12]}" if v.replaced_by else "")
        for v in images
    ]


def _rows_html(rows: Sequence[str]) -> list[str]:
    items = "".join(f"<li>{html.escape(row)}</li>" for row in rows[:MAX_ROWS_SHOWN])
    more = f"<p>and {len(rows) - MAX_ROWS_SHOWN} more</p>" if len(rows) > MAX_ROWS_SHOWN else ""
    return [f"<ul style='font-size:13px'>{items}</ul>{more}"]


def _figure(path: str, label: str, caption: str, options: DecodeOptions) -> str:
    """A thumbnail with its label, a caption (HTML) and its path."""
    return (
        "<figure style='margin:0;width:150px;font-size:12px'>"
        f"{_thumbnail(path, options)}"
        f"<figcaption><b>{html.escape(label)}</b>, {caption}<br>"  # caption: escaped HTML
        f"<span style='word-break:break-all'>{html.escape(path)}</span>"
        "</figcaption></figure>"
    )


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
