"""Reading the prediction log back: filters, paging and ground truths (``search``).

A real SQLite catalog, migrated, written by the log's own writer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clearsight.catalog import sqlite_url
from clearsight.prediction_log import (
    FEEDBACK,
    MAX_SEARCH_LIMIT,
    REVIEW,
    LoggedRequest,
    PredictionLog,
    daily_accuracy,
    search,
    search_choices,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def answer(label: str, confidence: float) -> dict:
    return {
        "label": label,
        "confidence": confidence,
        "uncertain": confidence < 0.7,
        "top_k": [{"label": label, "probability": confidence}],
    }


@pytest.fixture()
def log(tmp_path):
    """A log of ten answers: day d holds request req-d, one or two images, versions 1 and 2."""
    log = PredictionLog(sqlite_url(tmp_path / "catalog.db"))
    for day in range(8):
        images = [answer("cat" if day % 2 else "dog", 0.5 + day * 0.05)]
        if day in (3, 6):
            images.append(answer("fox", 0.95))
        log.log(
            LoggedRequest(
                at=T0 + timedelta(days=day),
                puid=f"req-{day}",
                model_name="image-classifier",
                model_version="1" if day < 4 else "2",
                registered_version="1" if day < 4 else "3",
                answers=images,
                tags={"site": "north"} if day == 0 else None,
            )
        )
    assert log.flush(30)
    assert log.written == 10
    yield log
    log.close()


def ids(page) -> list[tuple[str, int]]:
    return [(row["puid"], row["item"]) for row in page.rows]


def test_everything_newest_first_with_the_total(log):
    page = search(log.engine())
    assert page.total == 10
    assert ids(page)[:3] == [("req-7", 0), ("req-6", 1), ("req-6", 0)]
    first = page.rows[-1]
    assert first["created_at"] == T0 and first["created_at"].tzinfo is not None
    assert (first["label"], first["confidence"], first["uncertain"]) == ("dog", 0.5, True)
    assert first["tags"] == {"site": "north"} and first["input_kind"] == "tensor"
    assert first["truth"] is None and first["truth_source"] is None


def test_each_filter_and_all_of_them_together(log):
    engine = log.engine()
    day = timedelta(days=1)
    # A date range: from the start of day 2 to the start of day 4 (exclusive).
    assert ids(search(engine, start=T0 + 2 * day, end=T0 + 4 * day)) == [
        ("req-3", 1),
        ("req-3", 0),
        ("req-2", 0),
    ]
    # A naive bound is UTC.
    naive = search(engine, start=(T0 + 7 * day).replace(tzinfo=None))
    assert ids(naive) == [("req-7", 0)]
    assert {r["label"] for r in search(engine, labels=["fox"]).rows} == {"fox"}
    assert search(engine, labels=["fox", "cat"]).total == 6
    band = search(engine, min_confidence=0.6, max_confidence=0.75)
    assert sorted(r["confidence"] for r in band.rows) == pytest.approx([0.6, 0.65, 0.7, 0.75])
    assert search(engine, model_versions=["2"]).total == 5
    assert search(engine, model_versions=["1", "2"], model_name="image-classifier").total == 10
    assert search(engine, model_name="other-model").total == 0
    together = search(
        engine,
        start=T0 + day,
        end=T0 + 7 * day,
        labels=["cat", "dog"],
        min_confidence=0.7,
        model_versions=["2"],
    )
    assert ids(together) == [("req-6", 0), ("req-5", 0), ("req-4", 0)]
    assert together.total == 3


def test_pages_partition_the_matches(log):
    engine = log.engine()
    pages = [search(engine, limit=4, offset=start) for start in (0, 4, 8, 12)]
    assert [len(p.rows) for p in pages] == [4, 4, 2, 0]
    assert {p.total for p in pages} == {10}
    seen = [key for p in pages for key in ids(p)]
    assert len(set(seen)) == 10
    with pytest.raises(ValueError, match="limit"):
        search(engine, limit=MAX_SEARCH_LIMIT + 1)
    with pytest.raises(ValueError, match="offset"):
        search(engine, offset=-1)
    with pytest.raises(ValueError, match="before it starts"):
        search(engine, start=T0 + timedelta(days=2), end=T0)
    with pytest.raises(ValueError, match="swap them"):
        search(engine, min_confidence=0.9, max_confidence=0.1)


def test_rows_carry_their_newest_ground_truth(log):
    log.record_truths("req-3", ["cat", "fox"], source=FEEDBACK, at=T0)
    log.record_truths("req-6", ["dog"], source=FEEDBACK, at=T0)  # one image of two: item 0
    log.record_truths("req-3", ["dog", "fox"], source=REVIEW, recorded_by="rita", at=T0)
    found = {
        (r["puid"], r["item"]): (r["truth"], r["truth_source"])
        for r in search(log.engine(), start=T0 + timedelta(days=3)).rows
    }
    assert found[("req-3", 0)] == ("dog", REVIEW)  # the review came later: it wins
    assert found[("req-3", 1)] == ("fox", REVIEW)
    assert found[("req-6", 0)] == ("dog", FEEDBACK)
    assert found[("req-6", 1)] == (None, None)
    assert found[("req-7", 0)] == (None, None)
    assert search(log.engine()).total == 10  # a truth never duplicates a row


def test_choices_list_the_labels_and_versions_in_the_log(log):
    assert search_choices(log.engine()) == {
        "labels": ["cat", "dog", "fox"],
        "model_versions": ["1", "2"],
    }


def test_daily_accuracy_per_version_counts_the_newest_truth_of_labelled_answers(log):
    log.record_truths("req-1", ["dog"], at=T0)  # predicted cat: wrong
    log.record_truths("req-3", ["cat", "dog"], at=T0)  # cat right, fox wrong...
    log.record_truths("req-3", ["cat", "fox"], source=REVIEW, at=T0)  # ...until a review: right
    log.record_truths("req-6", ["dog", "fox"], at=T0)  # both right
    rows = daily_accuracy(log.engine())
    assert [
        (r["model_version"], r["day"], r["labelled"], r["correct"], r["accuracy"]) for r in rows
    ] == [
        ("1", "2026-11-02", 1, 0, 0.0),
        ("1", "2026-11-04", 2, 2, 1.0),
        ("2", "2026-11-07", 2, 2, 1.0),
    ]
    assert {r["model_name"] for r in rows} == {"image-classifier"}
    later = daily_accuracy(
        log.engine(), start=T0 + timedelta(days=4), model_name="image-classifier"
    )
    assert [r["day"] for r in later] == ["2026-11-07"]
    assert daily_accuracy(log.engine(), model_name="other-model") == []
