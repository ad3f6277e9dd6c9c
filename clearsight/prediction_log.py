"""The prediction log: every answered image, written in the background; ground truths.

The model server records each image it answered (:class:`LoggedRequest`, one
per request) with :meth:`PredictionLog.log`, which only appends to a bounded
in-memory queue and returns at once: it never waits for the database, never
raises, and never hashes or decodes anything. A writer thread (started on
first use, in the process that logs: after gunicorn's fork) takes the queue in
batches, computes each image's byte SHA-256 and pixel identity
(:func:`clearsight.images.inspect_image`, the catalog's ``pixel_sha256``) and
inserts one row per image into ``prediction_log`` in one transaction per
batch. A full queue drops the request and counts it (``queue_full``); a batch
the database refuses is dropped and counted (``database_error``) and the
error is logged once until writes succeed again. Rows older than the
retention are deleted by the writer at most once an hour.

Ground truths (``ground_truths``) are the true labels of answered images, by
Seldon request id (``puid``) and image index (``item``), with their source
(``feedback``: Seldon's feedback call; ``review``: a reviewer's verdict on a
queued answer, :mod:`clearsight.review`). :func:`search` reads the log back,
filtered and paged, with each answer's ground truth.

Both tables live in the catalog database (:func:`clearsight.catalog.resolve_catalog_url`;
a SQLite catalog is switched to WAL mode so that the server's writes and
other readers do not block each other); their schema is migrated by
:mod:`clearsight.migrations` (revisions ``0003_prediction_log`` and
``0004_monitoring_features``). No image bytes are stored: only their
hashes and their monitoring features (``features``: the statistics of the
picture the model answered and the embedding's principal components, both
computed by the server while answering, and the geometry the writer reads
from the file's header; see :mod:`clearsight.features`). A DICOM image is
hashed, measured and kept as its de-identified copy
(:func:`clearsight.deidentify.stored_copy`): no identifying attribute of it
reaches the log or the store.

Framework-free: no ZenML, no seldon-core.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import logging
import math
import os
import random as _random
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Engine, make_url

from clearsight.catalog import check_url, display_url, resolve_catalog_url
from clearsight.decode import DEFAULT_MAX_PIXELS, DEFAULT_OPTIONS, DecodeOptions, read_header
from clearsight.deidentify import DeidentificationError, stored_copy
from clearsight.images import inspect_image, sha256_bytes
from clearsight.migrations import upgrade_database
from clearsight.serving import MAX_PUID_LENGTH

logger = logging.getLogger(__name__)

#: ``on``/``off`` (also 1/0, true/false, yes/no): overrides ``serving.json``'s ``prediction_log``.
ENABLED_ENV = "CLEARSIGHT_PREDICTION_LOG"
#: Days of rows to keep (0: keep forever): overrides ``prediction_log_retention_days``.
RETENTION_ENV = "CLEARSIGHT_PREDICTION_LOG_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 90
#: Requests waiting to be written, at most; more are dropped and counted.
DEFAULT_MAX_PENDING = 10_000
#: Image bytes held by waiting requests, at most (a bounded queue of photos).
DEFAULT_MAX_PENDING_BYTES = 256 * 2**20
DEFAULT_BATCH_SIZE = 256
#: Seconds an entry waits at most before the writer writes what it has.
DEFAULT_FLUSH_INTERVAL = 0.5
#: Seconds between two retention deletions by one writer.
RETENTION_EVERY = 3600.0
#: Seconds a SQLite write waits for another writer's lock before the batch is dropped.
SQLITE_BUSY_TIMEOUT = 10.0
#: Seconds the process waits at exit for the queue to be written.
EXIT_FLUSH_TIMEOUT = 5.0
#: Client ``meta.tags`` larger than this (as JSON) are not stored; a note says so.
MAX_TAGS_BYTES = 4096

QUEUE_FULL = "queue_full"
DATABASE_ERROR = "database_error"
CLOSED = "closed"
FEEDBACK = "feedback"
REVIEW = "review"
#: The sources of ``ground_truths`` rows.
TRUTH_SOURCES = (FEEDBACK, REVIEW)
IMAGES = "images"
TENSOR = "tensor"
#: Request ids of the deploy pipeline's smoke test start with this: the
#: prediction log keeps its answer, the monitor leaves it out of the traffic.
SMOKE_TEST_PUID_PREFIX = "clearsight-smoke-test-"

#: Which answered images' bytes are kept (``keep_images``).
KEEP_NEVER, KEEP_UNCERTAIN, KEEP_ALL = "never", "uncertain", "all"
KEEP_IMAGES = (KEEP_NEVER, KEEP_UNCERTAIN, KEEP_ALL)
#: Kept images go to ``<artifact store>/prediction-log/images/sha256/<ab>/<sha256>.<ext>``.
PREDICTION_IMAGES_FOLDER = "prediction-log"

metadata = MetaData()

PREDICTION_LOG = Table(
    "prediction_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("puid", String(MAX_PUID_LENGTH), nullable=False, index=True),
    Column("item", Integer, nullable=False),  # index of the image in its request
    Column("model_name", String(255), nullable=False),
    Column("model_version", String(64), nullable=False),  # ZenML model version
    Column("registered_version", String(64), nullable=False),  # MLflow registry version
    Column("input_kind", String(16), nullable=False),  # images | tensor
    Column("image_sha256", String(64), nullable=True),  # None for tensors
    Column("pixel_sha256", String(64), nullable=True, index=True),
    Column("label", String(255), nullable=False),
    Column("confidence", Float, nullable=False),  # calibrated
    Column("uncertain", Boolean, nullable=False),
    Column("top_k", JSON, nullable=False),
    Column("tags", JSON, nullable=True),  # the client's meta.tags
    Column("features", JSON, nullable=True),  # monitoring features (clearsight.features)
    Column("image_uri", String(4096), nullable=True),  # where the bytes were kept, if they were
)

GROUND_TRUTHS = Table(
    "ground_truths",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("puid", String(MAX_PUID_LENGTH), nullable=False, index=True),
    Column("item", Integer, nullable=False),
    Column("label", String(255), nullable=False),
    Column("source", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("recorded_by", String(255), nullable=True),
)


_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


def log_settings(
    enabled: bool, retention_days: int, environ: Mapping[str, str] | None = None
) -> tuple[bool, int]:
    """The configured switch and retention, overridden by the environment when set.

    Args:
        enabled: ``prediction_log`` of the served model's ``serving.json``.
        retention_days: ``prediction_log_retention_days`` of ``serving.json``.
        environ: Where to read :data:`ENABLED_ENV` and :data:`RETENTION_ENV`
            (default: ``os.environ``).

    Returns:
        ``(enabled, retention_days)``; 0 days keeps every row.

    Raises:
        ValueError: A variable holds something else than documented (the
            server must not start with a setting it cannot honour).
    """
    env = os.environ if environ is None else environ
    switch = env.get(ENABLED_ENV, "").strip().lower()
    if switch in _TRUE:
        enabled = True
    elif switch in _FALSE:
        enabled = False
    elif switch:
        raise ValueError(f"{ENABLED_ENV}={switch!r}: use on or off (1/0, true/false, yes/no)")
    days = env.get(RETENTION_ENV, "").strip()
    if days:
        if not days.isdigit():
            raise ValueError(f"{RETENTION_ENV}={days!r}: use a whole number of days (0: forever)")
        retention_days = int(days)
    if retention_days < 0:
        raise ValueError(f"retention of {retention_days} days: use 0 (forever) or more")
    return enabled, retention_days


def check_keep_images(keep_images: str, sample_share: float) -> None:
    """Refuse a ``keep_images`` setting the writer cannot follow.

    Raises:
        ValueError: ``keep_images`` is not one of :data:`KEEP_IMAGES`, or the
            share is outside [0, 1].
    """
    if keep_images not in KEEP_IMAGES:
        raise ValueError(
            f"keep_images must be one of {', '.join(KEEP_IMAGES)}, not {keep_images!r}"
        )
    if not 0.0 <= sample_share <= 1.0:
        raise ValueError(f"keep_images_sample_share must be between 0 and 1, not {sample_share}")


def new_puid() -> str:
    """A request id as Seldon's executor makes one when none is given (a UUID4)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One answered request, as the server hands it to the log (nothing computed yet).

    Attributes:
        at: When it was answered (UTC).
        puid: Seldon's request id.
        model_name: The served model.
        model_version: Its ZenML model version.
        registered_version: Its MLflow registry version.
        answers: One answer per image (``label``, ``confidence``,
            ``uncertain``, ``top_k``; :func:`clearsight.serving.shape_answers`).
        images: The encoded images as received, or None for a tensor request.
        tags: The client's ``meta.tags`` (e.g. site, device), or None.
        features: Per image, the monitoring features the server computed
            while answering (:func:`clearsight.features.picture_statistics`
            of the answered picture and the embedding's principal components
            ``embedding_i``), or None.
    """

    at: datetime
    puid: str
    model_name: str
    model_version: str
    registered_version: str
    answers: Sequence[Mapping[str, Any]]
    images: Sequence[bytes] | None = None
    tags: Mapping[str, Any] | None = None
    features: Sequence[Mapping[str, float]] | None = None

    @property
    def size(self) -> int:
        """Bytes of image data this entry holds while it waits."""
        return sum(len(image) for image in self.images) if self.images else 0


def image_hashes(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, options: DecodeOptions = DEFAULT_OPTIONS
) -> tuple[str, str | None]:
    """``(byte SHA-256, pixel identity)`` of an image; pixel identity None if it cannot be read.

    The pixel identity is the catalog's ``pixel_sha256``
    (:func:`clearsight.images.inspect_image`): the same picture with other
    metadata has the same one, so a logged image can be matched with the
    dataset's copy of it.
    """
    try:
        info = inspect_image(
            data, min_side=1, max_pixels=max_pixels, options=options, perceptual_hash=False
        )
    except Exception:  # noqa: BLE001 - it was answered; a hash failure only leaves a gap
        return sha256_bytes(data), None
    return info.sha256, info.pixel_sha256 or None


def _kept_bytes(data: bytes) -> bytes | None:
    """The bytes the log hashes and keeps: a DICOM file's de-identified copy, else ``data``.

    Returns:
        None for a DICOM file that cannot be de-identified: its row then has
        no hash, no features and no kept image (nothing of the original is written).
    """
    try:
        return stored_copy(data)
    except DeidentificationError:
        return None


def _content_store(root: str) -> Any:
    """A :class:`clearsight.storage.ContentStore` on the local disk or, for a URL, fsspec."""
    from clearsight.storage import ContentStore, LocalFileSystem

    if "://" not in root:
        return ContentStore(root, LocalFileSystem())
    import fsspec

    fs, _ = fsspec.core.url_to_fs(root)
    return ContentStore(root, fs)


def _finite(features: Mapping[str, float]) -> dict[str, float]:
    """The features as plain floats, without NaN or infinities (JSON has neither)."""
    values = {name: float(value) for name, value in features.items()}
    return {name: value for name, value in values.items() if math.isfinite(value)}


def _tags_for_storage(tags: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not tags:
        return None
    try:
        text = json.dumps(tags, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return {"_dropped": "meta.tags could not be stored as JSON"}
    if len(text.encode()) > MAX_TAGS_BYTES:
        return {"_dropped": f"meta.tags of {len(text.encode())} bytes exceeds {MAX_TAGS_BYTES}"}
    return json.loads(text)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers and the writer do not block each other; NORMAL sync is safe in WAL."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    except Exception as error:  # noqa: BLE001 - locked now: the next connection retries
        logger.debug("Could not switch the catalog to WAL mode yet: %s", error)
    finally:
        cursor.close()


def connect(url: str) -> Engine:
    """An engine on the catalog at ``url`` after migrating it; SQLite in WAL mode.

    Raises:
        CatalogError: The URL is relative, or the database cannot be migrated.
    """
    check_url(url)
    upgrade_database(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, future=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, future=True, pool_pre_ping=True)


class PredictionLog:
    """A bounded queue of answered requests and the thread that writes them in batches.

    Thread-safe; fork-safe (a child process starts with an empty queue and its
    own writer). :meth:`log` is what the answer path calls; everything else
    (hashing, database) happens in the writer thread. Feedback handling
    reads through :meth:`logged_items` and writes through :meth:`record_truths`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        retention_every: float = RETENTION_EVERY,
        hashes: Callable[[bytes], tuple[str, str | None]] = image_hashes,
        image_features: Callable[[bytes], Mapping[str, float]] | None = None,
        images_uri: str = "",
        keep_images: str = KEEP_UNCERTAIN,
        keep_images_sample_share: float = 0.0,
        random: Callable[[], float] = _random.random,
        on_dropped: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare the log; nothing is opened or started until the first entry.

        Args:
            url: The catalog's SQLAlchemy URL; None: :func:`resolve_catalog_url`
                when the writer first needs it (a failure is logged and the
                entries are dropped, like any database error).
            retention_days: Rows older than this are deleted (0: never).
            max_pending: Requests that may wait to be written; more are dropped.
            max_pending_bytes: Image bytes that may wait; more are dropped.
            batch_size: Requests written per transaction, at most.
            flush_interval: Seconds an entry waits at most before it is written.
            retention_every: Seconds between two retention deletions.
            hashes: ``bytes -> (sha256, pixel_sha256 or None)``, run by the writer.
            image_features: ``bytes -> {column: value}``, run by the writer
                on each readable image (the server passes
                :func:`clearsight.features.geometry`, a header read); merged
                with the entry's own ``features`` into the row's
                ``features``. None: not computed.
            images_uri: Root of the content store kept images are written to
                (a local folder or an fsspec URL such as ``s3://bucket/x``);
                "": no image is kept, whatever ``keep_images`` says.
            keep_images: ``never``, ``uncertain`` (the answers flagged for
                expert review) or ``all``.
            keep_images_sample_share: Share (0..1) of the other images kept
                too, drawn with ``random``.
            random: Uniform draws in [0, 1) (tests pass a fixed one).
            on_dropped: Called by the writer with ``(reason, rows)`` when rows
                could not be written (not for a full queue: :meth:`log`
                returns False and the caller counts it without waiting).
            clock: Monotonic seconds (tests pass a fake one).
        """
        self.url = url
        self.retention_days = retention_days
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retention_every = retention_every
        self.hashes = hashes
        self.image_features = image_features
        check_keep_images(keep_images, keep_images_sample_share)
        self.images_uri = images_uri
        self.keep_images = keep_images
        self.keep_images_sample_share = keep_images_sample_share
        self.random = random
        self._store: Any = None
        self._store_failing = False
        self.on_dropped = on_dropped
        self.clock = clock
        self._reset()
        _LOGS.add(self)

    def _reset(self) -> None:
        """Fresh state: at creation and in a forked child (the parent's thread is not there)."""
        self._cond = threading.Condition(threading.Lock())
        self._start_lock = threading.Lock()
        self._engine_lock = threading.Lock()
        self._pending: collections.deque[LoggedRequest] = collections.deque()
        self._pending_bytes = 0
        self._puids: dict[str, int] = {}  # puid -> images waiting or being written
        self._inflight = 0
        self._flush_requested = False
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._engine: Engine | None = None
        self._failing = False
        self._dropped_while_failing = 0
        self._last_pruned: float | None = None
        self.dropped: collections.Counter[str] = collections.Counter()  # rows, by reason
        self.written = 0  # rows
        self.pruned = 0  # rows deleted by retention
        self.images_pruned = 0  # kept images deleted with them

    # --- the answer path ---------------------------------------------------

    def log(self, entry: LoggedRequest) -> bool:
        """Queue one answered request; never blocks, never raises.

        Returns:
            True when queued; False when dropped (queue or byte budget full, or
            the log closed): the caller counts ``len(entry.answers)`` rows as
            dropped (``queue_full``), as :attr:`dropped` does.
        """
        try:
            thread = self._thread
            if thread is None or self._pid != os.getpid() or not thread.is_alive():
                self._start()
            size = entry.size
            rows = len(entry.answers)
            with self._cond:
                if self._closed:
                    self.dropped[CLOSED] += rows
                    return False
                if (
                    len(self._pending) >= self.max_pending
                    or self._pending_bytes + size > self.max_pending_bytes
                ):
                    self.dropped[QUEUE_FULL] += rows
                    return False
                self._pending.append(entry)
                self._pending_bytes += size
                self._puids[entry.puid] = self._puids.get(entry.puid, 0) + rows
                if len(self._pending) >= self.batch_size:
                    self._cond.notify()
            return True
        except Exception:  # noqa: BLE001 - logging must never fail an answer
            return False

    def _start(self) -> None:
        """Start the writer (first entry; after a fork; should it ever have died)."""
        if self._pid != os.getpid():  # forked without the at-fork hook (not expected)
            self._reset()
        with self._start_lock:
            if self._closed or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=self._run, name="clearsight-prediction-log", daemon=True
            )
            self._thread.start()

    # --- the writer thread -------------------------------------------------

    def _ready(self) -> bool:
        return self._stopping or self._flush_requested or len(self._pending) >= self.batch_size

    def _run(self) -> None:
        _lower_thread_priority()
        while True:
            with self._cond:
                self._cond.wait_for(self._ready, timeout=self.flush_interval)
                if self._stopping and not self._pending:
                    self._cond.notify_all()
                    return
                count = min(self.batch_size, len(self._pending))
                batch = [self._pending.popleft() for _ in range(count)]
                self._inflight = count
            if batch:
                self._write(batch)
            self._maybe_prune()  # before the batch counts as done: flush() waits for it too
            with self._cond:
                for entry in batch:
                    self._pending_bytes -= entry.size
                    left = self._puids.get(entry.puid, 0) - len(entry.answers)
                    if left > 0:
                        self._puids[entry.puid] = left
                    else:
                        self._puids.pop(entry.puid, None)
                self._inflight = 0
                if not self._pending:
                    self._flush_requested = False
                self._cond.notify_all()

    def _rows(self, entry: LoggedRequest) -> list[dict[str, Any]]:
        tags = _tags_for_storage(entry.tags)
        kind = IMAGES if entry.images is not None else TENSOR
        rows = []
        for item, answer in enumerate(entry.answers):
            image_sha256 = pixel_sha256 = None
            features: dict[str, float] = {}
            image_uri = None
            image = None
            if entry.images is not None and item < len(entry.images):
                image = _kept_bytes(entry.images[item])
            if image is not None:
                image_sha256, pixel_sha256 = self.hashes(image)
                if pixel_sha256 is not None and self._keeps(answer):
                    image_uri = self._keep(image, image_sha256)
                if self.image_features is not None and pixel_sha256 is not None:
                    features.update(self._image_features(image))
            if entry.features is not None and item < len(entry.features):
                features.update(entry.features[item])
            rows.append(
                {
                    "created_at": entry.at,
                    "puid": entry.puid,
                    "item": item,
                    "model_name": entry.model_name,
                    "model_version": entry.model_version,
                    "registered_version": entry.registered_version,
                    "input_kind": kind,
                    "image_sha256": image_sha256,
                    "pixel_sha256": pixel_sha256,
                    "label": answer["label"],
                    "confidence": float(answer["confidence"]),
                    "uncertain": bool(answer["uncertain"]),
                    "top_k": list(answer.get("top_k", [])),
                    "tags": tags,
                    "features": _finite(features) or None,
                    "image_uri": image_uri,
                }
            )
        return rows

    def _keeps(self, answer: Mapping[str, Any]) -> bool:
        if not self.images_uri or self.keep_images == KEEP_NEVER:
            return False
        if self.keep_images == KEEP_ALL or bool(answer.get("uncertain")):
            return True
        return self.keep_images_sample_share > 0 and self.random() < self.keep_images_sample_share

    def _keep(self, data: bytes, sha256: str) -> str | None:
        """Write the image into the content store once; its URI, None if it could not be."""
        try:
            if self._store is None:
                self._store = _content_store(self.images_uri)
            uri = self._store.uri_for(sha256, read_header(data).format)
            if not self._store.fs.exists(uri):
                self._store.put(uri, data)
        except Exception as error:  # noqa: BLE001 - the row is written without its image
            if not self._store_failing:
                self._store_failing = True
                logger.error(
                    "The prediction log cannot keep images in %s: %s: %s. Rows are written "
                    "without them until it can.",
                    self.images_uri,
                    error.__class__.__name__,
                    error,
                )
            return None
        self._store_failing = False
        return uri

    def _image_features(self, data: bytes) -> Mapping[str, float]:
        try:
            return self.image_features(data)
        except Exception:  # noqa: BLE001 - it was answered; a feature failure only leaves a gap
            return {}

    def _write(self, batch: list[LoggedRequest]) -> None:
        rows: list[dict[str, Any]] = []
        try:
            for entry in batch:
                rows.extend(self._rows(entry))
            engine = self.engine()
            with engine.begin() as connection:
                connection.execute(insert(PREDICTION_LOG), rows)
        except Exception as error:  # noqa: BLE001 - the writer must outlive any failure
            lost = sum(len(entry.answers) for entry in batch)
            self._count_dropped(DATABASE_ERROR, lost)
            if not self._failing:
                self._failing = True
                logger.error(
                    "The prediction log cannot write to the catalog at %s: %s: %s. Answers "
                    "are not affected; their log entries are dropped and counted "
                    "(clearsight_prediction_log_dropped_total{reason=%r}) until the database "
                    "takes writes again. Check CLEARSIGHT_CATALOG_URL and that the database is up.",
                    display_url(self.url) if self.url else "(unresolved)",
                    error.__class__.__name__,
                    error,
                    DATABASE_ERROR,
                )
            self._dropped_while_failing += lost
            return
        self.written += len(rows)
        if self._failing:
            logger.warning(
                "The prediction log writes to the catalog again; %d entries were dropped "
                "meanwhile.",
                self._dropped_while_failing,
            )
            self._failing = False
            self._dropped_while_failing = 0

    def _count_dropped(self, reason: str, rows: int) -> None:
        with self._cond:
            self.dropped[reason] += rows
        if self.on_dropped is not None:
            with contextlib.suppress(Exception):
                self.on_dropped(reason, rows)

    def _maybe_prune(self) -> None:
        if not self.retention_days or self._engine is None:
            return
        now = self.clock()
        if self._last_pruned is not None and now - self._last_pruned < self.retention_every:
            return
        self._last_pruned = now
        try:
            self.prune()
        except Exception as error:  # noqa: BLE001 - retried at the next hour
            logger.warning("Prediction log retention failed (retried in an hour): %s", error)

    def prune(self, now: datetime | None = None) -> int:
        """Delete rows older than the retention (the writer does it hourly); returns how many.

        The kept images of those rows go too, unless a younger row still
        refers to the same file (the store is content-addressed): retention
        covers the pictures, not only their hashes.

        Raises:
            SQLAlchemyError, CatalogError: The database refused it.
        """
        if not self.retention_days:
            return 0
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.retention_days)
        log = PREDICTION_LOG
        old = log.c.created_at < cutoff
        with self.engine().begin() as connection:
            kept = {
                uri
                for (uri,) in connection.execute(
                    select(log.c.image_uri).where(old, log.c.image_uri.is_not(None)).distinct()
                )
            }
            deleted = connection.execute(delete(log).where(old)).rowcount
            still_used = (
                {
                    uri
                    for (uri,) in connection.execute(
                        select(log.c.image_uri).where(log.c.image_uri.in_(kept)).distinct()
                    )
                }
                if kept
                else set()
            )
        self.pruned += deleted
        removed = sum(self._forget_image(uri) for uri in sorted(kept - still_used))
        self.images_pruned += removed
        if deleted:
            logger.info(
                "Prediction log: deleted %d rows and %d kept images older than %d days.",
                deleted,
                removed,
                self.retention_days,
            )
        return deleted

    def _forget_image(self, uri: str) -> bool:
        """Delete one kept image; False (logged) if it could not be, or was gone."""
        try:
            if self._store is None:
                self._store = _content_store(self.images_uri or uri.rsplit("/images/", 1)[0])
            return self._store.delete(uri)
        except Exception as error:  # noqa: BLE001 - retried by nobody: say which file stays
            logger.error("Retention could not delete the kept image %s: %s", uri, error)
            return False

    # --- database access -----------------------------------------------------

    def engine(self) -> Engine:
        """The engine on the catalog (connected and migrated on first use).

        Raises:
            CatalogError: The URL cannot be resolved or the database migrated.
        """
        with self._engine_lock:
            if self._engine is None:
                if self.url is None:
                    self.url = resolve_catalog_url()
                self._engine = connect(self.url)
            return self._engine

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything queued so far now; True once written (or dropped), False on timeout."""
        with self._cond:
            if not self._pending and not self._inflight:
                return True
            if self._thread is None or not self._thread.is_alive():
                return False
            self._flush_requested = True
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: not self._pending and not self._inflight, timeout=timeout
            )

    def pending_items(self, puid: str) -> int:
        """Images of request ``puid`` queued or being written by this process (0: none)."""
        with self._cond:
            return self._puids.get(puid, 0)

    def logged_items(self, puid: str) -> int:
        """How many images request ``puid`` had: queued here, else as logged (0: not found).

        Raises:
            SQLAlchemyError, CatalogError: The database cannot be read.
        """
        waiting = self.pending_items(puid)
        if waiting:
            return waiting
        with self.engine().connect() as connection:
            last = connection.execute(
                select(func.max(PREDICTION_LOG.c.item)).where(PREDICTION_LOG.c.puid == puid)
            ).scalar()
        return 0 if last is None else int(last) + 1

    def record_truths(
        self,
        puid: str,
        labels: Sequence[str],
        *,
        source: str = FEEDBACK,
        recorded_by: str | None = None,
        at: datetime | None = None,
    ) -> int:
        """Store the true label of each image of request ``puid`` (item 0, 1, ...), at once.

        Returns:
            The number of rows written.

        Raises:
            ValueError: An unknown source.
            SQLAlchemyError, CatalogError: The database refused it.
        """
        if source not in TRUTH_SOURCES:
            raise ValueError(f"source {source!r}: use one of {', '.join(TRUTH_SOURCES)}")
        now = at or datetime.now(UTC)
        rows = [
            {
                "puid": puid,
                "item": item,
                "label": label,
                "source": source,
                "created_at": now,
                "recorded_by": recorded_by,
            }
            for item, label in enumerate(labels)
        ]
        with self.engine().begin() as connection:
            connection.execute(insert(GROUND_TRUTHS), rows)
        return len(rows)

    def close(self, timeout: float = EXIT_FLUSH_TIMEOUT) -> None:
        """Write what is queued (up to ``timeout`` seconds), stop the writer, close the engine."""
        if self._pid != os.getpid():
            return
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._closed = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)
        with self._engine_lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def _after_fork(self) -> None:
        engine = self._engine
        if engine is not None:
            with contextlib.suppress(Exception):
                engine.dispose(close=False)  # the parent's connections stay the parent's
        self._reset()


# --- reading the log ------------------------------------------------------------

#: Rows per page of :func:`search`, at most.
MAX_SEARCH_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class LogPage:
    """One page of :func:`search`: the rows, newest first, and how many match in all."""

    rows: list[dict[str, Any]]
    total: int


def _as_utc(value: datetime) -> datetime:
    """Aware UTC (SQLite gives naive datetimes back; a naive bound is taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _newest_truths() -> Any:
    """The newest ``ground_truths`` row of each ``(puid, item)``: ``truth``, ``truth_source``."""
    newest = (
        select(func.max(GROUND_TRUTHS.c.id).label("id"))
        .group_by(GROUND_TRUTHS.c.puid, GROUND_TRUTHS.c.item)
        .subquery()
    )
    return (
        select(
            GROUND_TRUTHS.c.puid,
            GROUND_TRUTHS.c.item,
            GROUND_TRUTHS.c.label.label("truth"),
            GROUND_TRUTHS.c.source.label("truth_source"),
        )
        .join(newest, newest.c.id == GROUND_TRUTHS.c.id)
        .subquery()
    )


def _with_truths(truths: Any) -> Any:
    """``prediction_log`` left-joined with :func:`_newest_truths` by request and image."""
    log = PREDICTION_LOG
    return log.outerjoin(truths, (truths.c.puid == log.c.puid) & (truths.c.item == log.c.item))


def search(
    engine: Engine,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    labels: Sequence[str] | None = None,
    min_confidence: float | None = None,
    max_confidence: float | None = None,
    model_name: str | None = None,
    model_versions: Sequence[str] | None = None,
    limit: int = 50,
    offset: int = 0,
) -> LogPage:
    """Answered images of the prediction log that match every filter given, newest first.

    Each row is the logged answer (``id``, ``created_at`` in UTC, ``puid``,
    ``item``, ``model_name``, ``model_version``, ``registered_version``,
    ``input_kind``, ``image_sha256``, ``label``, ``confidence``,
    ``uncertain``, ``top_k``, ``tags``) with its ground truth when one was
    recorded (``truth`` and ``truth_source``: the newest ``ground_truths``
    row of its ``puid`` and ``item``; None otherwise).

    Args:
        engine: An engine on the catalog (:func:`connect`).
        start: Answers at or after this time (a naive time is UTC).
        end: Answers before this time.
        labels: Answers whose predicted label is one of these (None or empty: any).
        min_confidence: Calibrated confidence at least this.
        max_confidence: Calibrated confidence at most this.
        model_name: Answers of this model only.
        model_versions: Answers of these ZenML model versions (None or empty: any).
        limit: Rows per page (1 to :data:`MAX_SEARCH_LIMIT`).
        offset: Rows to skip (page ``n`` of size ``limit``: ``n * limit``).

    Returns:
        The page and the number of matching rows.

    Raises:
        ValueError: A limit out of range, a negative offset, or bounds the wrong way round.
        SQLAlchemyError: The database cannot be read.
    """
    if not 1 <= limit <= MAX_SEARCH_LIMIT:
        raise ValueError(f"limit {limit}: use 1 to {MAX_SEARCH_LIMIT}")
    if offset < 0:
        raise ValueError(f"offset {offset}: use 0 or more")
    if start is not None and end is not None and _as_utc(end) < _as_utc(start):
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    if (
        min_confidence is not None
        and max_confidence is not None
        and max_confidence < min_confidence
    ):
        raise ValueError(f"confidence from {min_confidence} to {max_confidence}: swap them")
    log = PREDICTION_LOG
    conditions = []
    if start is not None:
        conditions.append(log.c.created_at >= _as_utc(start))
    if end is not None:
        conditions.append(log.c.created_at < _as_utc(end))
    if labels:
        conditions.append(log.c.label.in_(list(labels)))
    if min_confidence is not None:
        conditions.append(log.c.confidence >= float(min_confidence))
    if max_confidence is not None:
        conditions.append(log.c.confidence <= float(max_confidence))
    if model_name:
        conditions.append(log.c.model_name == model_name)
    if model_versions:
        conditions.append(log.c.model_version.in_([str(v) for v in model_versions]))
    truths = _newest_truths()
    columns = [
        log.c.id,
        log.c.created_at,
        log.c.puid,
        log.c.item,
        log.c.model_name,
        log.c.model_version,
        log.c.registered_version,
        log.c.input_kind,
        log.c.image_sha256,
        log.c.label,
        log.c.confidence,
        log.c.uncertain,
        log.c.top_k,
        log.c.tags,
        truths.c.truth,
        truths.c.truth_source,
    ]
    query = (
        select(*columns)
        .select_from(_with_truths(truths))
        .where(*conditions)
        .order_by(log.c.created_at.desc(), log.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    count = select(func.count()).select_from(log).where(*conditions)
    with engine.connect() as connection:
        total = int(connection.execute(count).scalar_one())
        rows = [dict(row._mapping) for row in connection.execute(query)]
    for row in rows:
        row["created_at"] = _as_utc(row["created_at"])
    return LogPage(rows=rows, total=total)


def daily_accuracy(
    engine: Engine,
    *,
    model_name: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[dict[str, Any]]:
    """Production accuracy per model version and UTC day, on the answers with a ground truth.

    An answer counts on the day it was given, with its newest ground truth
    (feedback or review), as :func:`search` shows it.

    Args:
        engine: An engine on the catalog (:func:`connect`).
        model_name: Answers of this model only.
        start: Answers at or after this time (a naive time is UTC).
        end: Answers before this time.

    Returns:
        One dict per version and day with a labelled answer, oldest day first:
        ``model_name``, ``model_version``, ``day`` (``YYYY-MM-DD``),
        ``labelled``, ``correct`` and ``accuracy`` (``correct / labelled``).

    Raises:
        SQLAlchemyError: The database cannot be read.
    """
    log = PREDICTION_LOG
    truths = _newest_truths()
    conditions = [truths.c.truth.is_not(None)]
    if model_name:
        conditions.append(log.c.model_name == model_name)
    if start is not None:
        conditions.append(log.c.created_at >= _as_utc(start))
    if end is not None:
        conditions.append(log.c.created_at < _as_utc(end))
    query = (
        select(log.c.model_name, log.c.model_version, log.c.created_at, log.c.label, truths.c.truth)
        .select_from(_with_truths(truths))
        .where(*conditions)
    )
    # Days are counted here, in UTC, rather than by each database's date functions.
    counts: dict[tuple[str, str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    with engine.connect() as connection:
        for row in connection.execute(query):
            day = _as_utc(row.created_at).date().isoformat()
            tally = counts[(day, row.model_name, row.model_version)]
            tally[0] += 1
            tally[1] += int(row.truth == row.label)
    return [
        {
            "model_name": name,
            "model_version": version,
            "day": day,
            "labelled": labelled,
            "correct": correct,
            "accuracy": correct / labelled,
        }
        for (day, name, version), (labelled, correct) in sorted(counts.items())
    ]


def search_choices(engine: Engine) -> dict[str, list[str]]:
    """What :func:`search` can filter on: ``labels`` and ``model_versions`` in the log, sorted.

    Raises:
        SQLAlchemyError: The database cannot be read.
    """
    log = PREDICTION_LOG
    with engine.connect() as connection:
        labels = connection.execute(select(log.c.label).distinct()).scalars().all()
        versions = connection.execute(select(log.c.model_version).distinct()).scalars().all()
    return {
        "labels": sorted(labels),
        "model_versions": sorted(versions, key=lambda v: (not v.isdigit(), v.zfill(12))),
    }


#: Nice value of the writer thread: on a busy machine the threads that answer get the CPU first.
WRITER_NICE = 10


def _lower_thread_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: the nice value is per thread)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(current, WRITER_NICE))


_LOGS: weakref.WeakSet[PredictionLog] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for prediction_log in list(_LOGS):
        prediction_log._after_fork()


def _close_all() -> None:
    for prediction_log in list(_LOGS):
        with contextlib.suppress(Exception):
            prediction_log.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
