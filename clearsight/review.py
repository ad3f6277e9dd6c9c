"""Expert review: the queue of doubtful predictions, the reviews, the audit log.

Three tables live in the same database as the image catalog (SQLite by
default, any SQLAlchemy URL; their schema is migrated by
:mod:`clearsight.migrations` when a :class:`ReviewStore` opens):

* ``review_predictions``: every prediction kept for review (the answer was
  uncertain, or a user flagged it; or the train pipeline's label check
  suspects a ``possible label error`` of a dataset image), with the image's content hash and where
  its bytes are stored, the predicted label and confidence, the model that
  answered, who asked and when;
* ``reviews``: who confirmed or corrected which prediction, with what label
  and when; reviewed images form the labelled production set that the next
  ingestion merges with the reference data (provenance ``review``). A
  verdict on a prediction the endpoint made (the queue entry keeps the
  answer's request id ``puid`` and image index ``item``) is also that
  answer's ground truth: a ``ground_truths`` row with source ``review`` and
  the reviewer as ``recorded_by`` (:mod:`clearsight.prediction_log`), written
  in the review's transaction;
* ``audit_log``: every review and admin action (deploy, promote, rollback)
  with who did it, when, and whether it worked; and the review app's
  sign-ins (:data:`SIGN_IN`, :data:`LOCKOUT`, :data:`PASSWORD_RESET`, with
  the account's name as ``target``), from which the app counts failed
  sign-ins (:meth:`ReviewStore.sign_in_history`), so a lockout holds across
  app restarts and processes.

Framework-free: the caller injects a :class:`~clearsight.storage.ContentStore`
(the app gives it the active artifact store through ZenML's file I/O).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from clearsight.catalog import check_url
from clearsight.dataset import (
    DatasetManifest,
    ImageRecord,
    KnownImage,
    SkippedFile,
    assign_split,
    known_index,
)
from clearsight.deidentify import stored_copy
from clearsight.errors import CatalogError, ClearsightError
from clearsight.images import DEFAULT_MAX_PIXELS, InvalidImageError, inspect_image
from clearsight.migrations import upgrade_database
from clearsight.prediction_log import GROUND_TRUTHS
from clearsight.prediction_log import REVIEW as REVIEW_SOURCE
from clearsight.storage import ContentStore

PENDING = "pending"
REVIEWED = "reviewed"
CONFIRMED = "confirmed"
CORRECTED = "corrected"
REJECTED = "rejected"
REVIEW_PROVENANCE = "review"
# Queue entries made by the training pipeline's label-error check (not by a
# user): ``requested_by`` holds this name, ``label`` the given label,
# ``confidence`` its out-of-sample probability (self-confidence) and
# ``probabilities`` the out-of-sample probabilities, whose argmax is the
# suggested label. No schema change: older databases hold them as they are.
LABEL_REVIEW_REQUESTER = "clearsight:label-review"
LABEL_ERROR_REASON = "possible label error"
# Audit actions of the review app's sign-in (``target``: the account's name):
# a sign-in attempt (outcome ``ok``, ``failed``, or ``refused`` while locked
# out, when the password is not checked), the lockout that the last failed
# attempt started (outcome ``locked``), and a password reset, which ends a lockout.
SIGN_IN = "sign-in"
LOCKOUT = "lockout"
PASSWORD_RESET = "password-reset"

metadata = MetaData()

PREDICTIONS = Table(
    "review_predictions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("uri", String(4096), nullable=False),
    Column("filename", String(1024), nullable=False, default=""),
    Column("format", String(16), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("num_bytes", Integer, nullable=False),
    Column("label", String(255), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("uncertain", Boolean, nullable=False),
    Column("flagged", Boolean, nullable=False, default=False),
    Column("probabilities", JSON, nullable=False),
    Column("model_name", String(255), nullable=False, default=""),
    Column("model_version", String(64), nullable=False, default=""),
    Column("registered_version", String(64), nullable=False, default=""),
    Column("mlflow_run_id", String(64), nullable=False, default=""),
    Column("requested_by", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, default=PENDING, index=True),
    Column("puid", String(128), nullable=True, index=True),  # the endpoint's request id
    Column("item", Integer, nullable=True),  # the image's index in that request
)

REVIEWS = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", Integer, ForeignKey("review_predictions.id"), nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
    Column("verdict", String(16), nullable=False),
    Column("label", String(255), nullable=True),
    Column("predicted_label", String(255), nullable=False),
    Column("reviewer", String(255), nullable=False),
    Column("reviewed_at", DateTime(timezone=True), nullable=False),
    Column("note", Text, nullable=False, default=""),
)

AUDIT_LOG = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("role", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=False, default=""),
    Column("outcome", String(16), nullable=False),
    Column("details", JSON, nullable=False),
    # An account's sign-in history, newest first (revision 0006_audit_log_target).
    Index("ix_audit_log_target_at", "target", "at"),
)


class ReviewError(ClearsightError):
    """A review cannot be recorded (unknown item, already reviewed, bad label)."""


@dataclass(frozen=True)
class ReviewedImage:
    """One image of the labelled production set: its latest usable review."""

    sha256: str
    label: str
    uri: str
    format: str
    width: int
    height: int
    mode: str
    num_bytes: int
    reviewer: str
    reviewed_at: datetime
    verdict: str
    predicted_label: str
    model_version: str
    prediction_id: int
    reason: str = ""


def _utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; every time here is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _suggested(probabilities: dict[str, float] | None) -> str | None:
    """The most probable class of a stored probability mapping."""
    return max(probabilities, key=probabilities.__getitem__) if probabilities else None


def entry_reason(entry: dict[str, Any]) -> str:
    """Why a queue entry waits for review: ``possible label error``, ``uncertain``, ``flagged``."""
    if entry.get("requested_by") == LABEL_REVIEW_REQUESTER:
        return LABEL_ERROR_REASON
    return ", ".join(name for name in ("uncertain", "flagged") if entry.get(name))


def _model_columns(model: dict[str, Any], version: str) -> dict[str, str]:
    """The queue columns that name the model version an entry is about."""
    return {
        "model_name": str(model.get("model_name", "")),
        "model_version": version,
        "registered_version": str(model.get("registered_version", "")),
        "mlflow_run_id": str(model.get("mlflow_run_id", "")),
    }


class ReviewStore:
    """Read and write the review queue, the reviews and the audit log."""

    def __init__(self, url: str) -> None:
        self.url = check_url(url)
        parsed = make_url(url)
        try:
            if parsed.get_backend_name() == "sqlite":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            upgrade_database(url)  # the schema is Alembic's (clearsight/migrations)
            self.engine: Engine = create_engine(url, future=True)
        except (OSError, SQLAlchemyError) as error:
            raise CatalogError(
                f"Cannot open the review tables at {parsed.render_as_string(hide_password=True)}:"
                f" {error.__class__.__name__}: {error}"
            ) from error

    # The queue -----------------------------------------------------------

    def keep_prediction(
        self,
        data: bytes,
        answer: dict[str, Any],
        *,
        store: ContentStore,
        requested_by: str,
        threshold: float,
        flagged: bool = False,
        filename: str = "",
        model: dict[str, Any] | None = None,
        puid: str | None = None,
        item: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> int:
        """Store the image by content and queue its prediction for review.

        A DICOM file is stored (and hashed) as its de-identified copy
        (:func:`clearsight.deidentify.stored_copy`), never as uploaded.

        A pending entry for the same image and model version is reused (and
        marked flagged when asked), so uploading an image twice queues it once;
        it keeps the request id it was queued with (or takes this one if it
        had none).

        Args:
            data: The image bytes the endpoint answered for.
            answer: One answer of the endpoint (``label``, ``confidence``,
                ``probabilities``).
            store: Where the image bytes are kept, by SHA-256.
            requested_by: The user who asked for the prediction.
            threshold: The confidence threshold in force for ``uncertain``.
            flagged: The user asked for a review explicitly.
            filename: The uploaded file's name, for the reviewer.
            model: The answering model (``model_name``, ``model_version``,
                ``registered_version``, ``mlflow_run_id``).
            puid: The endpoint's request id of the answer (its ``meta.puid``);
                with ``item``, the verdict becomes that answer's ground truth.
            item: The image's index in that request.
            max_pixels: Decompression-bomb guard for the stored image.

        Returns:
            The id of the queue entry.

        Raises:
            InvalidImageError: When ``data`` is not a usable image (``clearsight.decode``),
                or a DICOM file that cannot be de-identified
                (``clearsight.deidentify.DeidentificationError``, a subclass).
        """
        data = stored_copy(data)  # a DICOM file is queued as its de-identified copy
        info = inspect_image(data, min_side=1, max_pixels=max_pixels)
        model = model or {}
        confidence = float(answer["confidence"])
        uncertain = confidence < threshold
        version = str(model.get("model_version", ""))
        uri = store.uri_for(info.sha256, info.format)
        if not store.fs.exists(uri):
            store.put(uri, data)
        with self.engine.begin() as connection:
            existing = connection.execute(
                select(PREDICTIONS.c.id, PREDICTIONS.c.flagged, PREDICTIONS.c.puid).where(
                    PREDICTIONS.c.sha256 == info.sha256,
                    PREDICTIONS.c.model_version == version,
                    PREDICTIONS.c.status == PENDING,
                    PREDICTIONS.c.requested_by != LABEL_REVIEW_REQUESTER,
                )
            ).first()
            if existing is not None:
                changes: dict[str, Any] = {}
                if flagged and not existing.flagged:
                    changes["flagged"] = True
                if existing.puid is None and puid is not None and item is not None:
                    changes.update(puid=puid, item=item)
                if changes:
                    connection.execute(
                        update(PREDICTIONS).where(PREDICTIONS.c.id == existing.id).values(**changes)
                    )
                return int(existing.id)
            return int(
                connection.execute(
                    insert(PREDICTIONS).values(
                        sha256=info.sha256,
                        uri=uri,
                        filename=filename[:1024],
                        format=info.format,
                        width=info.width,
                        height=info.height,
                        mode=info.mode,
                        num_bytes=info.num_bytes,
                        label=str(answer["label"]),
                        confidence=confidence,
                        threshold=float(threshold),
                        uncertain=uncertain,
                        flagged=flagged,
                        probabilities={
                            str(k): float(v) for k, v in answer.get("probabilities", {}).items()
                        },
                        **_model_columns(model, version),
                        requested_by=requested_by,
                        created_at=datetime.now(UTC),
                        status=PENDING,
                        puid=puid if item is not None else None,
                        item=item if puid is not None else None,
                    )
                ).inserted_primary_key[0]
            )

    def keep_label_issue(
        self,
        record: ImageRecord,
        *,
        given_label: str,
        probabilities: dict[str, float],
        model: dict[str, Any] | None = None,
    ) -> tuple[int, bool]:
        """Queue an image of the dataset whose label is probably wrong.

        The image is already in the content store (``record.uri``, a dataset
        record after ingestion); nothing is copied. The entry holds the given
        label as ``label``, its out-of-sample probability as ``confidence``
        and the out-of-sample ``probabilities``, whose argmax is the suggested
        label; ``requested_by`` is :data:`LABEL_REVIEW_REQUESTER`. A verdict is
        recorded with :meth:`review` like any other: confirming the given label
        gives ``confirmed``, taking the suggested (or another) label gives
        ``corrected``.

        An image is queued once per model version, and not again while an
        earlier suspicion of it waits: when a label-error entry for the same
        image exists for the same ``model_version`` (any status) or is still
        pending (any version), its id is returned and nothing is added.

        Args:
            record: The dataset record (sha256, store uri, format, size, mode).
            given_label: The label the dataset gives the image.
            probabilities: Out-of-sample probability of every class, in [0, 1].
            model: The model version checked (``model_name``, ``model_version``,
                ``registered_version``, ``mlflow_run_id``).

        Returns:
            The entry's id and whether it was added now.
        """
        model = model or {}
        version = str(model.get("model_version", ""))
        probabilities = {str(k): float(v) for k, v in probabilities.items()}
        if given_label not in probabilities:
            raise ReviewError(
                f"Given label {given_label!r} is not one of the classes {sorted(probabilities)}."
            )
        with self.engine.begin() as connection:
            existing = connection.execute(
                select(PREDICTIONS.c.id).where(
                    PREDICTIONS.c.sha256 == record.sha256,
                    PREDICTIONS.c.requested_by == LABEL_REVIEW_REQUESTER,
                    or_(
                        PREDICTIONS.c.model_version == version,
                        PREDICTIONS.c.status == PENDING,
                    ),
                )
            ).first()
            if existing is not None:
                return int(existing.id), False
            return (
                int(
                    connection.execute(
                        insert(PREDICTIONS).values(
                            sha256=record.sha256,
                            uri=record.uri,
                            filename=record.source_path[-1024:],
                            format=record.format,
                            width=record.width,
                            height=record.height,
                            mode=record.mode,
                            num_bytes=record.num_bytes,
                            label=given_label,
                            confidence=probabilities[given_label],
                            threshold=0.0,
                            uncertain=False,
                            flagged=False,
                            probabilities=probabilities,
                            **_model_columns(model, version),
                            requested_by=LABEL_REVIEW_REQUESTER,
                            created_at=datetime.now(UTC),
                            status=PENDING,
                        )
                    ).inserted_primary_key[0]
                ),
                True,
            )

    def queue(
        self, status: str | None = PENDING, limit: int = 200, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Queue entries, oldest first (``status=None``: every entry).

        Each entry is a row of ``review_predictions`` plus ``reason`` (see
        :func:`entry_reason`); label-error entries also carry ``given_label``
        and ``suggested_label``.

        Args:
            status: Only entries with this status; ``None`` for all.
            limit: At most this many entries.
            offset: Skip this many first (paging: ``offset = page * limit``).
        """
        query = select(PREDICTIONS).order_by(PREDICTIONS.c.created_at, PREDICTIONS.c.id)
        if status is not None:
            query = query.where(PREDICTIONS.c.status == status)
        query = query.limit(limit).offset(max(0, offset))
        with self.engine.connect() as connection:
            entries = [dict(r._mapping) for r in connection.execute(query)]
        for entry in entries:
            entry["reason"] = entry_reason(entry)
            if entry["reason"] == LABEL_ERROR_REASON:
                entry["given_label"] = entry["label"]
                entry["suggested_label"] = _suggested(entry["probabilities"])
        return entries

    def pending_count(self) -> int:
        """Number of predictions waiting for a review."""
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(PREDICTIONS)
                    .where(PREDICTIONS.c.status == PENDING)
                ).scalar_one()
            )

    def review(
        self,
        prediction_id: int,
        *,
        reviewer: str,
        label: str | None,
        note: str = "",
        reject: bool = False,
        role: str = "reviewer",
    ) -> dict[str, Any]:
        """Confirm or correct a queued prediction, or reject the image.

        A confirmed or corrected entry that came from the endpoint (it has a
        ``puid`` and ``item``) also gets a ``ground_truths`` row: the true
        label of that answer, source ``review``, ``recorded_by`` the reviewer,
        in the same transaction as the review. A rejected image has no true
        label, so nothing is recorded there.

        Args:
            prediction_id: The queue entry.
            reviewer: Who reviewed it.
            label: The true label (``None`` when rejecting).
            note: Free text for the record.
            reject: The image is unusable (not a valid case); it is left out
                of the labelled set.
            role: The reviewer's role (``reviewer`` or ``admin``), for the audit log.

        Returns:
            The review row, plus ``ground_truth``: the recorded truth
            (``puid``, ``item``, ``label``) or None.

        Raises:
            ReviewError: Unknown entry, already reviewed, or a label outside
                the model's classes.
        """
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            row = connection.execute(
                select(PREDICTIONS).where(PREDICTIONS.c.id == prediction_id)
            ).first()
            if row is None:
                raise ReviewError(f"No prediction #{prediction_id} in the review queue.")
            if reject:
                verdict, label = REJECTED, None
            else:
                classes = set(row.probabilities or {})
                if not label or (classes and label not in classes):
                    raise ReviewError(
                        f"Label {label!r} is not one of the model's classes: {sorted(classes)}."
                    )
                verdict = CONFIRMED if label == row.label else CORRECTED
            claimed = connection.execute(
                update(PREDICTIONS)
                .where(PREDICTIONS.c.id == prediction_id, PREDICTIONS.c.status == PENDING)
                .values(status=REVIEWED)
            )
            if claimed.rowcount != 1:
                earlier = connection.execute(
                    select(REVIEWS.c.reviewer, REVIEWS.c.reviewed_at)
                    .where(REVIEWS.c.prediction_id == prediction_id)
                    .order_by(REVIEWS.c.id.desc())
                ).first()
                who = f" by {earlier.reviewer} at {earlier.reviewed_at}" if earlier else ""
                raise ReviewError(f"Prediction #{prediction_id} was already reviewed{who}.")
            values = {
                "prediction_id": prediction_id,
                "sha256": row.sha256,
                "verdict": verdict,
                "label": label,
                "predicted_label": row.label,
                "reviewer": reviewer,
                "reviewed_at": now,
                "note": note,
            }
            review_id = connection.execute(insert(REVIEWS).values(**values)).inserted_primary_key[0]
            truth = None
            if label is not None and row.puid is not None and row.item is not None:
                truth = {"puid": row.puid, "item": int(row.item), "label": label}
                connection.execute(
                    insert(GROUND_TRUTHS).values(
                        **truth, source=REVIEW_SOURCE, created_at=now, recorded_by=reviewer
                    )
                )
            connection.execute(
                insert(AUDIT_LOG).values(
                    at=now,
                    actor=reviewer,
                    role=role,
                    action=f"review:{verdict}",
                    target=f"prediction #{prediction_id} ({row.sha256[:12]})",
                    outcome="ok",
                    details={"label": label, "predicted": row.label, "note": note},
                )
            )
        return {"id": int(review_id), **values, "ground_truth": truth}

    def reviews(self, limit: int = 500) -> list[dict[str, Any]]:
        """Every review, newest first."""
        query = select(REVIEWS).order_by(REVIEWS.c.reviewed_at.desc(), REVIEWS.c.id.desc())
        with self.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(query.limit(limit))]

    def review_count(self, reviewer: str | None = None) -> int:
        """Number of reviews recorded, all or by one reviewer (a COUNT, not a fetch)."""
        query = select(func.count()).select_from(REVIEWS)
        if reviewer is not None:
            query = query.where(REVIEWS.c.reviewer == reviewer)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def reviewed_images(self) -> list[ReviewedImage]:
        """The labelled production set: per image, its latest review, unless rejected."""
        query = (
            select(REVIEWS, PREDICTIONS)
            .join(PREDICTIONS, PREDICTIONS.c.id == REVIEWS.c.prediction_id)
            .order_by(REVIEWS.c.reviewed_at, REVIEWS.c.id)
        )
        latest: dict[str, ReviewedImage | None] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                m = row._mapping
                if m[REVIEWS.c.verdict] == REJECTED:
                    latest[m[REVIEWS.c.sha256]] = None
                    continue
                latest[m[REVIEWS.c.sha256]] = ReviewedImage(
                    sha256=m[REVIEWS.c.sha256],
                    label=m[REVIEWS.c.label],
                    uri=m[PREDICTIONS.c.uri],
                    format=m[PREDICTIONS.c.format],
                    width=m[PREDICTIONS.c.width],
                    height=m[PREDICTIONS.c.height],
                    mode=m[PREDICTIONS.c.mode],
                    num_bytes=m[PREDICTIONS.c.num_bytes],
                    reviewer=m[REVIEWS.c.reviewer],
                    reviewed_at=_utc(m[REVIEWS.c.reviewed_at]),
                    verdict=m[REVIEWS.c.verdict],
                    predicted_label=m[REVIEWS.c.predicted_label],
                    model_version=m[PREDICTIONS.c.model_version],
                    prediction_id=m[PREDICTIONS.c.id],
                    reason=entry_reason(
                        {
                            "requested_by": m[PREDICTIONS.c.requested_by],
                            "uncertain": m[PREDICTIONS.c.uncertain],
                            "flagged": m[PREDICTIONS.c.flagged],
                        }
                    ),
                )
        return sorted((r for r in latest.values() if r is not None), key=lambda r: r.sha256)

    # The audit log -------------------------------------------------------

    def record_action(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
        at: datetime | None = None,
    ) -> int:
        """Append one admin (or other) action to the audit log (``at``: now, unless given)."""
        with self.engine.begin() as connection:
            return int(
                connection.execute(
                    insert(AUDIT_LOG).values(
                        at=at or datetime.now(UTC),
                        actor=actor,
                        role=role,
                        action=action,
                        target=target,
                        outcome=outcome,
                        details=details or {},
                    )
                ).inserted_primary_key[0]
            )

    def audit_log(
        self, limit: int = 100, exclude_actions: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        """The latest audit entries, newest first, without the ``exclude_actions``."""
        query = select(AUDIT_LOG).order_by(AUDIT_LOG.c.id.desc()).limit(limit)
        if exclude_actions:
            query = query.where(AUDIT_LOG.c.action.not_in(exclude_actions))
        with self.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(query)]

    def sign_in_history(self, name: str, since: datetime, limit: int) -> list[dict[str, Any]]:
        """The events that decide whether ``name`` may sign in, newest first.

        Successful and failed sign-ins, lockouts and password resets of the
        account ``name`` after ``since``; attempts refused during a lockout are
        left out (they neither count nor end anything), so ``limit`` rows
        always reach back to the last event that matters.

        Args:
            name: The account (the audit entries' ``target``).
            since: Only events after this time (the lockout period ago).
            limit: At most this many events (the allowed attempts, plus one).
        """
        query = (
            select(AUDIT_LOG.c.at, AUDIT_LOG.c.action, AUDIT_LOG.c.outcome)
            .where(
                AUDIT_LOG.c.target == name,
                AUDIT_LOG.c.at > since,
                or_(
                    AUDIT_LOG.c.action.in_((LOCKOUT, PASSWORD_RESET)),
                    (AUDIT_LOG.c.action == SIGN_IN) & AUDIT_LOG.c.outcome.in_(("ok", "failed")),
                ),
            )
            .order_by(AUDIT_LOG.c.at.desc(), AUDIT_LOG.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [{**r._mapping, "at": _utc(r.at)} for r in connection.execute(query)]

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


def reviewed_records(
    reviewed: Iterable[ReviewedImage],
    read: Callable[[str], bytes],
    split_ratios: tuple[float, float, float],
    *,
    min_side: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    known: Iterable[KnownImage] | None = None,
) -> tuple[list[ImageRecord], list[SkippedFile]]:
    """Turn the labelled production set into dataset records, re-validating every image.

    Each stored image is read back and decoded: bytes that are missing,
    unreadable or no longer match their hash are skipped with the reason.
    Splits come from the pixel hash, like any unsplit folder (or from the key
    the catalog recorded for an image it knows), so a reviewed image never
    moves between splits when reviews accumulate.

    Args:
        reviewed: The reviewed images (``ReviewStore.reviewed_images()``).
        read: Reads the bytes at a store URI (``zenml.io.fileio`` in a step).
        split_ratios: Train, val and test shares.
        min_side: Smallest accepted image side.
        max_pixels: Decompression-bomb guard.
        known: The catalog's images (``Catalog.known_images()``), or None.

    Returns:
        Records with provenance ``review`` (uris in the store) and the skipped images.
    """
    index = known_index(known)
    records: list[ImageRecord] = []
    skipped: list[SkippedFile] = []
    for image in reviewed:
        where = f"review of prediction #{image.prediction_id} ({image.uri})"
        try:
            data = read(image.uri)
        except (OSError, FileNotFoundError) as error:
            skipped.append(SkippedFile(path=where, reason=f"unreadable: {error}"))
            continue
        try:
            info = inspect_image(data, min_side=min_side, max_pixels=max_pixels)
        except InvalidImageError as error:
            skipped.append(SkippedFile(path=where, reason=str(error)))
            continue
        if info.sha256 != image.sha256:
            skipped.append(
                SkippedFile(path=where, reason="stored bytes no longer match their SHA-256")
            )
            continue
        seen = index.get(info.sha256) or index.get(f"pixels:{info.pixel_sha256}")
        key = seen.split_key if seen is not None else info.pixel_sha256 or info.sha256
        records.append(
            ImageRecord(
                sha256=info.sha256,
                label=image.label,
                split=assign_split(key, split_ratios),
                pixel_sha256=info.pixel_sha256 or None,
                split_key=key,
                uri=image.uri,
                width=info.width,
                height=info.height,
                mode=info.mode,
                format=info.format,
                num_bytes=info.num_bytes,
                source_path=image.uri,
                provenance=REVIEW_PROVENANCE,
                reviewed_by=image.reviewer,
                reviewed_at=image.reviewed_at,
            )
        )
    return records, skipped


def apply_label_corrections(
    manifest: DatasetManifest,
    reviewed: Iterable[ReviewedImage],
    records: Iterable[ImageRecord],
) -> tuple[DatasetManifest, list[ImageRecord], list[ImageRecord]]:
    """Let the reviews of suspected label errors relabel the reference data.

    A review of an image queued as a ``possible label error`` whose label
    differs from the folder's replaces the folder's label: the folder record
    keeps its split, source and uri and takes the reviewed label with
    provenance ``review`` and the reviewer. Every other review is left for
    :func:`clearsight.dataset.merge_reviewed`, whose rules are unchanged (a
    user's review that disagrees with the folder is still a conflict; a
    confirmed given label is a duplicate; a rejected suspect keeps its folder
    label).

    Args:
        manifest: The manifest scanned from the reference folder.
        reviewed: The labelled production set (``ReviewStore.reviewed_images()``).
        records: Their dataset records (``reviewed_records``).

    Returns:
        The relabelled manifest, the records still to merge, and the folder
        records that were relabelled (new label, provenance ``review``).
    """
    suspects = {r.sha256 for r in reviewed if r.reason == LABEL_ERROR_REASON}
    by_hash = {r.sha256: r for r in manifest.records}
    corrections: dict[str, ImageRecord] = {}
    remaining: list[ImageRecord] = []
    for record in records:
        known = by_hash.get(record.sha256)
        if record.sha256 in suspects and known is not None and known.label != record.label:
            corrections[record.sha256] = known.model_copy(
                update={
                    "label": record.label,
                    "provenance": REVIEW_PROVENANCE,
                    "reviewed_by": record.reviewed_by,
                    "reviewed_at": record.reviewed_at,
                }
            )
        else:
            remaining.append(record)
    if not corrections:
        return manifest, remaining, []
    relabelled = manifest.model_copy(
        update={"records": [corrections.get(r.sha256, r) for r in manifest.records]}
    )
    return relabelled, remaining, list(corrections.values())
