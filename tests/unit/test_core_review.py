"""The review queue, reviews, audit log and the merge of reviewed images into a dataset."""

from __future__ import annotations

import pytest

from clearsight.catalog import Catalog, sqlite_url
from clearsight.dataset import build_manifest, merge_reviewed
from clearsight.images import inspect_image
from clearsight.review import (
    CONFIRMED,
    CORRECTED,
    LABEL_ERROR_REASON,
    PENDING,
    REVIEWED,
    ReviewError,
    ReviewStore,
    apply_label_corrections,
    reviewed_records,
)
from clearsight.storage import ContentStore, LocalFileSystem
from tests.unit.conftest import image_bytes

RATIOS = (0.7, 0.15, 0.15)
MODEL = {"model_name": "m", "model_version": "3", "registered_version": "2", "mlflow_run_id": "r"}


def answer(label: str, confidence: float) -> dict:
    rest = (1 - confidence) / 2
    others = [c for c in ("cat", "dog", "fox") if c != label]
    return {
        "label": label,
        "confidence": confidence,
        "probabilities": {label: confidence, others[0]: rest, others[1]: rest},
    }


@pytest.fixture()
def stores(tmp_path):
    url = sqlite_url(tmp_path / "catalog.db")
    reviews = ReviewStore(url)
    content = ContentStore(str(tmp_path / "store"), LocalFileSystem())
    yield url, reviews, content
    reviews.close()


def read(uri: str) -> bytes:
    with open(uri, "rb") as handle:
        return handle.read()


def test_queue_keeps_image_by_content_and_once_per_model_version(stores):
    _, reviews, content = stores
    data = image_bytes(1)
    first = reviews.keep_prediction(
        data, answer("cat", 0.55), store=content, requested_by="ann", threshold=0.7, model=MODEL
    )
    again = reviews.keep_prediction(
        data,
        answer("cat", 0.55),
        store=content,
        requested_by="bob",
        threshold=0.7,
        flagged=True,
        model=MODEL,
    )
    assert again == first
    (entry,) = reviews.queue()
    assert entry["uncertain"] and entry["flagged"] and entry["status"] == PENDING
    assert entry["sha256"] == inspect_image(data).sha256
    assert entry["model_version"] == "3" and entry["requested_by"] == "ann"
    assert read(entry["uri"]) == data  # stored under its hash
    assert entry["sha256"] in entry["uri"]
    other = reviews.keep_prediction(
        data, answer("cat", 0.55), store=content, requested_by="ann", threshold=0.7
    )
    assert other != first  # another model version: another entry
    assert reviews.pending_count() == 2


def test_review_confirms_or_corrects_records_who_and_refuses_twice(stores):
    _, reviews, content = stores
    ids = [
        reviews.keep_prediction(
            image_bytes(seed), answer("cat", 0.6), store=content, requested_by="u", threshold=0.7
        )
        for seed in (1, 2, 3)
    ]
    confirmed = reviews.review(ids[0], reviewer="rita", label="cat")
    corrected = reviews.review(ids[1], reviewer="rita", label="dog", note="ears")
    assert confirmed["verdict"] == CONFIRMED and corrected["verdict"] == CORRECTED
    assert corrected["predicted_label"] == "cat" and corrected["reviewer"] == "rita"
    with pytest.raises(ReviewError, match="already reviewed by rita"):
        reviews.review(ids[0], reviewer="sam", label="dog")
    with pytest.raises(ReviewError, match="not one of the model's classes"):
        reviews.review(ids[2], reviewer="sam", label="zebra")
    reviews.review(ids[2], reviewer="sam", label=None, reject=True)
    assert reviews.pending_count() == 0
    assert {e["status"] for e in reviews.queue(status=None)} == {REVIEWED}

    reviewed = reviews.reviewed_images()  # the rejected image is left out
    assert sorted((r.label, r.reviewer, r.verdict) for r in reviewed) == [
        ("cat", "rita", CONFIRMED),
        ("dog", "rita", CORRECTED),
    ]
    actions = [(a["actor"], a["role"], a["action"]) for a in reviews.audit_log()]
    assert actions == [
        ("sam", "reviewer", "review:rejected"),
        ("rita", "reviewer", "review:corrected"),
        ("rita", "reviewer", "review:confirmed"),
    ]
    assert reviews.review_count() == 3
    assert (reviews.review_count("rita"), reviews.review_count("nobody")) == (2, 0)


def test_an_admins_review_is_audited_with_the_admin_role(stores):
    _, reviews, content = stores
    queued = reviews.keep_prediction(
        image_bytes(7), answer("dog", 0.6), store=content, requested_by="u", threshold=0.7
    )
    reviews.review(queued, reviewer="ada", label="dog", role="admin")
    (entry,) = reviews.audit_log()
    assert (entry["actor"], entry["role"], entry["action"]) == ("ada", "admin", "review:confirmed")


def test_queue_pages_oldest_first(stores):
    _, reviews, content = stores
    ids = [
        reviews.keep_prediction(
            image_bytes(seed), answer("cat", 0.6), store=content, requested_by="u", threshold=0.7
        )
        for seed in range(50, 55)
    ]
    pages = [[e["id"] for e in reviews.queue(limit=2, offset=start)] for start in (0, 2, 4, 6)]
    assert pages == [ids[:2], ids[2:4], ids[4:], []]
    assert reviews.pending_count() == 5


def test_latest_review_of_an_image_wins(stores):
    _, reviews, content = stores
    data = image_bytes(5)
    first = reviews.keep_prediction(
        data, answer("cat", 0.5), store=content, requested_by="u", threshold=0.7
    )
    reviews.review(first, reviewer="a", label="cat")
    second = reviews.keep_prediction(  # asked again after the review: queued again
        data, answer("cat", 0.5), store=content, requested_by="u", threshold=0.7
    )
    assert second != first
    reviews.review(second, reviewer="b", label="fox")
    (only,) = reviews.reviewed_images()
    assert (only.label, only.reviewer) == ("fox", "b")


def test_audit_log_records_admin_actions(stores):
    _, reviews, _ = stores
    reviews.record_action(
        actor="ada", role="admin", action="deploy", outcome="failed", details={"rc": 1}
    )
    (entry,) = reviews.audit_log()
    assert (entry["actor"], entry["role"], entry["outcome"]) == ("ada", "admin", "failed")
    assert entry["details"] == {"rc": 1}


def test_reviewed_images_merge_into_the_manifest_with_provenance(stores, tmp_path):
    url, reviews, content = stores
    folder = tmp_path / "data"
    for label, seeds in (("cat", (10, 11, 12)), ("dog", (20, 21, 22))):
        (folder / label).mkdir(parents=True)
        for seed in seeds:
            (folder / label / f"{seed}.png").write_bytes(image_bytes(seed))
    manifest, report = build_manifest(folder, split_ratios=RATIOS)
    assert report.provenance == {"ingest": 6}

    def queue(seed: int, predicted: str) -> int:
        return reviews.keep_prediction(
            image_bytes(seed),
            answer(predicted, 0.5),
            store=content,
            requested_by="u",
            threshold=0.7,
        )

    reviews.review(queue(30, "cat"), reviewer="rita", label="fox")  # new image, new class
    reviews.review(queue(10, "dog"), reviewer="rita", label="cat")  # already there, same label
    reviews.review(queue(20, "dog"), reviewer="sam", label="cat")  # conflicts with the folder
    records, skipped = reviewed_records(reviews.reviewed_images(), read, RATIOS)
    assert not skipped and len(records) == 3
    merged, merged_report = merge_reviewed(manifest, report, records, skipped)

    by_sha = {r.sha256: r for r in merged.records}
    new = by_sha[inspect_image(image_bytes(30)).sha256]
    assert (new.label, new.provenance, new.reviewed_by) == ("fox", "review", "rita")
    assert new.uri.startswith(content.images_root) and new.reviewed_at is not None
    assert by_sha[inspect_image(image_bytes(10)).sha256].provenance == "ingest"
    assert inspect_image(image_bytes(20)).sha256 not in by_sha  # conflict: every copy out
    assert merged.classes == ["cat", "dog", "fox"]
    assert merged.provenance_counts() == {"ingest": 5, "review": 1}
    assert merged_report.provenance == {"ingest": 5, "review": 1}
    assert merged_report.reviewed == 3 and merged_report.kept == 6
    assert merged_report.duplicates == 1 and merged_report.conflicts == 2
    assert any("reviewed as 'cat' by sam" in s.reason for s in merged_report.skipped)
    assert merged_report.fingerprint == merged.fingerprint != manifest.fingerprint
    assert "1 of 3 expert-reviewed images merged" in merged_report.summary()

    # Manifests without reviews serialize as before (no review fields).
    assert "reviewed_by" not in manifest.model_dump_json()
    assert "reviewed_by" in merged.model_dump_json()

    # The catalog records the merged images with their provenance.
    catalog = Catalog(url)
    catalog.record_ingestion(merged, merged_report)
    assert catalog.provenance_counts() == {"ingest": 5, "review": 1}
    catalog.close()


def test_reviewed_bytes_are_revalidated(stores):
    _, reviews, content = stores
    reviews.review(
        reviews.keep_prediction(
            image_bytes(40), answer("cat", 0.5), store=content, requested_by="u", threshold=0.7
        ),
        reviewer="r",
        label="cat",
    )
    (image,) = reviews.reviewed_images()
    with open(image.uri, "wb") as handle:  # the stored file was tampered with
        handle.write(image_bytes(41))
    records, skipped = reviewed_records([image], read, RATIOS)
    assert not records and "no longer match" in skipped[0].reason


def test_label_error_suspects_queue_once_and_their_verdicts_relabel_the_next_ingestion(
    stores, tmp_path
):
    _, reviews, content = stores
    folder = tmp_path / "data"
    for label, seeds in (("cat", (60, 61, 62)), ("dog", (70, 71, 72))):
        (folder / label).mkdir(parents=True)
        for seed in seeds:
            (folder / label / f"{seed}.png").write_bytes(image_bytes(seed))
    manifest, _ = build_manifest(folder, split_ratios=RATIOS)
    stored, _, _ = content.store_manifest(manifest)  # as after an ingestion
    by_sha = {r.sha256: r for r in stored.records}
    record = {seed: by_sha[inspect_image(image_bytes(seed)).sha256] for seed in (60, 61, 62, 70)}

    def suspect(seed: int, given: str, suggested: str) -> tuple[int, bool]:
        other = "dog" if given == "cat" else "cat"
        probabilities = {given: 0.1, suggested: 0.8} if given != suggested else {given: 0.9}
        probabilities = {"cat": 0.0, "dog": 0.0, "fox": 0.0} | probabilities
        probabilities[other] = probabilities[other] or 0.1
        return reviews.keep_label_issue(
            record[seed], given_label=given, probabilities=probabilities, model=MODEL
        )

    relabel, added = suspect(60, "cat", "dog")
    assert added and suspect(60, "cat", "dog") == (relabel, False)  # once per model version
    keep, _ = suspect(61, "cat", "dog")
    other, _ = suspect(62, "cat", "dog")
    rejected, _ = suspect(70, "dog", "cat")
    entries = {e["id"]: e for e in reviews.queue()}
    assert len(entries) == 4 and reviews.pending_count() == 4
    entry = entries[relabel]
    assert entry["reason"] == LABEL_ERROR_REASON
    assert (entry["given_label"], entry["suggested_label"]) == ("cat", "dog")
    assert entry["uri"] == record[60].uri and entry["sha256"] == record[60].sha256
    assert entry["confidence"] == pytest.approx(0.1) and entry["model_version"] == "3"
    later = {**MODEL, "model_version": "4"}
    assert reviews.keep_label_issue(  # still pending: not queued again for a newer model
        record[60], given_label="cat", probabilities=entry["probabilities"], model=later
    ) == (relabel, False)
    served = reviews.keep_prediction(  # a user's prediction of the same image: its own entry
        image_bytes(61),
        answer("cat", 0.5),
        store=content,
        requested_by="u",
        threshold=0.7,
        model=MODEL,
    )
    assert served not in entries
    reviews.review(served, reviewer="rita", label="cat")
    plain = reviews.keep_prediction(
        image_bytes(99), answer("cat", 0.5), store=content, requested_by="u", threshold=0.7
    )
    assert {e["id"]: e["reason"] for e in reviews.queue()}[plain] == "uncertain"

    assert reviews.review(relabel, reviewer="rita", label="dog")["verdict"] == CORRECTED
    assert reviews.review(keep, reviewer="rita", label="cat")["verdict"] == CONFIRMED
    assert reviews.review(other, reviewer="sam", label="fox")["verdict"] == CORRECTED
    reviews.review(rejected, reviewer="sam", label=None, reject=True)
    reviews.review(plain, reviewer="sam", label="dog")  # a user's review: rules unchanged

    # The next ingestion scans the folder again and merges the reviews.
    scanned, report = build_manifest(folder, split_ratios=RATIOS)
    reviewed = reviews.reviewed_images()
    assert {r.reason for r in reviewed} == {LABEL_ERROR_REASON, "uncertain"}
    # 61's latest review is the user's (same label): an ordinary duplicate.
    records, skipped = reviewed_records(reviewed, read, RATIOS)
    relabelled_manifest, remaining, relabelled = apply_label_corrections(scanned, reviewed, records)
    assert len(relabelled) == 2 and len(remaining) == 2  # confirmed + the user's new image
    merged, merged_report = merge_reviewed(relabelled_manifest, report, remaining, skipped)
    labels = {r.sha256: (r.label, r.provenance, r.reviewed_by) for r in merged.records}
    assert labels[record[60].sha256] == ("dog", "review", "rita")
    assert labels[record[62].sha256] == ("fox", "review", "sam")
    assert labels[record[61].sha256] == ("cat", "ingest", None)  # confirmed: a duplicate
    assert labels[record[70].sha256] == ("dog", "ingest", None)  # rejected: folder label kept
    before = {r.sha256: r.split for r in scanned.records}
    assert all(r.split == before[r.sha256] for r in merged.records if r.sha256 in before)
    assert merged_report.conflicts == 0 and merged_report.duplicates == 1
    assert merged.provenance_counts() == {"ingest": 4, "review": 3}
    assert merged.classes == ["cat", "dog", "fox"]


def test_a_verdict_on_an_endpoint_answer_is_its_ground_truth(stores):
    """Confirmed and corrected answers of the endpoint become ground truths (source review)."""
    from sqlalchemy import select

    from clearsight.prediction_log import GROUND_TRUTHS, REVIEW

    _, reviews, content = stores

    def keep(seed: int, puid: str | None, item: int | None) -> int:
        return reviews.keep_prediction(
            image_bytes(seed),
            answer("cat", 0.6),
            store=content,
            requested_by="ann",
            threshold=0.7,
            model=MODEL,
            puid=puid,
            item=item,
        )

    confirmed, corrected, rejected, untracked = (
        keep(60, "req-a", 1),
        keep(61, "req-b", 0),
        keep(62, "req-c", 0),
        keep(63, None, None),  # not asked through the endpoint: no request id
    )
    again = keep(60, "req-z", 4)  # the same image asked again: one entry, its first request
    assert again == confirmed
    assert {e["id"]: (e["puid"], e["item"]) for e in reviews.queue()} == {
        confirmed: ("req-a", 1),
        corrected: ("req-b", 0),
        rejected: ("req-c", 0),
        untracked: (None, None),
    }

    done = reviews.review(confirmed, reviewer="rita", label="cat")
    assert done["ground_truth"] == {"puid": "req-a", "item": 1, "label": "cat"}
    reviews.review(corrected, reviewer="sam", label="dog", role="admin")
    assert reviews.review(rejected, reviewer="sam", label=None, reject=True)["ground_truth"] is None
    assert reviews.review(untracked, reviewer="rita", label="fox")["ground_truth"] is None

    with reviews.engine.connect() as connection:
        truths = [dict(r._mapping) for r in connection.execute(select(GROUND_TRUTHS))]
    assert [(t["puid"], t["item"], t["label"], t["source"], t["recorded_by"]) for t in truths] == [
        ("req-a", 1, "cat", REVIEW, "rita"),
        ("req-b", 0, "dog", REVIEW, "sam"),
    ]
    assert all(t["created_at"] is not None for t in truths)
    with pytest.raises(ReviewError, match="already reviewed"):  # no second truth either
        reviews.review(confirmed, reviewer="sam", label="dog")
    with reviews.engine.connect() as connection:
        assert len(connection.execute(select(GROUND_TRUTHS)).all()) == 2
